"""CondInst mask branch: a shared mask-feature map plus one small dynamic conv stack per
instance (Tian et al., 2020: "Conditional Convolutions for Instance Segmentation").

:class:`CondInstBboxHead` (``condinst_head.py``) predicts at every point, besides FCOS's
outputs, a vector of ``num_params`` numbers (``controller``). This module turns the neck
levels into a low-channel feature map at stride ``mask_stride`` (:class:`MaskFeatModule`,
``condinst_mask_feat.py``) and,
for every instance, runs the 1x1 conv stack those numbers define over that map plus two
channels of coordinates relative to the instance's point::

    feats P3-P5 -> MaskFeatModule -> mask_feat [B, 8, H/8, W/8]
    per instance: [rel (x, y) | mask_feat] [10, H/8, W/8] -> dynamic 1x1 convs -> [1, H/8, W/8]
    -> aligned_bilinear x2 -> mask logits at ``mask_out_stride`` (4)

The parameter layout and the grouped convolutions are RTMDet-Ins's
(:mod:`mmdet_lite.models.layers.rtmdet_ins_layers`); CondInst normalises the relative
coordinates by ``size_of_interest`` strides instead of a fixed 8 and upsamples with
:func:`aligned_bilinear`.

Training (``loss_by_feat``): the masks of the box head's positives are compared with their
gt masks sampled every ``mask_out_stride`` pixels (from ``mask_out_stride // 2``) by the Dice
loss, summed and divided by the number of masks kept. ``max_masks_to_train`` keeps a random
subset of an image's positives; otherwise ``topk_masks_per_img`` keeps, per gt, the positives
of highest ``max class prob * centerness``.

Inference (``predict_by_feat``): the detections after NMS carry their parameters; their masks
are upsampled to the padded input, cropped to ``img_shape``, resized to ``ori_shape`` with
``rescale`` and thresholded at ``test_cfg.mask_thr``.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, InstanceList, OptConfigType
from ..layers.rtmdet_ins_layers import (dynamic_conv_param_nums, dynamic_mask_convs,
                                        split_dynamic_params)
from ..task_modules.prior_generators import MlvlPointGenerator
from ..utils import aligned_bilinear, empty_instances, relative_coordinate_maps
from .base_mask_head import BaseMaskHead
from .condinst_mask_feat import CondInstArgumentError, MaskFeatModule

# MaskFeatModule and the helpers (defined in models/utils, as in mmdetection) are importable
# from here too.
__all__ = ['CondInstMaskHead', 'MaskFeatModule', 'aligned_bilinear', 'relative_coordinate_maps']


@MODELS.register_module()
class CondInstMaskHead(BaseMaskHead):
    """CondInst mask head: :class:`MaskFeatModule` plus the per-instance dynamic convs.

    Args:
        mask_feature_head (dict): :class:`MaskFeatModule`'s arguments.
        num_layers (int): Dynamic conv layers. Defaults to 3.
        feat_channels (int): Hidden channels of the dynamic convs. Defaults to 8.
        mask_out_stride (int): Stride of the predicted masks. Defaults to 4.
        size_of_interest (int): Strides per unit of the relative coordinates. Defaults to 8.
        max_masks_to_train (int): Most masks per image in the loss, drawn at random; -1 for
            no limit. Defaults to -1.
        topk_masks_per_img (int): With no ``max_masks_to_train`` limit hit, about this many
            masks per image are kept, the best-scored of each gt; -1 keeps all. Defaults to -1.
        loss_mask (dict): Mask loss (DiceLoss in the configs).
        train_cfg (dict, optional): Unused.
        test_cfg (dict, optional): ``mask_thr``.
    """

    def __init__(self,
                 mask_feature_head: ConfigType,
                 num_layers: int = 3,
                 feat_channels: int = 8,
                 mask_out_stride: int = 4,
                 size_of_interest: int = 8,
                 max_masks_to_train: int = -1,
                 topk_masks_per_img: int = -1,
                 loss_mask: ConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None) -> None:
        super().__init__()
        self.mask_feature_head = MaskFeatModule(**mask_feature_head)
        self.mask_feat_stride = self.mask_feature_head.mask_stride
        # The dynamic convs read the mask features (plus two coordinate channels).
        self.in_channels = self.mask_feature_head.out_channels
        self.num_layers = num_layers
        self.feat_channels = feat_channels
        self.size_of_interest = size_of_interest
        self.mask_out_stride = mask_out_stride
        self.max_masks_to_train = max_masks_to_train
        self.topk_masks_per_img = topk_masks_per_img
        self.prior_generator = MlvlPointGenerator([self.mask_feat_stride])
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.loss_mask = MODELS.build(loss_mask)
        self._init_layers()

    def _init_layers(self) -> None:
        """No layers of its own: the sizes of the dynamic parameters (``weight_nums``,
        ``bias_nums``, ``num_params``, which the box head's ``num_params`` must equal)."""
        self.weight_nums, self.bias_nums = dynamic_conv_param_nums(
            self.in_channels, self.feat_channels, self.num_layers)
        self.num_params = sum(self.weight_nums) + sum(self.bias_nums)

    def parse_dynamic_params(self, params: Tensor) -> Tuple[List[Tensor], List[Tensor]]:
        """Split [N, num_params] parameters into grouped-conv weights and biases per layer.

        Returns:
            tuple[list[Tensor], list[Tensor]]: weights [N * C, in, 1, 1] ([N, C, 1, 1] for
            the last layer) and biases [N * C] ([N]).
        """
        # mmdetection reshapes the hidden layers by ``in_channels`` (the mask features'
        # channels) where ``feat_channels`` is meant; they are equal (8) in every config,
        # and with other values its dynamic convs fail in the same way.
        return split_dynamic_params(params, self.weight_nums, self.bias_nums, self.in_channels)

    def dynamic_conv_forward(self, features: Tensor, weights: List[Tensor],
                             biases: List[Tensor], num_insts: int) -> Tensor:
        """Run the instances' conv stacks (ReLU between layers).

        Args:
            features (Tensor): [1, N * (2 + in_channels), H, W], instance-major channels.
            weights, biases (list[Tensor]): From :meth:`parse_dynamic_params`.
            num_insts (int): N.

        Returns:
            Tensor: [1, N, H, W] mask logits.
        """
        height, width = features.shape[-2:]
        inputs = features.reshape(num_insts, -1, height, width)
        return dynamic_mask_convs(inputs, weights, biases)[None]

    def forward(self, x: Tuple[Tensor, ...],
                positive_infos: InstanceList) -> Tuple[List[Tensor]]:
        """Mask logits of the given instances (the box head's positives in training, its
        detections at test time).

        Args:
            x (tuple[Tensor]): Neck levels, each [B, C, H_l, W_l].
            positive_infos (list[InstanceData]): Per image ``param_preds`` [N, num_params],
                ``points`` [N, 2] and ``strides`` [N].

        Returns:
            tuple[list[Tensor]]: One list: per image the mask logits [N, H_o, W_o] at
            ``mask_out_stride`` ([0, 1, H_s, W_s] for no instance, as in mmdetection).
        """
        mask_feats = self.mask_feature_head(x)  # [B, in_channels, H_s, W_s]
        mask_preds = [self.forward_single(mask_feat, info)[0]
                      for mask_feat, info in zip(mask_feats, positive_infos)]
        return (mask_preds, )

    def forward_single(self, mask_feat: Tensor, positive_info: InstanceData) -> Tuple[Tensor]:
        """Mask logits of one image's instances.

        Args:
            mask_feat (Tensor): [in_channels, H_s, W_s].
            positive_info (InstanceData): ``param_preds``, ``points``, ``strides``.

        Returns:
            tuple[Tensor]: ([N, H_o, W_o], ).
        """
        params = positive_info.get('param_preds')  # [N, num_params]
        points = positive_info.get('points')  # [N, 2]
        strides = positive_info.get('strides')  # [N]
        num_inst = params.shape[0]
        height, width = mask_feat.shape[-2:]
        if num_inst == 0:
            return (params.new_zeros((0, 1, height, width)), )
        locations = self.prior_generator.single_level_grid_priors(
            (height, width), 0, device=mask_feat.device)  # [H_s * W_s, 2]
        rel_coords = relative_coordinate_maps(locations, points, strides,
                                              self.size_of_interest, (height, width))
        mask_inputs = torch.cat([rel_coords, mask_feat[None].expand(num_inst, -1, -1, -1)],
                                dim=1)  # [N, 2 + in_channels, H_s, W_s]
        weights, biases = self.parse_dynamic_params(params)
        mask_logits = self.dynamic_conv_forward(mask_inputs.reshape(1, -1, height, width),
                                                weights, biases, num_inst)[0]  # [N, H_s, W_s]
        factor = int(self.mask_feat_stride / self.mask_out_stride)
        return (aligned_bilinear(mask_logits[None], factor)[0], )  # [N, H_o, W_o]

    # ------------------------------------------------------------------ training

    def loss_by_feat(self, mask_preds: List[Tensor], batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict], positive_infos: InstanceList,
                     **kwargs) -> dict:
        """Dice loss of the positives' masks, summed over the batch and divided by the number
        of masks in it (at least 1).

        Args:
            mask_preds (list[Tensor]): Per image [N, H_o, W_o] logits.
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``masks`` padded to the
                batch input.
            batch_img_metas (list[dict]): Metas (unused).
            positive_infos (list[InstanceData]): The box head's positives:
                ``pos_assigned_gt_inds``, ``scores``, ``centernesses``.

        Returns:
            dict[str, Tensor]: ``loss_mask``.
        """
        if positive_infos is None:
            raise CondInstArgumentError(
                'positive_infos should not be None in `CondInstMaskHead`')
        loss_mask = 0.
        total_pos = 0
        for mask_pred, gt_instances, positive_info in zip(
                mask_preds, batch_gt_instances, positive_infos):
            mask_pred, pos_mask_targets, num_pos = self._get_targets_single(
                mask_pred, gt_instances, positive_info)
            total_pos += num_pos
            if num_pos == 0 or pos_mask_targets is None:
                loss = mask_pred.new_zeros(1).mean()
            else:
                loss = self.loss_mask(mask_pred, pos_mask_targets,
                                      reduction_override='none').sum()
            loss_mask += loss
        return dict(loss_mask=loss_mask / max(total_pos, 1))

    def _get_targets_single(self, mask_preds: Tensor, gt_instances: InstanceData,
                            positive_info: InstanceData
                            ) -> Tuple[Tensor, Optional[Tensor], int]:
        """Pick the positives whose masks enter the loss and their gt masks.

        Args:
            mask_preds (Tensor): The positives' mask logits [P, H_o, W_o].
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``masks`` [G, H, W].
            positive_info (InstanceData): ``pos_assigned_gt_inds`` [P], ``scores``
                [P, num_classes] and ``centernesses`` [P, 1] (logits).

        Returns:
            tuple: the kept mask logits [K, H_o, W_o], their gt masks [K, H_o, W_o] (None
            without gt or positives) and K.
        """
        device = gt_instances.bboxes.device
        gt_masks = gt_instances.masks.to_tensor(dtype=torch.bool, device=device).float()
        pos_assigned_gt_inds = positive_info.get('pos_assigned_gt_inds')
        scores = positive_info.get('scores')
        centernesses = positive_info.get('centernesses')
        num_pos = pos_assigned_gt_inds.size(0)
        if gt_masks.size(0) == 0 or num_pos == 0:
            return mask_preds, None, 0

        # Near full-image masks are costly to back-propagate: cap how many are trained.
        if self.max_masks_to_train != -1 and num_pos > self.max_masks_to_train:
            select = torch.randperm(num_pos)[:self.max_masks_to_train]
            mask_preds = mask_preds[select]
            pos_assigned_gt_inds = pos_assigned_gt_inds[select]
            num_pos = self.max_masks_to_train
        elif self.topk_masks_per_img != -1:
            unique_gt_inds = pos_assigned_gt_inds.unique()
            per_gt = max(int(self.topk_masks_per_img / len(unique_gt_inds)), 1)
            kept_preds, kept_gt_inds = [], []
            for gt_ind in unique_gt_inds:
                of_gt = pos_assigned_gt_inds == gt_ind
                preds_of_gt = mask_preds[of_gt]
                gt_inds_of_gt = pos_assigned_gt_inds[of_gt]
                if of_gt.sum() > per_gt:
                    quality = (scores[of_gt].sigmoid().max(dim=1)[0] *
                               centernesses[of_gt].sigmoid().reshape(-1))
                    select = quality.topk(k=per_gt, dim=0)[1]
                    preds_of_gt = preds_of_gt[select]
                    gt_inds_of_gt = gt_inds_of_gt[select]
                kept_preds.append(preds_of_gt)
                kept_gt_inds.append(gt_inds_of_gt)
            mask_preds = torch.cat(kept_preds)
            pos_assigned_gt_inds = torch.cat(kept_gt_inds)
            num_pos = pos_assigned_gt_inds.size(0)

        # The pixel at the centre of each mask_out_stride cell, as the original CondInst.
        start = int(self.mask_out_stride // 2)
        gt_masks = gt_masks[:, start::self.mask_out_stride, start::self.mask_out_stride]
        gt_masks = gt_masks.gt(0.5).float()
        return mask_preds, gt_masks[pos_assigned_gt_inds], num_pos

    # ------------------------------------------------------------------ inference

    def predict_by_feat(self, mask_preds: List[Tensor], results_list: InstanceList,
                        batch_img_metas: List[dict], rescale: bool = True,
                        **kwargs) -> InstanceList:
        """Add ``masks`` to the box head's detections (in place).

        Args:
            mask_preds (list[Tensor]): Per image [K, H_o, W_o] logits of the detections.
            results_list (list[InstanceData]): The box head's detections (boxes in input
                pixels).
            batch_img_metas (list[dict]): ``img_shape``, ``ori_shape``, ``scale_factor``.
            rescale (bool): Boxes and masks in original-image pixels. Defaults to True.

        Returns:
            list[InstanceData]: The detections with ``masks`` [K, H, W] (bool).
        """
        if not len(mask_preds) == len(results_list) == len(batch_img_metas):
            raise CondInstArgumentError(
                f'expected one item per image, got {len(mask_preds)} mask predictions, '
                f'{len(results_list)} results and {len(batch_img_metas)} metas')
        for img_id, (mask_pred, img_meta) in enumerate(zip(mask_preds, batch_img_metas)):
            results = results_list[img_id]
            if results.bboxes.shape[0] == 0 or mask_pred.shape[0] == 0:
                results_list[img_id] = empty_instances([img_meta], results.bboxes.device,
                                                       task_type='mask',
                                                       instance_results=[results])[0]
            else:
                results.masks = self._predict_by_feat_single(mask_pred, results.bboxes,
                                                             img_meta, rescale)
        return results_list

    def _predict_by_feat_single(self, mask_preds: Tensor, bboxes: Tensor, img_meta: dict,
                                rescale: bool, cfg: OptConfigType = None) -> Tensor:
        """Binary masks of one image's detections; with ``rescale`` also divides ``bboxes``
        by the scale factor, in place (as mmdetection).

        Args:
            mask_preds (Tensor): [K, H_o, W_o] logits.
            bboxes (Tensor): [K, 4] in input pixels.
            img_meta (dict): ``img_shape``, ``ori_shape``, ``scale_factor``.
            rescale (bool): Masks at ``ori_shape`` instead of ``img_shape``.
            cfg (dict, optional): ``mask_thr``; ``test_cfg`` when None.

        Returns:
            Tensor: Bool masks [K, ori_h, ori_w] (or [K, img_h, img_w]).
        """
        cfg = self.test_cfg if cfg is None else cfg
        img_h, img_w = img_meta['img_shape'][:2]
        ori_h, ori_w = img_meta['ori_shape'][:2]
        probs = aligned_bilinear(mask_preds.sigmoid()[None], self.mask_out_stride)
        probs = probs[:, :, :img_h, :img_w]  # [1, K, img_h, img_w]
        if rescale:
            bboxes /= bboxes.new_tensor(img_meta['scale_factor']).repeat((1, 2))
            probs = F.interpolate(probs, (ori_h, ori_w), mode='bilinear',
                                  align_corners=False)
        return probs[0] > cfg['mask_thr']
