"""DINOHead: Deformable DETR's head plus the denoising losses of DINO.

What DINO changes from ``DeformableDETRHead``:

- The decoder outputs hold D denoising queries first, then the Q matching queries
  (``split_outputs`` with ``dn_meta``). The matching part gets DETR's Hungarian losses.
- Denoising losses (``loss_dn``): a denoising query's target is known without matching.
  In group k (2M queries, M the most ground truths of one image), slot i < M is the
  positive copy of the image's i-th ground truth (target: its class and box) and slot
  M + i the negative copy (target: background, no box loss). Named ``dn_loss_cls``,
  ``dn_loss_bbox``, ``dn_loss_iou`` for the last layer, ``d{i}.dn_loss_*`` for the others.
- Encoder losses on the top-k proposals the detector selected, with their real classes
  (Deformable DETR: every proposal, one "object" class).
"""
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps,
                                        bbox_xyxy_to_cxcywh, get_box_tensor)
from mmdet_lite.utils import InstanceList, OptInstanceList, reduce_mean
from ..losses import QualityFocalLoss
from ..utils import unpack_gt_instances
from .deformable_detr_head import DeformableDETRHead
from .detr_head import DETRHead


@MODELS.register_module()
class DINOHead(DeformableDETRHead):
    """Head of DINO (DETR with Improved deNoising anchOr boxes).

    Arguments are those of ``DeformableDETRHead``; the detector sets ``share_pred_layer``
    (False), ``num_pred_layer`` (decoder layers + 1: the last branch scores the encoder
    proposals) and ``as_two_stage`` (True).
    """

    def loss(self, hidden_states: Tensor, references: List[Tensor],
             enc_outputs_class: Tensor, enc_outputs_coord: Tensor,
             batch_data_samples: SampleList, dn_meta: Dict[str, int]) -> Dict[str, Tensor]:
        """Matching, encoder and denoising losses of one batch.

        Args:
            hidden_states (Tensor): [L, B, D + Q, C] decoder outputs.
            references (list[Tensor]): L + 1 reference boxes [B, D + Q, 4], normalized
                (cx, cy, w, h): the initial ones, then each layer's refined ones.
            enc_outputs_class (Tensor): [B, Q, cls_out_channels] scores of the selected
                encoder proposals.
            enc_outputs_coord (Tensor): [B, Q, 4] their boxes, normalized (cx, cy, w, h).
            batch_data_samples (list[DetDataSample]): Ground truth and meta of each image.
            dn_meta (dict): ``num_denoising_queries`` (D) and ``num_denoising_groups``.

        Returns:
            dict[str, Tensor]: See ``loss_by_feat``.
        """
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(batch_data_samples)
        all_cls_scores, all_bbox_preds = self(hidden_states, references)
        return self.loss_by_feat(all_cls_scores, all_bbox_preds, enc_outputs_class,
                                 enc_outputs_coord, batch_gt_instances, batch_img_metas,
                                 dn_meta)

    def loss_by_feat(self,
                     all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     enc_cls_scores: Optional[Tensor],
                     enc_bbox_preds: Optional[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     dn_meta: Optional[Dict[str, int]],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Losses from the head outputs.

        Args:
            all_layers_cls_scores (Tensor): [L, B, D + Q, cls_out_channels].
            all_layers_bbox_preds (Tensor): [L, B, D + Q, 4], normalized (cx, cy, w, h).
            enc_cls_scores (Tensor, optional): [B, Q, cls_out_channels].
            enc_bbox_preds (Tensor, optional): [B, Q, 4], normalized (cx, cy, w, h).
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G_i, 4] pixels, ``labels``.
            batch_img_metas (list[dict]): ``img_shape`` of each image.
            dn_meta (dict, optional): See ``loss``; None means no denoising queries.
            batch_gt_instances_ignore (list, optional): Must be None (DETR ignores none).

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` and ``d{i}.loss_*``
            (matching queries); ``enc_loss_*`` (when ``enc_cls_scores`` is given);
            ``dn_loss_*`` and ``d{i}.dn_loss_*`` (when there are denoising queries).
        """
        (matching_cls_scores, matching_bbox_preds, denoising_cls_scores,
         denoising_bbox_preds) = self.split_outputs(all_layers_cls_scores,
                                                    all_layers_bbox_preds, dn_meta)
        # DETRHead's, not DeformableDETRHead's: DINO's encoder losses differ.
        loss_dict = DETRHead.loss_by_feat(self, matching_cls_scores, matching_bbox_preds,
                                          batch_gt_instances, batch_img_metas,
                                          batch_gt_instances_ignore)
        if enc_cls_scores is not None:
            enc_losses = self.loss_by_feat_single(enc_cls_scores, enc_bbox_preds,
                                                  batch_gt_instances=batch_gt_instances,
                                                  batch_img_metas=batch_img_metas)
            loss_dict.update(zip(('enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'),
                                 enc_losses))
        if denoising_cls_scores is not None:
            dn_losses_cls, dn_losses_bbox, dn_losses_iou = self.loss_dn(
                denoising_cls_scores, denoising_bbox_preds,
                batch_gt_instances=batch_gt_instances, batch_img_metas=batch_img_metas,
                dn_meta=dn_meta)
            loss_dict['dn_loss_cls'] = dn_losses_cls[-1]
            loss_dict['dn_loss_bbox'] = dn_losses_bbox[-1]
            loss_dict['dn_loss_iou'] = dn_losses_iou[-1]
            for i, (loss_cls, loss_bbox, loss_iou) in enumerate(
                    zip(dn_losses_cls[:-1], dn_losses_bbox[:-1], dn_losses_iou[:-1])):
                loss_dict[f'd{i}.dn_loss_cls'] = loss_cls
                loss_dict[f'd{i}.dn_loss_bbox'] = loss_bbox
                loss_dict[f'd{i}.dn_loss_iou'] = loss_iou
        return loss_dict

    def loss_dn(self, all_layers_denoising_cls_scores: Tensor,
                all_layers_denoising_bbox_preds: Tensor, batch_gt_instances: InstanceList,
                batch_img_metas: List[dict],
                dn_meta: Dict[str, int]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Denoising losses of every decoder layer.

        Args:
            all_layers_denoising_cls_scores (Tensor): [L, B, D, cls_out_channels].
            all_layers_denoising_bbox_preds (Tensor): [L, B, D, 4], normalized
                (cx, cy, w, h).
            batch_gt_instances (list[InstanceData]): Ground truth of each image.
            batch_img_metas (list[dict]): ``img_shape`` of each image.
            dn_meta (dict): ``num_denoising_queries`` and ``num_denoising_groups``.

        Returns:
            tuple[list[Tensor], list[Tensor], list[Tensor]]: Per layer (L each) the
            classification, L1 and GIoU losses.
        """
        per_layer = [
            self._loss_dn_single(cls_scores, bbox_preds, batch_gt_instances,
                                 batch_img_metas, dn_meta)
            for cls_scores, bbox_preds in zip(all_layers_denoising_cls_scores,
                                              all_layers_denoising_bbox_preds)
        ]
        losses_cls, losses_bbox, losses_iou = (list(losses) for losses in zip(*per_layer))
        return losses_cls, losses_bbox, losses_iou

    def _loss_dn_single(self, dn_cls_scores: Tensor, dn_bbox_preds: Tensor,
                        batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                        dn_meta: Dict[str, int]) -> Tuple[Tensor, Tensor, Tensor]:
        """Denoising losses of one decoder layer, normalized as DETR's matching losses.

        Args:
            dn_cls_scores (Tensor): [B, D, cls_out_channels].
            dn_bbox_preds (Tensor): [B, D, 4], normalized (cx, cy, w, h).
            batch_gt_instances (list[InstanceData]): Ground truth of each image.
            batch_img_metas (list[dict]): ``img_shape`` of each image.
            dn_meta (dict): ``num_denoising_queries`` and ``num_denoising_groups``.

        Returns:
            tuple[Tensor, Tensor, Tensor]: ``loss_cls``, ``loss_bbox`` (L1 on normalized
            boxes) and ``loss_iou`` (GIoU on pixel boxes).
        """
        (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list,
         num_total_pos, num_total_neg) = self.get_dn_targets(batch_gt_instances,
                                                             batch_img_metas, dn_meta)
        labels, label_weights, bbox_targets, bbox_weights = (
            torch.cat(t) for t in (labels_list, label_weights_list, bbox_targets_list,
                                   bbox_weights_list))  # [B*D], [B*D], [B*D, 4], [B*D, 4]

        cls_scores = dn_cls_scores.reshape(-1, self.cls_out_channels)
        cls_avg_factor = num_total_pos * 1.0 + num_total_neg * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(cls_scores.new_tensor([cls_avg_factor])).item()
        cls_avg_factor = max(cls_avg_factor, 1)

        if len(cls_scores) == 0:  # no ground truth in the batch: no denoising query
            loss_cls = cls_scores.new_zeros(1)
        elif isinstance(self.loss_cls, QualityFocalLoss):
            # QFL's target of a positive is the IoU of its (detached) box with the target.
            pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero().squeeze(1)
            scores = label_weights.new_zeros(labels.shape)
            pos_bbox_preds = dn_bbox_preds.reshape(-1, 4)[pos_inds]
            scores[pos_inds] = bbox_overlaps(
                bbox_cxcywh_to_xyxy(pos_bbox_preds).detach(),
                bbox_cxcywh_to_xyxy(bbox_targets[pos_inds]), is_aligned=True)
            loss_cls = self.loss_cls(cls_scores, (labels, scores), weight=label_weights,
                                     avg_factor=cls_avg_factor)
        else:
            loss_cls = self.loss_cls(cls_scores, labels, label_weights,
                                     avg_factor=cls_avg_factor)

        # Box losses are averaged over the positive queries (of all ranks).
        num_total_pos = reduce_mean(loss_cls.new_tensor([num_total_pos]))
        num_total_pos = torch.clamp(num_total_pos, min=1).item()

        factors = torch.cat([
            dn_bbox_preds.new_tensor([w, h, w, h]).expand(dn_bbox_preds.size(1), 4)
            for h, w in (meta['img_shape'][:2] for meta in batch_img_metas)
        ])  # [B*D, 4]: (w, h, w, h) of each query's image
        bbox_preds = dn_bbox_preds.reshape(-1, 4)
        bboxes = bbox_cxcywh_to_xyxy(bbox_preds) * factors
        bboxes_gt = bbox_cxcywh_to_xyxy(bbox_targets) * factors
        loss_iou = self.loss_iou(bboxes, bboxes_gt, bbox_weights, avg_factor=num_total_pos)
        loss_bbox = self.loss_bbox(bbox_preds, bbox_targets, bbox_weights,
                                   avg_factor=num_total_pos)
        return loss_cls, loss_bbox, loss_iou

    def get_dn_targets(self, batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                       dn_meta: Dict[str, int]) -> tuple:
        """Denoising targets of every image (``_get_dn_targets_single``).

        Returns:
            tuple: Per-image lists ``labels`` [D], ``label_weights`` [D], ``bbox_targets``
            [D, 4] and ``bbox_weights`` [D, 4], then ``num_total_pos`` and
            ``num_total_neg`` (ints).
        """
        targets = [
            self._get_dn_targets_single(gt_instances, img_meta, dn_meta)
            for gt_instances, img_meta in zip(batch_gt_instances, batch_img_metas)
        ]
        labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds = zip(*targets)
        num_total_pos = sum(inds.numel() for inds in pos_inds)
        num_total_neg = sum(inds.numel() for inds in neg_inds)
        return (list(labels), list(label_weights), list(bbox_targets), list(bbox_weights),
                num_total_pos, num_total_neg)

    def _get_dn_targets_single(self, gt_instances: InstanceData, img_meta: dict,
                               dn_meta: Dict[str, int]) -> tuple:
        """Targets of one image's D denoising queries (no matching: the layout is known).

        Group k occupies queries ``k * 2M .. (k + 1) * 2M - 1``; query ``k * 2M + i`` is
        the positive copy of ground truth i and ``k * 2M + M + i`` its negative copy.
        Padding slots (i >= this image's ground-truth count) are background queries too
        but are not counted in ``neg_inds``.

        Args:
            gt_instances (InstanceData): ``bboxes`` [G, 4] pixels (tensor or box object),
                ``labels`` [G].
            img_meta (dict): ``img_shape`` (h, w).
            dn_meta (dict): ``num_denoising_queries`` (D) and ``num_denoising_groups`` (K).

        Returns:
            tuple: ``labels`` [D] (``num_classes`` = background), ``label_weights`` [D]
            (all 1), ``bbox_targets`` [D, 4] normalized (cx, cy, w, h), ``bbox_weights``
            [D, 4] (1 on positives), ``pos_inds`` [K * G] and ``neg_inds`` [K * G].
        """
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        num_groups = dn_meta['num_denoising_groups']
        num_denoising_queries = dn_meta['num_denoising_queries']
        group_size = int(num_denoising_queries / num_groups)  # 2M
        device = gt_bboxes.device

        gt_inds = torch.arange(len(gt_labels), dtype=torch.long, device=device)
        group_starts = torch.arange(num_groups, dtype=torch.long, device=device) * group_size
        pos_inds = (group_starts[:, None] + gt_inds).flatten()  # [K*G], group-major
        pos_assigned_gt_inds = gt_inds.repeat(num_groups)  # [K*G]
        neg_inds = pos_inds + group_size // 2

        labels = torch.full((num_denoising_queries, ), self.num_classes, dtype=torch.long,
                            device=device)
        labels[pos_inds] = gt_labels[pos_assigned_gt_inds].long()
        label_weights = gt_bboxes.new_ones(num_denoising_queries)

        bbox_targets = gt_bboxes.new_zeros(num_denoising_queries, 4)
        bbox_weights = gt_bboxes.new_zeros(num_denoising_queries, 4)
        bbox_weights[pos_inds] = 1.0
        img_h, img_w = img_meta['img_shape'][:2]
        factor = gt_bboxes.new_tensor([img_w, img_h, img_w, img_h]).unsqueeze(0)
        bbox_targets[pos_inds] = bbox_xyxy_to_cxcywh(gt_bboxes / factor).repeat(num_groups, 1)
        return labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds

    @staticmethod
    def split_outputs(all_layers_cls_scores: Tensor, all_layers_bbox_preds: Tensor,
                      dn_meta: Optional[Dict[str, int]]) -> Tuple[Tensor, ...]:
        """Split the decoder outputs into the matching and the denoising part.

        Args:
            all_layers_cls_scores (Tensor): [L, B, D + Q, cls_out_channels].
            all_layers_bbox_preds (Tensor): [L, B, D + Q, 4].
            dn_meta (dict, optional): ``num_denoising_queries`` (D, the first D queries);
                None when there are no denoising queries.

        Returns:
            tuple[Tensor]: Matching class scores [L, B, Q, cls_out_channels] and boxes
            [L, B, Q, 4], then denoising class scores [L, B, D, cls_out_channels] and boxes
            [L, B, D, 4] (both None without ``dn_meta``).
        """
        if dn_meta is None:
            return all_layers_cls_scores, all_layers_bbox_preds, None, None
        num_dn = dn_meta['num_denoising_queries']
        return (all_layers_cls_scores[:, :, num_dn:, :], all_layers_bbox_preds[:, :, num_dn:, :],
                all_layers_cls_scores[:, :, :num_dn, :], all_layers_bbox_preds[:, :, :num_dn, :])
