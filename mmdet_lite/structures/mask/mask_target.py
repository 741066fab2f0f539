"""Mask-head training targets: ground-truth masks sampled inside positive proposals."""
from typing import List, Union

import numpy as np
import torch
from torch import Tensor

from mmdet_lite.utils import ConfigType
from .base_masks import BaseInstanceMasks


def _mask_size(cfg: ConfigType) -> tuple:
    if 'mask_size' not in cfg:
        raise KeyError('mask_target cfg must have a "mask_size" entry (int or (h, w))')
    size = cfg['mask_size']
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2:
        raise ValueError(f'mask_target cfg.mask_size must be an int or (h, w), got {size}')
    return tuple(int(s) for s in size)


def mask_target_single(pos_proposals: Tensor, pos_assigned_gt_inds: Tensor,
                       gt_masks: BaseInstanceMasks, cfg: ConfigType) -> Tensor:
    """Mask targets of one image.

    Args:
        pos_proposals (Tensor): Positive proposals [P, 4] in image pixels.
        pos_assigned_gt_inds (Tensor): Index [P] of the gt instance matched to each proposal.
        gt_masks (BitmapMasks | PolygonMasks): The image's gt masks.
        cfg (dict): Needs ``mask_size``; optional ``soft_mask_target`` (keep RoIAlign values).

    Returns:
        Tensor: Float targets [P, mask_h, mask_w] on the proposals' device.
    """
    mask_size = _mask_size(cfg)
    device = pos_proposals.device
    if pos_proposals.size(0) == 0:
        return pos_proposals.new_zeros((0, ) + mask_size)
    # Proposals may stick out of the image; sample only the part that has mask pixels.
    proposals = pos_proposals.detach().cpu().numpy().astype(np.float32)
    proposals[:, [0, 2]] = np.clip(proposals[:, [0, 2]], 0, gt_masks.width)
    proposals[:, [1, 3]] = np.clip(proposals[:, [1, 3]], 0, gt_masks.height)
    inds = pos_assigned_gt_inds.detach().cpu().numpy()
    targets = gt_masks.crop_and_resize(
        proposals, mask_size, inds=inds, device=device,
        binarize=not cfg.get('soft_mask_target', False)).to_ndarray()
    return torch.from_numpy(np.asarray(targets)).float().to(device)


def mask_target(pos_proposals_list: List[Tensor], pos_assigned_gt_inds_list: List[Tensor],
                gt_masks_list: List[BaseInstanceMasks],
                cfg: Union[ConfigType, List[ConfigType]]) -> Tensor:
    """Mask targets for a batch: each image's gt masks cropped to its positives and resized.

    Args:
        pos_proposals_list (list[Tensor]): Per image, positive proposals [P_i, 4].
        pos_assigned_gt_inds_list (list[Tensor]): Per image, matched gt index [P_i].
        gt_masks_list (list[BitmapMasks | PolygonMasks]): Per image, gt masks.
        cfg (dict | list[dict]): Train cfg with ``mask_size`` (int or (h, w)) and optional
            ``soft_mask_target``; one shared dict or one per image.

    Returns:
        Tensor: Targets [sum(P_i), mask_h, mask_w], float in [0, 1] (binary unless soft).
    """
    num_imgs = len(pos_proposals_list)
    if len(pos_assigned_gt_inds_list) != num_imgs or len(gt_masks_list) != num_imgs:
        raise ValueError('mask_target needs one entry per image in every list, but got '
                         f'{num_imgs} proposals, {len(pos_assigned_gt_inds_list)} gt inds and '
                         f'{len(gt_masks_list)} gt masks')
    cfg_list = cfg if isinstance(cfg, (list, tuple)) else [cfg] * num_imgs
    targets = [
        mask_target_single(p, i, m, c) for p, i, m, c in zip(
            pos_proposals_list, pos_assigned_gt_inds_list, gt_masks_list, cfg_list)
    ]
    if not targets:
        return torch.zeros((0, ) + _mask_size(cfg_list[0] if cfg_list else cfg))
    return torch.cat(targets)
