"""Helpers that merge the predictions of augmented views of one image (flip, multi-scale).

mmdetection 3.3 keeps them in ``mmdet.models.test_time_augs`` for its older aug-test code
paths; :class:`~mmdet_lite.models.test_time_augs.DetTTAModel` (``tools/test.py --tta``) does
its own merging. Each helper maps boxes or masks back to the original image first: undo the
flip on the augmented image (``img_shape``), then divide by the resize ``scale_factor``.
"""
import copy
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures.bbox import bbox_mapping_back
from mmdet_lite.utils import ConfigType
from ..utils import batched_nms


class MergeAugsArgumentError(ValueError, AssertionError):
    """Arguments of a merge helper that contradict each other (mmdetection asserts)."""


def _proposal_cfg_with_current_keys(cfg: ConfigType) -> ConfigDict:
    """A copy of an rpn test config with the deprecated ``nms_thr`` / ``max_num`` keys read
    into ``nms.iou_threshold`` / ``max_per_img``, as mmdetection accepts them."""
    cfg = ConfigDict(copy.deepcopy(dict(cfg)))
    if 'nms' not in cfg or 'max_num' in cfg or 'nms_thr' in cfg:
        warnings.warn('rpn test config: `nms_thr` is deprecated, give '
                      "`nms=dict(type='nms', iou_threshold=...)`; `max_num` is deprecated, "
                      'give `max_per_img`')
    if 'nms' not in cfg:
        cfg.nms = ConfigDict(type='nms', iou_threshold=cfg.nms_thr)
    if 'max_num' in cfg:
        if 'max_per_img' in cfg and cfg.max_num != cfg.max_per_img:
            raise MergeAugsArgumentError(
                f'rpn test config: max_num ({cfg.max_num}) and max_per_img '
                f'({cfg.max_per_img}) disagree; drop the deprecated max_num')
        cfg.max_per_img = cfg.max_num
    if 'nms_thr' in cfg and cfg.nms.iou_threshold != cfg.nms_thr:
        raise MergeAugsArgumentError(
            f'rpn test config: nms.iou_threshold ({cfg.nms.iou_threshold}) and nms_thr '
            f'({cfg.nms_thr}) disagree; drop the deprecated nms_thr')
    return cfg


def merge_aug_proposals(aug_proposals: List[Tensor], img_metas: List[dict],
                        cfg: ConfigType) -> Tensor:
    """Merge the proposals of several views: map back, class-agnostic NMS, keep the best.

    Args:
        aug_proposals (list[Tensor]): One tensor [n_i, 5] per view, (x1, y1, x2, y2, score)
            on that view's (resized, maybe flipped) image.
        img_metas (list[dict]): One meta dict per view with ``img_shape``,
            ``scale_factor``, ``flip`` and ``flip_direction``.
        cfg (dict): The rpn test config: ``nms=dict(iou_threshold=...)`` and
            ``max_per_img`` (or the deprecated ``nms_thr`` / ``max_num``).

    Returns:
        Tensor: Merged proposals [K, 5] in original-image pixels, highest score first,
        ``K <= max_per_img``.
    """
    cfg = _proposal_cfg_with_current_keys(cfg)
    recovered = []
    for proposals, img_meta in zip(aug_proposals, img_metas):
        proposals = proposals.clone()
        proposals[:, :4] = bbox_mapping_back(proposals[:, :4], img_meta['img_shape'],
                                             img_meta['scale_factor'], img_meta['flip'],
                                             img_meta['flip_direction'])
        recovered.append(proposals)
    proposals = torch.cat(recovered, dim=0)  # [sum n_i, 5]
    # mmdetection calls plain nms here: only the IoU threshold of the config is used
    nms_cfg = dict(type='nms', iou_threshold=cfg.nms.iou_threshold)
    merged, _ = batched_nms(proposals[:, :4].contiguous(), proposals[:, -1].contiguous(),
                            proposals.new_zeros(len(proposals), dtype=torch.long), nms_cfg,
                            class_agnostic=True)  # [K, 5], highest score first
    order = merged[:, 4].argsort(descending=True)[:min(cfg.max_per_img, len(merged))]
    return merged[order]


def merge_aug_bboxes(aug_bboxes: List[Tensor], aug_scores: Optional[List[Tensor]],
                     img_metas: List[List[dict]],
                     rcnn_test_cfg: Optional[ConfigType] = None
                     ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Average the boxes (and scores) that several views predict for the same rois.

    Args:
        aug_bboxes (list[Tensor]): One tensor [n, 4 * C] (or [n, 4]) per view, row ``i`` of
            every view belonging to the same roi.
        aug_scores (list[Tensor], optional): One tensor [n, C] per view, or None.
        img_metas (list[list[dict]]): Per view, a list whose first dict holds
            ``img_shape``, ``scale_factor``, ``flip`` and ``flip_direction``.
        rcnn_test_cfg (dict, optional): Accepted for mmdetection's signature; unused.

    Returns:
        Tensor | tuple[Tensor, Tensor]: The mean boxes [n, 4 * C] in original-image pixels,
        and the mean scores [n, C] unless ``aug_scores`` is None.
    """
    recovered = []
    for bboxes, view_metas in zip(aug_bboxes, img_metas):
        meta = view_metas[0]
        recovered.append(bbox_mapping_back(bboxes, meta['img_shape'], meta['scale_factor'],
                                           meta['flip'], meta['flip_direction']))
    bboxes = torch.stack(recovered).mean(dim=0)
    if aug_scores is None:
        return bboxes
    return bboxes, torch.stack(aug_scores).mean(dim=0)


def merge_aug_results(aug_batch_results: List[List[InstanceData]],
                      aug_batch_img_metas: List[List[dict]]) -> List[InstanceData]:
    """Map every view's detections back to the original image and concatenate them per image.

    Args:
        aug_batch_results (list[list[InstanceData]]): Outer list: views; inner: images of
            the batch. Each has ``bboxes`` [n, 4], ``scores`` [n] and ``labels`` [n].
        aug_batch_img_metas (list[list[dict]]): The meta dicts, in the same layout, with
            ``img_shape``, ``scale_factor``, ``flip`` and ``flip_direction``.

    Returns:
        list[InstanceData]: Per image, the detections of all views (in view order) in
        original-image pixels. The inputs are not modified (no NMS is applied here).
    """
    aug_batch_results = copy.deepcopy(aug_batch_results)
    merged = []
    for img_id in range(len(aug_batch_results[0])):
        views = []
        for view_results, view_metas in zip(aug_batch_results, aug_batch_img_metas):
            results, meta = view_results[img_id], view_metas[img_id]
            results.bboxes = bbox_mapping_back(results.bboxes, meta['img_shape'],
                                               meta['scale_factor'], meta['flip'],
                                               meta['flip_direction'])
            views.append(results)
        merged.append(InstanceData.cat(views))
    return merged


def merge_aug_scores(
        aug_scores: Sequence[Union[Tensor, np.ndarray]]) -> Union[Tensor, np.ndarray]:
    """Mean of the views' scores (tensors or arrays of one shape)."""
    if isinstance(aug_scores[0], Tensor):
        return torch.stack(list(aug_scores)).mean(dim=0)
    return np.mean(aug_scores, axis=0)


_FLIP_DIMS = {'horizontal': (-1, ), 'vertical': (-2, ), 'diagonal': (-2, -1)}


def merge_aug_masks(aug_masks: List[Tensor], img_metas: dict,
                    weights: Optional[Union[list, Tensor]] = None) -> Tensor:
    """Weighted mean of mask predictions (e.g. of the stages of a cascade).

    Args:
        aug_masks (list[Tensor]): Mask logits or probabilities, each [n, C, h, w].
        img_metas (dict): One meta dict for all of them; when its ``flip`` is true, every
            mask is flipped back along ``flip_direction``.
        weights (list | Tensor, optional): One weight per mask tensor; the result is then
            ``sum(w_i * m_i) / sum(w_i)``. None: the plain mean.

    Returns:
        Tensor: The merged masks [n, C, h, w].

    Raises:
        MergeAugsArgumentError: ``weights`` does not have one entry per mask tensor.
        ValueError: ``flip_direction`` is not horizontal, vertical or diagonal.
    """
    if weights is not None and len(weights) != len(aug_masks):
        raise MergeAugsArgumentError(f'merge_aug_masks: {len(weights)} weights for '
                                     f'{len(aug_masks)} mask tensors')
    flip_dims = ()
    if img_metas.get('flip', False):
        direction = img_metas['flip_direction']
        if direction not in _FLIP_DIMS:
            raise ValueError(f"merge_aug_masks: invalid flip_direction '{direction}'")
        # mmdetection slices with a negative step, which torch tensors do not support (it
        # only ever reaches this with flip False); torch.flip gives the intended result
        flip_dims = _FLIP_DIMS[direction]
    weighted = []
    for i, masks in enumerate(aug_masks):
        if flip_dims:
            masks = masks.flip(flip_dims)
        weighted.append(masks[None] * (1 if weights is None else weights[i]))
    merged = torch.cat(weighted, dim=0).mean(dim=0)
    if weights is not None:
        # the mean divided by len(weights); rescale so that it is divided by sum(weights)
        merged = merged * len(weights) / sum(weights)
    return merged
