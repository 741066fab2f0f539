"""PAAHead: the dense head of PAA (Kim & Lee, 2020, "Probabilistic Anchor Assignment with IoU
Prediction for Object Detection").

The layers are ATSSHead's; what changes is how anchors become positives and what the third
output means:

- Assignment. A loose MaxIoUAssigner (IoU > 0.1) proposes candidates for every gt. Each
  candidate is scored by how well the head already fits it (its focal + GIoU loss). Per gt,
  the ``topk`` lowest-loss candidates of every level are modelled as a mixture of two
  Gaussians over the loss, a low-loss (positive) and a high-loss one; the candidates the
  low-loss component claims, up to the one where the mixture density peaks, stay positive,
  every other candidate becomes a negative (``paa_reassign``, ``gmm_separation_scheme``).
  These steps are :class:`~.paa_assignment.PAAAssignmentMixin`, in paa_assignment.py.
- IoU prediction. The ``atss_centerness`` conv predicts the IoU of the decoded box with its
  gt (trained with binary cross entropy towards that IoU: ``loss_iou``); at test time the
  ranking score is ``sqrt(class probability * predicted IoU)``.
- Score voting. After NMS each kept box is replaced by an average of the candidate boxes of
  its class around it, weighted by their score and by a Gaussian of (1 - IoU).
"""
from typing import List, Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import bbox_overlaps, get_box_tensor
from mmdet_lite.utils import ConfigType, InstanceList, OptConfigType, OptInstanceList
from ..layers import multiclass_nms
from ..layers.score_voting import score_voting
from ..utils import levels_to_images
from .atss_head import ATSSHead, ATSSHeadError
from .paa_assignment import PAAAssignmentMixin

# Floor of the box-loss weights (the IoU of each positive's prediction with its gt).
EPS = 1e-12


@MODELS.register_module()
class PAAHead(PAAAssignmentMixin, ATSSHead):
    """ATSSHead with probabilistic anchor assignment, IoU prediction and score voting.

    The assignment (``get_targets``, ``get_pos_loss``, ``paa_reassign``,
    ``gmm_separation_scheme``) comes from :class:`~.paa_assignment.PAAAssignmentMixin`.

    Args:
        *args: ATSSHead's positional arguments (``num_classes``, ``in_channels``).
        topk (int): Lowest-loss candidates taken from each level for a gt's mixture fit.
            Defaults to 9.
        score_voting (bool): Refine the boxes kept by NMS by score voting. Defaults to True.
        covariance_type (str): Covariance of the Gaussians, one of scikit-learn's
            ``'full'``, ``'tied'``, ``'diag'``, ``'spherical'`` (on a single value all but
            ``'tied'``, whose components share one variance, are the same). Defaults to
            ``'diag'``.
        **kwargs: ATSSHead and AnchorHead arguments; ``loss_centerness`` is the IoU loss.
    """

    def __init__(self,
                 *args,
                 topk: int = 9,
                 score_voting: bool = True,
                 covariance_type: str = 'diag',
                 **kwargs) -> None:
        self.topk = topk
        self.with_score_voting = score_voting
        self.covariance_type = covariance_type
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------------------ training

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     iou_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of the head outputs after the probabilistic reassignment.

        Args:
            cls_scores (list[Tensor]): Per level [B, A * num_classes, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, A * 4, H_l, W_l] (deltas).
            iou_preds (list[Tensor]): Per level [B, A, H_l, W_l] (IoU logits).
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.

        Returns:
            dict: Scalars ``loss_cls`` (focal, over the positives), ``loss_bbox`` (GIoU of the
            decoded boxes weighted by their IoU, over the summed IoUs) and ``loss_iou``
            (BCE of the IoU logits, over the positives).
        """
        featmap_sizes = [score.size()[-2:] for score in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise ATSSHeadError(f'expected {self.prior_generator.num_levels} levels of '
                                f'predictions, got {len(featmap_sizes)}')
        num_imgs = len(batch_img_metas)
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=cls_scores[0].device)
        labels, label_weights, bbox_targets, bbox_weights, pos_inds, pos_gt_inds = \
            self.get_targets(anchor_list, valid_flag_list, batch_gt_instances,
                             batch_img_metas, batch_gt_instances_ignore)
        # Per image, one row per anchor in anchor order: [N, C], [N, 4], [N, 1].
        cls_scores = [s.reshape(-1, self.cls_out_channels) for s in levels_to_images(cls_scores)]
        bbox_preds = [p.reshape(-1, 4) for p in levels_to_images(bbox_preds)]
        iou_preds = [p.reshape(-1, 1) for p in levels_to_images(iou_preds)]

        # The candidates' losses only decide the assignment: mmdetection computes them with
        # autograd on but never backpropagates them, so computing them without changes nothing.
        with torch.no_grad():
            num_pos = 0
            for i in range(num_imgs):
                (pos_losses, ) = self.get_pos_loss(anchor_list[i], cls_scores[i], bbox_preds[i],
                                                   labels[i], label_weights[i], bbox_targets[i],
                                                   bbox_weights[i], pos_inds[i])
                labels[i], label_weights[i], bbox_weights[i], img_num_pos = self.paa_reassign(
                    pos_losses, labels[i], label_weights[i], bbox_weights[i], pos_inds[i],
                    pos_gt_inds[i], anchor_list[i])
                num_pos += img_num_pos

        flat_cls_scores = torch.cat(cls_scores)  # [B*N, C]
        flat_bbox_preds = torch.cat(bbox_preds)  # [B*N, 4]
        flat_iou_preds = torch.cat(iou_preds)  # [B*N, 1]
        flat_labels = torch.cat(labels)
        flat_label_weights = torch.cat(label_weights)
        flat_bbox_targets = torch.cat(bbox_targets)
        flat_anchors = torch.cat([torch.cat(anchors) for anchors in anchor_list])
        pos = ((flat_labels >= 0) & (flat_labels < self.num_classes)).nonzero().reshape(-1)

        # At least one per image, so that a batch without positives does not divide by 0.
        loss_cls = self.loss_cls(flat_cls_scores, flat_labels, flat_label_weights,
                                 avg_factor=max(num_pos, num_imgs))
        if num_pos:
            pos_decoded = get_box_tensor(self.bbox_coder.decode(flat_anchors[pos],
                                                                flat_bbox_preds[pos]))
            pos_targets = flat_bbox_targets[pos]
            iou_targets = bbox_overlaps(pos_decoded.detach(), pos_targets, is_aligned=True)
            loss_iou = self.loss_centerness(flat_iou_preds[pos], iou_targets.unsqueeze(-1),
                                            avg_factor=num_pos)
            # Well-localised positives weigh more in the box loss.
            loss_bbox = self.loss_bbox(pos_decoded, pos_targets, iou_targets.clamp(min=EPS),
                                       avg_factor=iou_targets.sum())
        else:
            # Zero losses that keep the graph connected.
            loss_iou = flat_iou_preds.sum() * 0
            loss_bbox = flat_bbox_preds.sum() * 0
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_iou=loss_iou)

    # ------------------------------------------------------------------------------ testing

    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        score_factors: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """:meth:`BaseDenseHead.predict_by_feat` with the IoU logits as ``score_factors``;
        NMS cannot be skipped (so no test-time augmentation), as in mmdetection."""
        if not with_nms:
            raise ATSSHeadError('PAAHead only supports with_nms=True (score voting runs on the '
                                'NMS output), so it does not support test-time augmentation')
        return super().predict_by_feat(cls_scores, bbox_preds, score_factors=score_factors,
                                       batch_img_metas=batch_img_metas, cfg=cfg,
                                       rescale=rescale, with_nms=with_nms)

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Tensor],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: ConfigType,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """Decode one image's ``nms_pre`` best anchors of each level, then NMS and voting.

        Anchors are ranked by ``max_c sqrt(p_c * iou)``; no score threshold is applied
        before NMS.

        Args:
            cls_score_list (list[Tensor]): Per level [A * C, H_l, W_l].
            bbox_pred_list (list[Tensor]): Per level [A * 4, H_l, W_l].
            score_factor_list (list[Tensor]): Per level IoU logits [A, H_l, W_l].
            mlvl_priors (list[Tensor]): Per level anchors [H_l * W_l * A, 4].
            img_meta (dict): Meta of the image (``img_shape``, ``scale_factor``).
            cfg (dict): ``nms_pre``, ``score_thr``, ``nms``, ``max_per_img``.
            rescale (bool): Map the boxes back to the original image size.
            with_nms (bool): Must be True.

        Returns:
            InstanceData: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K].
        """
        nms_pre = cfg.get('nms_pre', -1)
        mlvl_bboxes, mlvl_scores, mlvl_ious = [], [], []
        for cls_score, bbox_pred, iou_pred, priors in zip(cls_score_list, bbox_pred_list,
                                                          score_factor_list, mlvl_priors):
            if cls_score.shape[-2:] != bbox_pred.shape[-2:]:
                raise ATSSHeadError(f'cls_score {tuple(cls_score.shape)} and bbox_pred '
                                    f'{tuple(bbox_pred.shape)} differ in size')
            scores = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels).sigmoid()
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, 4)  # [H*W*A, 4]
            ious = iou_pred.permute(1, 2, 0).reshape(-1).sigmoid()  # [H*W*A]
            if 0 < nms_pre < scores.shape[0]:
                ranking = (scores * ious[:, None]).sqrt().max(dim=1)[0]
                _, keep = ranking.topk(nms_pre)
                priors, bbox_pred, scores, ious = (priors[keep], bbox_pred[keep], scores[keep],
                                                   ious[keep])
            mlvl_bboxes.append(get_box_tensor(
                self.bbox_coder.decode(priors, bbox_pred, max_shape=img_meta['img_shape'])))
            mlvl_scores.append(scores)
            mlvl_ious.append(ious)

        results = InstanceData()
        results.bboxes = torch.cat(mlvl_bboxes)
        results.scores = torch.cat(mlvl_scores)
        results.score_factors = torch.cat(mlvl_ious)
        return self._bbox_post_process(results, cfg, rescale, with_nms, img_meta)

    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigType,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        """Rescale, class-wise NMS on ``sqrt(p * iou)``, then score voting.

        ``cfg.min_bbox_size`` is not used (nor is it in mmdetection's PAAHead).

        Args:
            results (InstanceData): ``bboxes`` [N, 4], class probabilities ``scores`` [N, C]
                and predicted IoUs ``score_factors`` [N].
            cfg (dict): ``score_thr``, ``nms``, ``max_per_img``.
            rescale (bool): Divide the boxes by ``img_meta['scale_factor']``.
            with_nms (bool): Unused (always True here).
            img_meta (dict, optional): Meta of the image.

        Returns:
            InstanceData: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K]; without voting
            highest score first, with voting grouped by class.
        """
        if rescale:
            results.bboxes = results.bboxes / results.bboxes.new_tensor(
                img_meta['scale_factor']).repeat((1, 2))
        # multiclass_nms expects a background column last (ignored).
        padding = results.scores.new_zeros(results.scores.shape[0], 1)
        nms_scores = (torch.cat([results.scores, padding], dim=1) *
                      results.score_factors[:, None]).sqrt()  # [N, C + 1]
        bboxes, scores, labels = multiclass_nms(results.bboxes, nms_scores, cfg['score_thr'],
                                                cfg['nms'], cfg['max_per_img'])
        det_bboxes = torch.cat([bboxes, scores[:, None]], dim=1)  # [K, 5]
        if self.with_score_voting and len(det_bboxes) > 0:
            det_bboxes, labels = self.score_voting(det_bboxes, labels, results.bboxes,
                                                   nms_scores, cfg['score_thr'])
        detections = InstanceData()
        detections.bboxes = det_bboxes[:, :-1]
        detections.scores = det_bboxes[:, -1]
        detections.labels = labels
        return detections

    def score_voting(self, det_bboxes: Tensor, det_labels: Tensor, mlvl_bboxes: Tensor,
                     mlvl_nms_scores: Tensor, score_thr: float) -> Tuple[Tensor, Tensor]:
        """Replace each NMS detection's box by a vote of the pre-NMS candidates of its class:
        :func:`~mmdet_lite.models.layers.score_voting.score_voting` (arguments and returns
        as there) over the ``cls_out_channels`` classes."""
        return score_voting(det_bboxes, det_labels, mlvl_bboxes, mlvl_nms_scores, score_thr,
                            self.cls_out_channels)
