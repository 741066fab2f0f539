"""Mask R-CNN's mask head: a small FCN on 14x14 RoI features predicting 28x28 masks."""
import math
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.config import ConfigDict
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.structures.mask import mask_target
from mmdet_lite.utils import ConfigType, InstanceList, OptConfigType, OptMultiConfig


@MODELS.register_module()
class FCNMaskHead(BaseModule):
    """Four 3x3 convs, a 2x deconv and a 1x1 per-class predictor.

    ::

        roi feats [K, 256, 14, 14] -> convs.0..3 -> upsample (deconv 2x) + ReLU
            -> conv_logits [K, num_classes, 28, 28]

    Args:
        num_convs (int): Number of 3x3 convs.
        roi_feat_size (int): Input RoI feature size (14).
        in_channels (int): Input channels.
        conv_kernel_size (int): Kernel of the convs.
        conv_out_channels (int): Channels of the convs and the deconv.
        num_classes (int): Object classes (no background channel).
        class_agnostic (bool): Predict a single mask channel.
        upsample_cfg (dict): ``dict(type='deconv', scale_factor=2)``; 'nearest'/'bilinear'
            use interpolation instead.
        conv_cfg, norm_cfg (dict, optional): Conv/norm configs of the convs.
        loss_mask (dict): Mask loss (per-pixel BCE on the GT class's channel).
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 num_convs: int = 4,
                 roi_feat_size: int = 14,
                 in_channels: int = 256,
                 conv_kernel_size: int = 3,
                 conv_out_channels: int = 256,
                 num_classes: int = 80,
                 class_agnostic: bool = False,
                 upsample_cfg: ConfigType = dict(type='deconv', scale_factor=2),
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 predictor_cfg: ConfigType = dict(type='Conv'),
                 loss_mask: ConfigType = dict(type='CrossEntropyLoss', use_mask=True,
                                              loss_weight=1.0),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        upsample_type = upsample_cfg.get('type')
        if upsample_type not in (None, 'deconv', 'nearest', 'bilinear'):
            raise ValueError(f"upsample_cfg.type must be one of None, 'deconv', 'nearest', "
                             f"'bilinear', got {upsample_type!r}")
        self.num_classes = num_classes
        self.class_agnostic = class_agnostic
        self.roi_feat_size = roi_feat_size
        self.upsample_cfg = dict(upsample_cfg)
        self.scale_factor = self.upsample_cfg.get('scale_factor', 2)
        self.loss_mask = MODELS.build(loss_mask)

        self.convs = nn.ModuleList([
            ConvModule(in_channels if i == 0 else conv_out_channels, conv_out_channels,
                       conv_kernel_size, padding=(conv_kernel_size - 1) // 2,
                       conv_cfg=conv_cfg, norm_cfg=norm_cfg) for i in range(num_convs)
        ])
        last_channels = conv_out_channels if num_convs > 0 else in_channels
        if upsample_type == 'deconv':
            self.upsample = nn.ConvTranspose2d(last_channels, conv_out_channels,
                                               self.scale_factor, stride=self.scale_factor)
            last_channels = conv_out_channels
        else:
            self.upsample = None
        self.relu = nn.ReLU(inplace=True)
        self.conv_logits = nn.Conv2d(last_channels, 1 if class_agnostic else num_classes, 1)

    def init_weights(self) -> None:
        super().init_weights()
        for module in (self.upsample, self.conv_logits):
            if module is None:
                continue
            nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            nn.init.constant_(module.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        """Predict mask logits.

        Args:
            x (Tensor): [K, C, 14, 14] RoI features.

        Returns:
            Tensor: [K, num_classes, 28, 28] mask logits.
        """
        for conv in self.convs:
            x = conv(x)  # [K, 256, 14, 14]
        if self.upsample is not None:
            x = self.relu(self.upsample(x))  # [K, 256, 28, 28]
        elif self.upsample_cfg.get('type') is not None:
            x = F.interpolate(x, scale_factor=self.scale_factor,
                              mode=self.upsample_cfg['type'])
        return self.conv_logits(x)

    def loss_and_target(self, mask_preds: Tensor, sampling_results: List,
                        batch_gt_instances: InstanceList, rcnn_train_cfg: ConfigDict) -> Dict:
        """Mask loss on the positive RoIs.

        Targets are the GT masks cropped to each positive RoI and resized to
        ``rcnn_train_cfg.mask_size`` (28); the loss reads the GT class's channel.

        Returns:
            dict: ``loss_mask`` (a dict with key ``loss_mask``) and ``mask_targets``.
        """
        # proposals may be box objects (HorizontalBoxes); mask_target crops with tensors
        targets = mask_target([get_box_tensor(res.pos_priors) for res in sampling_results],
                              [res.pos_assigned_gt_inds for res in sampling_results],
                              [gt.masks for gt in batch_gt_instances], rcnn_train_cfg)
        pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results])
        if mask_preds.size(0) == 0:
            loss = mask_preds.sum() * 0
        else:
            labels = torch.zeros_like(pos_labels) if self.class_agnostic else pos_labels
            loss = self.loss_mask(mask_preds, targets, labels)
        return dict(loss_mask=dict(loss_mask=loss), mask_targets=targets)

    def predict_by_feat(self, mask_preds: Tuple[Tensor, ...], results_list: InstanceList,
                        batch_img_metas: List[dict], rcnn_test_cfg: ConfigDict,
                        rescale: bool = False, activate_map: bool = False) -> InstanceList:
        """Paste each detection's mask into the image and binarize it.

        Args:
            mask_preds (tuple[Tensor]): Per image [N_i, num_classes, 28, 28] mask logits,
                or probabilities with ``activate_map=True``.
            results_list (list[InstanceData]): Detections with ``bboxes`` in the resized
                (network input) image and ``labels``.
            batch_img_metas (list[dict]): Image metas.
            rcnn_test_cfg (dict): Needs ``mask_thr_binary``; a negative value returns soft
                masks (uint8 probabilities * 255) instead of bool masks.
            rescale (bool): Paste into the original image (and rescale ``bboxes`` to it);
                otherwise into the resized image.
            activate_map (bool): ``mask_preds`` are already probabilities (e.g. merged
                test-time-augmentation maps): skip the sigmoid. Defaults to False.

        Returns:
            list[InstanceData]: The same results with ``masks`` [N_i, H, W] (bool, or uint8
            for a negative threshold).
        """
        if not len(mask_preds) == len(results_list) == len(batch_img_metas):
            raise MaskHeadArgumentError(
                f'mask_preds ({len(mask_preds)}), results_list ({len(results_list)}) and '
                f'batch_img_metas ({len(batch_img_metas)}) must have one item per image')
        threshold = rcnn_test_cfg['mask_thr_binary']
        for preds, results, meta in zip(mask_preds, results_list, batch_img_metas):
            bboxes = get_box_tensor(results.bboxes)
            if rescale:
                w_scale, h_scale = meta['scale_factor']
                bboxes = bboxes / bboxes.new_tensor([w_scale, h_scale, w_scale, h_scale])
                results.bboxes = bboxes
                img_h, img_w = meta['ori_shape'][:2]
            else:
                img_h, img_w = meta['img_shape'][:2]
            if bboxes.size(0) == 0:
                results.masks = torch.zeros(0, img_h, img_w, device=bboxes.device,
                                            dtype=torch.bool if threshold >= 0 else
                                            torch.uint8)
                continue
            probs = preds.to(bboxes) if activate_map else preds.sigmoid()
            if not self.class_agnostic:
                probs = probs[torch.arange(probs.size(0), device=probs.device),
                              results.labels]  # [N, 28, 28]
            else:
                probs = probs[:, 0]
            masks = paste_masks_in_image(probs, bboxes, img_h, img_w, threshold)
            if threshold < 0:
                # Soft masks for visualization and debugging, stored as mmdetection does.
                masks = (masks * 255).to(torch.uint8)
            results.masks = masks
        return results_list


class MaskHeadArgumentError(ValueError, AssertionError):
    """Inputs of the mask head that mmdetection asserts on."""


def paste_masks_in_image(mask_probs: Tensor, bboxes: Tensor, img_h: int, img_w: int,
                         threshold: float) -> Tensor:
    """Resample RoI mask probabilities into full-image boolean masks.

    Each MxM probability map is stretched over its box by bilinear sampling
    (``grid_sample`` with pixel centres at +0.5) and is zero outside the box. Only the
    pixels under each box are sampled, so the cost follows the boxes' area, not the image's.

    Args:
        mask_probs (Tensor): [N, M, M] probabilities.
        bboxes (Tensor): [N, 4] boxes in the target image's pixels.
        img_h (int): Target image height.
        img_w (int): Target image width.
        threshold (float): Binarization threshold; a negative value returns probabilities.

    Returns:
        Tensor: [N, img_h, img_w] bool masks (float probabilities if threshold < 0).
    """
    img_h, img_w = int(img_h), int(img_w)
    out_dtype = torch.bool if threshold >= 0 else mask_probs.dtype
    out = mask_probs.new_zeros(mask_probs.size(0), img_h, img_w, dtype=out_dtype)
    boxes = bboxes.detach().float().cpu()
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        # Integer pixel window covering the box plus one pixel of margin (bilinear sampling
        # still reaches those border pixels), clipped to the image.
        left, top = max(math.floor(x1) - 1, 0), max(math.floor(y1) - 1, 0)
        right, bottom = min(math.ceil(x2) + 1, img_w), min(math.ceil(y2) + 1, img_h)
        if right <= left or bottom <= top:
            continue
        xs = torch.arange(left, right, device=mask_probs.device, dtype=torch.float32) + 0.5
        ys = torch.arange(top, bottom, device=mask_probs.device, dtype=torch.float32) + 0.5
        # Normalised coordinates: -1..1 spans the box; outside it grid_sample pads zeros.
        gx = (xs - x1) / max(x2 - x1, 1e-6) * 2 - 1  # [w]
        gy = (ys - y1) / max(y2 - y1, 1e-6) * 2 - 1  # [h]
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=2)
        pasted = F.grid_sample(mask_probs[i][None, None].float(), grid[None],
                               align_corners=False)[0, 0]  # [h, w]
        out[i, top:bottom, left:right] = pasted >= threshold if threshold >= 0 else pasted
    return out
