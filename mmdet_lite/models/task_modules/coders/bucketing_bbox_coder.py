"""Bucketing coder of SABL: each box side is a bucket classification plus a fine offset."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import (BaseBoxes, HorizontalBoxes, bbox_rescale,
                                        get_box_tensor)
from .base_bbox_coder import BaseBBoxCoder, _CoderShapeError


@TASK_UTILS.register_module()
class BucketingBBoxCoder(BaseBBoxCoder):
    """Side-Aware Boundary Localization coder (SABL, https://arxiv.org/abs/1912.04260).

    The proposal, scaled by ``scale_factor``, is cut into ``num_buckets`` buckets along x and
    along y. Each side (left, right, top, down) looks at the ``ceil(num_buckets / 2)``
    buckets of its own half, ordered from that side inwards: the bucket whose centre is
    closest to the gt side is its class label, and the offset from bucket centres to the gt
    side (in bucket widths) is its fine regression target.

    Args:
        num_buckets (int): Buckets across the whole (scaled) proposal.
        scale_factor (int): Scale of the proposal before bucketing.
        offset_topk (int): The nearest ``offset_topk`` buckets get offset targets.
            Defaults to 2.
        offset_upperbound (float): Beyond the nearest bucket, offsets must be below this
            (in bucket widths) to get a weight. Defaults to 1.0.
        cls_ignore_neighbor (bool): Give no classification weight to non-label buckets
            within one bucket width of the gt side. Defaults to True.
        clip_border (bool): Clip decoded boxes to ``max_shape``. Defaults to True.
        use_box_type (bool): Wrap decoded boxes in ``HorizontalBoxes``. Defaults to False.
    """

    def __init__(self,
                 num_buckets: int,
                 scale_factor: int,
                 offset_topk: int = 2,
                 offset_upperbound: float = 1.0,
                 cls_ignore_neighbor: bool = True,
                 clip_border: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_buckets = num_buckets
        self.scale_factor = scale_factor
        self.offset_topk = offset_topk
        self.offset_upperbound = offset_upperbound
        self.cls_ignore_neighbor = cls_ignore_neighbor
        self.clip_border = clip_border

    def encode(self, bboxes: Union[Tensor, BaseBoxes],
               gt_bboxes: Union[Tensor, BaseBoxes]) -> Tuple[Tensor, ...]:
        """Bucket labels and offsets of ``gt_bboxes`` w.r.t. the proposals ``bboxes``.

        Args:
            bboxes (Tensor | BaseBoxes): Proposals [n, 4].
            gt_bboxes (Tensor | BaseBoxes): Matched gt boxes [n, 4].

        Returns:
            tuple[Tensor]: ``(offsets, offset_weights, bucket_labels, bucket_cls_weights)``,
            each [n, 4 * ceil(num_buckets / 2)] in (left, right, top, down) side order.
        """
        bboxes, gt_bboxes = get_box_tensor(bboxes), get_box_tensor(gt_bboxes)
        if bboxes.size(0) != gt_bboxes.size(0):
            raise _CoderShapeError(f'bboxes and gt_bboxes must have the same number of boxes, '
                                   f'got {tuple(bboxes.shape)} and {tuple(gt_bboxes.shape)}')
        if bboxes.size(-1) != 4 or gt_bboxes.size(-1) != 4:
            raise _CoderShapeError(f'bboxes and gt_bboxes must end in 4, got '
                                   f'{tuple(bboxes.shape)} and {tuple(gt_bboxes.shape)}')
        return bbox2bucket(bboxes, gt_bboxes, self.num_buckets, self.scale_factor,
                           self.offset_topk, self.offset_upperbound, self.cls_ignore_neighbor)

    def decode(self,
               bboxes: Union[Tensor, BaseBoxes],
               pred_bboxes: Sequence[Tensor],
               max_shape: Optional[Sequence[int]] = None
               ) -> Tuple[Union[Tensor, BaseBoxes], Tensor]:
        """Boxes from bucket scores and offsets.

        Args:
            bboxes (Tensor | BaseBoxes): Proposals [n, 4].
            pred_bboxes (tuple[Tensor, Tensor]): ``(cls_preds, offset_preds)``, each
                [n, 4 * ceil(num_buckets / 2)].
            max_shape (tuple, optional): (h, w[, c]); boxes are clipped to
                [0, w - 1] x [0, h - 1].

        Returns:
            tuple: Boxes [n, 4] (``HorizontalBoxes`` with ``use_box_type``) and the
            localization confidence [n].
        """
        bboxes = get_box_tensor(bboxes)
        if len(pred_bboxes) != 2:
            raise _CoderShapeError('pred_bboxes must be (cls_preds, offset_preds), got '
                                   f'{len(pred_bboxes)} items')
        cls_preds, offset_preds = pred_bboxes
        if cls_preds.size(0) != bboxes.size(0) or offset_preds.size(0) != bboxes.size(0):
            raise _CoderShapeError('cls_preds and offset_preds need one row per box, got '
                                   f'{tuple(cls_preds.shape)}, {tuple(offset_preds.shape)} '
                                   f'for {tuple(bboxes.shape)}')
        decoded, loc_confidence = bucket2bbox(bboxes, cls_preds, offset_preds,
                                              self.num_buckets, self.scale_factor, max_shape,
                                              self.clip_border)
        if self.use_box_type:
            decoded = HorizontalBoxes(decoded, clone=False)
        return decoded, loc_confidence


def generat_buckets(proposals: Tensor, num_buckets: int,
                    scale_factor: float = 1.0) -> Tuple[Tensor, ...]:
    """Bucket sizes and the bucket centres each side looks at.

    Args:
        proposals (Tensor): Proposals [n, 4].
        num_buckets (int): Buckets across the whole proposal.
        scale_factor (float): Scale of the proposals before bucketing.

    Returns:
        tuple[Tensor]: ``(bucket_w [n], bucket_h [n], l_buckets, r_buckets, t_buckets,
        d_buckets)``, the last four [n, ceil(num_buckets / 2)], ordered from their side
        inwards.
    """
    proposals = bbox_rescale(proposals, scale_factor)
    side_num = int(np.ceil(num_buckets / 2.0))
    bucket_w = (proposals[:, 2] - proposals[:, 0]) / num_buckets
    bucket_h = (proposals[:, 3] - proposals[:, 1]) / num_buckets
    steps = (torch.arange(side_num).to(proposals).float() + 0.5)[None, :]  # centres, in buckets
    l_buckets = proposals[:, 0:1] + steps * bucket_w[:, None]
    r_buckets = proposals[:, 2:3] - steps * bucket_w[:, None]
    t_buckets = proposals[:, 1:2] + steps * bucket_h[:, None]
    d_buckets = proposals[:, 3:4] - steps * bucket_h[:, None]
    return bucket_w, bucket_h, l_buckets, r_buckets, t_buckets, d_buckets


def bbox2bucket(proposals: Tensor,
                gt: Tensor,
                num_buckets: int,
                scale_factor: float,
                offset_topk: int = 2,
                offset_upperbound: float = 1.0,
                cls_ignore_neighbor: bool = True) -> Tuple[Tensor, ...]:
    """Bucket classification and offset targets; see :class:`BucketingBBoxCoder`.

    Returns:
        tuple[Tensor]: ``(offsets, offset_weights, bucket_labels, bucket_cls_weights)``,
        each [n, 4 * ceil(num_buckets / 2)].
    """
    if proposals.size() != gt.size():
        raise _CoderShapeError(f'proposals and gt must have the same shape, got '
                               f'{tuple(proposals.shape)} and {tuple(gt.shape)}')
    proposals, gt = proposals.float(), gt.float()
    bucket_w, bucket_h, *side_buckets = generat_buckets(proposals, num_buckets, scale_factor)
    side_num = side_buckets[0].size(1)
    # Per side: (bucket centres, gt coordinate, bucket size), in l, r, t, d order.
    sides = zip(side_buckets, (gt[:, 0], gt[:, 2], gt[:, 1], gt[:, 3]),
                (bucket_w, bucket_w, bucket_h, bucket_h))
    rows = torch.arange(proposals.size(0), device=proposals.device)
    offsets, offset_weights, labels = [], [], []
    for buckets, gt_coord, size in sides:
        side_offsets = (buckets - gt_coord[:, None]) / size[:, None]
        nearest_dist, nearest = side_offsets.abs().topk(offset_topk, dim=1, largest=False,
                                                        sorted=True)
        weights = torch.zeros_like(side_offsets)
        weights[rows, nearest[:, 0]] = 1.0  # the nearest bucket always regresses
        for k in range(1, offset_topk):
            weights[rows, nearest[:, k]] = (nearest_dist[:, k] < offset_upperbound).float()
        offsets.append(side_offsets)
        offset_weights.append(weights)
        labels.append(nearest[:, 0])
    offsets = torch.cat(offsets, dim=-1)
    offset_weights = torch.cat(offset_weights, dim=-1)
    bucket_labels = F.one_hot(torch.stack(labels, dim=-1).view(-1), side_num).view(
        proposals.size(0), -1).float()
    if cls_ignore_neighbor:
        # Buckets within one bucket of the gt side that are not the label are ambiguous.
        near = offsets.abs() < 1
        bucket_cls_weights = (~(near & (bucket_labels == 0))).float()
    else:
        bucket_cls_weights = torch.ones_like(offsets)
    return offsets, offset_weights, bucket_labels, bucket_cls_weights


def bucket2bbox(proposals: Tensor,
                cls_preds: Tensor,
                offset_preds: Tensor,
                num_buckets: int,
                scale_factor: float = 1.0,
                max_shape: Optional[Sequence[int]] = None,
                clip_border: bool = True) -> Tuple[Tensor, Tensor]:
    """Boxes from the best bucket of each side plus its predicted offset.

    Args:
        proposals (Tensor): Proposals [n, 4].
        cls_preds (Tensor): Bucket logits [n, 4 * side_num] (sides l, r, t, d).
        offset_preds (Tensor): Offsets [n, 4 * side_num], in bucket widths.
        num_buckets (int): Buckets across the whole proposal.
        scale_factor (float): Scale of the proposals before bucketing.
        max_shape (tuple, optional): (h, w[, c]) to clip to [0, w - 1] x [0, h - 1].
        clip_border (bool): Clip when ``max_shape`` is given.

    Returns:
        tuple[Tensor, Tensor]: Boxes [n, 4] and localization confidence [n]: per side the
        top bucket probability, plus the second one when it is an adjacent bucket,
        averaged over the four sides.
    """
    side_num = int(np.ceil(num_buckets / 2.0))
    scores = F.softmax(cls_preds.view(-1, side_num), dim=1)  # [n * 4, side_num]
    score_topk, score_label = scores.topk(2, dim=1, largest=True, sorted=True)
    bucket_w, bucket_h, *_ = generat_buckets(proposals, num_buckets, scale_factor)
    rescaled = bbox_rescale(proposals, scale_factor)
    best = score_label[:, 0].view(-1, 4)  # [n, 4] best bucket per side
    offsets = offset_preds.view(-1, 4, side_num).gather(2, best[..., None])[..., 0]  # [n, 4]
    centre = best.float() + 0.5
    x1 = rescaled[:, 0] + centre[:, 0] * bucket_w - offsets[:, 0] * bucket_w
    x2 = rescaled[:, 2] - centre[:, 1] * bucket_w - offsets[:, 1] * bucket_w
    y1 = rescaled[:, 1] + centre[:, 2] * bucket_h - offsets[:, 2] * bucket_h
    y2 = rescaled[:, 3] - centre[:, 3] * bucket_h - offsets[:, 3] * bucket_h
    if clip_border and max_shape is not None:
        x1, x2 = x1.clamp(min=0, max=max_shape[1] - 1), x2.clamp(min=0, max=max_shape[1] - 1)
        y1, y2 = y1.clamp(min=0, max=max_shape[0] - 1), y2.clamp(min=0, max=max_shape[0] - 1)
    bboxes = torch.stack([x1, y1, x2, y2], dim=-1)
    adjacent = (score_label[:, 0] - score_label[:, 1]).abs() == 1
    loc_confidence = score_topk[:, 0] + score_topk[:, 1] * adjacent.float()
    return bboxes, loc_confidence.view(-1, 4).mean(dim=1)
