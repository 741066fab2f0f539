"""MaskIoUHead: predicts how well each predicted mask overlaps its object (MS R-CNN)."""
from typing import List, Tuple

import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType, InstanceList, OptMultiConfig


class MaskIoUHeadArgumentError(ValueError, AssertionError):
    """Inputs of the MaskIoUHead that mmdetection asserts on."""


@MODELS.register_module()
class MaskIoUHead(BaseModule):
    """Regress the IoU between a predicted mask and its object's full ground-truth mask.

    ::

        mask feats [K, C, 14, 14] ---------------------------------+
        mask logits of the class [K, 28, 28] -> sigmoid -> maxpool 2 [K, 1, 14, 14] -+
            -> concat [K, C + 1, 14, 14] -> convs (3x3 + ReLU; the last with stride 2)
            -> [K, conv_out, 7, 7] -> flatten -> fcs (+ ReLU) -> fc_mask_iou [K, num_classes]

    Args:
        num_convs (int): 3x3 convs; the last has stride 2. Defaults to 4.
        num_fcs (int): Linear layers after the convs. Defaults to 2.
        roi_feat_size (int | tuple[int]): Size of the mask RoI features. Defaults to 14.
        in_channels (int): Channels of the mask RoI features. Defaults to 256.
        conv_out_channels (int): Channels of the convs. Defaults to 256.
        fc_out_channels (int): Width of the fcs. Defaults to 1024.
        num_classes (int): Object classes (one IoU per class). Defaults to 80.
        loss_iou (dict): Regression loss. Defaults to ``MSELoss`` with weight 0.5.
        init_cfg (dict | list[dict]): Kaiming for the convs, Caffe2Xavier for the fcs,
            Normal(0.01) for ``fc_mask_iou``.
    """

    def __init__(
        self,
        num_convs: int = 4,
        num_fcs: int = 2,
        roi_feat_size: int = 14,
        in_channels: int = 256,
        conv_out_channels: int = 256,
        fc_out_channels: int = 1024,
        num_classes: int = 80,
        loss_iou: ConfigType = dict(type='MSELoss', loss_weight=0.5),
        init_cfg: OptMultiConfig = [
            dict(type='Kaiming', override=dict(name='convs')),
            dict(type='Caffe2Xavier', override=dict(name='fcs')),
            dict(type='Normal', std=0.01, override=dict(name='fc_mask_iou'))
        ]
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.conv_out_channels = conv_out_channels
        self.fc_out_channels = fc_out_channels
        self.num_classes = num_classes

        # The first conv also sees the pooled mask probabilities: one extra channel.
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels + 1 if i == 0 else conv_out_channels, conv_out_channels, 3,
                      stride=2 if i == num_convs - 1 else 1, padding=1)
            for i in range(num_convs))
        feat_h, feat_w = _pair(roi_feat_size)
        pooled_area = (feat_h // 2) * (feat_w // 2)  # after the stride-2 conv
        self.fcs = nn.ModuleList(
            nn.Linear(conv_out_channels * pooled_area if i == 0 else fc_out_channels,
                      fc_out_channels) for i in range(num_fcs))
        self.fc_mask_iou = nn.Linear(fc_out_channels, num_classes)
        self.relu = nn.ReLU()
        self.max_pool = nn.MaxPool2d(2, 2)
        self.loss_iou = MODELS.build(loss_iou)

    def forward(self, mask_feat: Tensor, mask_preds: Tensor) -> Tensor:
        """Predict the mask IoU of every class.

        Args:
            mask_feat (Tensor): Mask RoI features [K, C, 14, 14].
            mask_preds (Tensor): Mask logits of each RoI's class [K, 28, 28].

        Returns:
            Tensor: Predicted IoUs [K, num_classes] (raw regression outputs).
        """
        mask_probs = self.max_pool(mask_preds.sigmoid().unsqueeze(1))  # [K, 1, 14, 14]
        x = torch.cat((mask_feat, mask_probs), 1)  # [K, C + 1, 14, 14]
        for conv in self.convs:
            x = self.relu(conv(x))  # the last: [K, conv_out, 7, 7]
        x = x.flatten(1)
        for fc in self.fcs:
            x = self.relu(fc(x))  # [K, fc_out_channels]
        return self.fc_mask_iou(x)

    def loss_and_target(self, mask_iou_pred: Tensor, mask_preds: Tensor,
                        mask_targets: Tensor, sampling_results: List,
                        batch_gt_instances: InstanceList,
                        rcnn_train_cfg: ConfigDict) -> dict:
        """Mask IoU loss over the positives whose IoU target is above 0.

        Args:
            mask_iou_pred (Tensor): Predicted IoU of each positive's GT class [P].
            mask_preds (Tensor): Mask logits of each positive's GT class [P, 28, 28].
            mask_targets (Tensor): Binary GT masks in each positive RoI [P, 28, 28].
            sampling_results (list[SamplingResult]): Per-image sampled RoIs.
            batch_gt_instances (list[InstanceData]): GT of each image, with ``masks``.
            rcnn_train_cfg (dict): Needs ``mask_thr_binary``.

        Returns:
            dict: ``loss_mask_iou`` (a scalar tensor).
        """
        mask_iou_targets = self.get_targets(sampling_results, batch_gt_instances, mask_preds,
                                            mask_targets, rcnn_train_cfg)
        pos = mask_iou_targets > 0
        if pos.any():
            loss_mask_iou = self.loss_iou(mask_iou_pred[pos], mask_iou_targets[pos])
        else:
            loss_mask_iou = mask_iou_pred.sum() * 0
        return dict(loss_mask_iou=loss_mask_iou)

    def get_targets(self, sampling_results: List, batch_gt_instances: InstanceList,
                    mask_preds: Tensor, mask_targets: Tensor,
                    rcnn_train_cfg: ConfigDict) -> Tensor:
        """IoU of each positive's binarized predicted mask with its object's full GT mask.

        The overlap is counted inside the RoI, on the 28x28 grid. The GT area must be the
        whole object's, also outside the RoI: the GT area inside the RoI (on the grid) is
        divided by the fraction of the object's pixels that lie inside the RoI.

        Args:
            sampling_results (list[SamplingResult]): ``pos_priors`` and
                ``pos_assigned_gt_inds`` of each image.
            batch_gt_instances (list[InstanceData]): ``masks`` of each image.
            mask_preds (Tensor): Mask logits [P, 28, 28].
            mask_targets (Tensor): Binary GT masks in the RoIs [P, 28, 28].
            rcnn_train_cfg (dict): Needs ``mask_thr_binary``.

        Returns:
            Tensor: IoU targets [P].
        """
        area_ratios = torch.cat([
            self._get_area_ratio(get_box_tensor(res.pos_priors), res.pos_assigned_gt_inds,
                                 gt.masks)
            for res, gt in zip(sampling_results, batch_gt_instances)
        ])
        if mask_targets.size(0) != area_ratios.size(0):
            raise MaskIoUHeadArgumentError(
                f'mask_targets has {mask_targets.size(0)} rows but the sampling results '
                f'have {area_ratios.size(0)} positives')
        # mmdetection thresholds the logits, not the probabilities, with mask_thr_binary
        # (0.5 in the configs, i.e. a probability of 0.62); kept for the same targets.
        pred_masks = (mask_preds > rcnn_train_cfg['mask_thr_binary']).float()
        pred_areas = pred_masks.sum((-1, -2))
        overlaps = (pred_masks * mask_targets).sum((-1, -2))
        gt_full_areas = mask_targets.sum((-1, -2)) / (area_ratios + 1e-7)
        return overlaps / (pred_areas + gt_full_areas - overlaps)

    @staticmethod
    def _get_area_ratio(pos_proposals: Tensor, pos_assigned_gt_inds: Tensor,
                        gt_masks) -> Tensor:
        """Fraction of each matched object's mask pixels that lie inside its proposal.

        Args:
            pos_proposals (Tensor): Positive proposals [P, 4] in image pixels.
            pos_assigned_gt_inds (Tensor): Matched GT index [P].
            gt_masks (BitmapMasks | PolygonMasks): The image's GT masks.

        Returns:
            Tensor: Ratios [P] (float32, on the proposals' device).
        """
        if pos_proposals.size(0) == 0:
            return pos_proposals.new_zeros((0, ))
        full_areas = gt_masks.areas  # [G]
        # Proposal corners truncated to whole pixels, as mmdetection crops them.
        boxes = pos_proposals.detach().cpu().numpy().astype(np.int32)
        inds = pos_assigned_gt_inds.cpu().numpy()
        ratios = [
            gt_masks[int(gt_ind)].crop(box).areas[0] / (full_areas[gt_ind] + 1e-7)
            for box, gt_ind in zip(boxes, inds)
        ]
        return torch.from_numpy(np.stack(ratios)).float().to(pos_proposals.device)

    def predict_by_feat(self, mask_iou_preds: Tuple[Tensor, ...],
                        results_list: InstanceList) -> InstanceList:
        """Rescore detections: ``scores`` *= the predicted IoU of the detection's class.

        Args:
            mask_iou_preds (tuple[Tensor]): Per image [N_i, num_classes].
            results_list (list[InstanceData]): Detections with ``scores`` and ``labels``;
                updated in place.

        Returns:
            list[InstanceData]: ``results_list`` with the new ``scores``.
        """
        if len(mask_iou_preds) != len(results_list):
            raise MaskIoUHeadArgumentError(
                f'mask_iou_preds ({len(mask_iou_preds)}) and results_list '
                f'({len(results_list)}) must have one item per image')
        for results, iou_preds in zip(results_list, mask_iou_preds):
            rows = torch.arange(len(results), device=iou_preds.device)
            results.scores = results.scores * iou_preds[rows, results.labels]
        return results_list
