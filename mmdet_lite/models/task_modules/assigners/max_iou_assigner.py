"""Assign each prior to the ground-truth box it overlaps most (Faster R-CNN / RetinaNet rule)."""
from typing import Optional, Sequence, Union

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult


def get_prior_boxes(pred_instances: InstanceData) -> Tensor:
    """Priors of ``pred_instances``: its ``priors``, or its ``bboxes`` (RoI-head proposals)."""
    if 'priors' in pred_instances:
        return pred_instances.priors
    if 'bboxes' in pred_instances:
        return pred_instances.bboxes
    raise KeyError('pred_instances must have a "priors" (or "bboxes") field, but has '
                   f'{list(pred_instances.keys())}')


@TASK_UTILS.register_module()
class MaxIoUAssigner:
    """Assign a ground truth (or background / ignore) to each prior by IoU.

    Steps, per prior: start as ignored (-1); background (0) if its best IoU is in the negative
    range; positive (gt index + 1) if its best IoU >= ``pos_iou_thr``. Then, with
    ``match_low_quality``, every gt also claims the prior(s) it overlaps most, provided that
    IoU >= ``min_pos_iou``, so no gt is left without a positive.

    Args:
        pos_iou_thr (float): IoU threshold for positives.
        neg_iou_thr (float | tuple[float, float]): IoU below which a prior is negative, or a
            ``[lo, hi)`` range.
        min_pos_iou (float): Minimum IoU for a low-quality match. Defaults to 0.
        gt_max_assign_all (bool): A gt claims all priors tied at its maximum IoU, not just the
            first. Defaults to True.
        ignore_iof_thr (float): Priors whose IoF with an ignored box exceeds this are ignored;
            negative disables. Defaults to -1.
        ignore_wrt_candidates (bool): IoF relative to the prior (True) or to the ignored box.
        match_low_quality (bool): Allow the low-quality matches above. Defaults to True.
        gpu_assign_thr (int): Accepted for config compatibility (everything runs on the
            tensors' own device). Defaults to -1.
        iou_calculator (dict): Config of the overlap calculator.
    """

    def __init__(self,
                 pos_iou_thr: float,
                 neg_iou_thr: Union[float, Sequence[float]],
                 min_pos_iou: float = .0,
                 gt_max_assign_all: bool = True,
                 ignore_iof_thr: float = -1,
                 ignore_wrt_candidates: bool = True,
                 match_low_quality: bool = True,
                 gpu_assign_thr: float = -1,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D')) -> None:
        if isinstance(neg_iou_thr, (list, tuple)):
            if len(neg_iou_thr) != 2:
                raise ValueError(f'neg_iou_thr as a range needs (lo, hi), but got {neg_iou_thr}')
            neg_iou_thr = tuple(float(t) for t in neg_iou_thr)
        elif isinstance(neg_iou_thr, (int, float)):
            neg_iou_thr = float(neg_iou_thr)
        else:
            raise TypeError('neg_iou_thr must be a float or a (lo, hi) pair, but got '
                            f'{type(neg_iou_thr).__name__}')
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.gt_max_assign_all = gt_max_assign_all
        self.ignore_iof_thr = ignore_iof_thr
        self.ignore_wrt_candidates = ignore_wrt_candidates
        self.gpu_assign_thr = gpu_assign_thr
        self.match_low_quality = match_low_quality
        self.iou_calculator = TASK_UTILS.build(iou_calculator)

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign gt boxes to priors.

        Args:
            pred_instances (InstanceData): ``priors`` [N, 4] (or ``bboxes``, e.g. proposals).
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            gt_instances_ignore (InstanceData, optional): ``bboxes`` [K, 4] to ignore.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 negative, -1 ignored, k > 0 -> gt k - 1),
            ``max_overlaps`` [N] and ``labels`` [N] (-1 where not positive).
        """
        priors = get_prior_boxes(pred_instances)
        gt_bboxes = gt_instances.bboxes
        gt_labels = gt_instances.labels
        gt_bboxes_ignore = None if gt_instances_ignore is None else gt_instances_ignore.bboxes

        overlaps = self.iou_calculator(gt_bboxes, priors)  # [G, N]
        if (self.ignore_iof_thr > 0 and gt_bboxes_ignore is not None
                and gt_bboxes_ignore.numel() > 0 and priors.numel() > 0):
            if self.ignore_wrt_candidates:
                ignore_iof = self.iou_calculator(priors, gt_bboxes_ignore, mode='iof')  # [N, K]
                ignore_max_iof = ignore_iof.max(dim=1).values
            else:
                ignore_iof = self.iou_calculator(gt_bboxes_ignore, priors, mode='iof')  # [K, N]
                ignore_max_iof = ignore_iof.max(dim=0).values
            # -1 keeps these priors out of both the negative range and the positives.
            overlaps[:, ignore_max_iof > self.ignore_iof_thr] = -1
        return self.assign_wrt_overlaps(overlaps, gt_labels)

    def assign_wrt_overlaps(self, overlaps: Tensor, gt_labels: Tensor) -> AssignResult:
        """Assign from a precomputed overlap matrix.

        Args:
            overlaps (Tensor): Overlaps [G, N] between gts and priors (-1 marks ignored).
            gt_labels (Tensor): Labels [G].

        Returns:
            AssignResult: The assignment.
        """
        num_gts, num_priors = overlaps.size(0), overlaps.size(1)
        assigned_gt_inds = overlaps.new_full((num_priors, ), -1, dtype=torch.long)
        assigned_labels = overlaps.new_full((num_priors, ), -1, dtype=torch.long)

        if num_gts == 0 or num_priors == 0:
            if num_gts == 0:  # nothing to match: every prior is background
                assigned_gt_inds[:] = 0
            return AssignResult(num_gts, assigned_gt_inds, overlaps.new_zeros((num_priors, )),
                                assigned_labels)

        max_overlaps, argmax_overlaps = overlaps.max(dim=0)  # [N] best gt per prior
        gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)  # [G] best prior per gt

        if isinstance(self.neg_iou_thr, tuple):
            lo, hi = self.neg_iou_thr
            negative = (max_overlaps >= lo) & (max_overlaps < hi)
        else:
            negative = (max_overlaps >= 0) & (max_overlaps < self.neg_iou_thr)
        assigned_gt_inds[negative] = 0

        positive = max_overlaps >= self.pos_iou_thr
        assigned_gt_inds[positive] = argmax_overlaps[positive] + 1

        if self.match_low_quality:
            # Later gts win ties, as in mmdet, because the loop overwrites.
            for i in range(num_gts):
                if gt_max_overlaps[i] < self.min_pos_iou:
                    continue
                if self.gt_max_assign_all:
                    assigned_gt_inds[overlaps[i, :] == gt_max_overlaps[i]] = i + 1
                else:
                    assigned_gt_inds[gt_argmax_overlaps[i]] = i + 1

        pos_inds = torch.nonzero(assigned_gt_inds > 0, as_tuple=True)[0]
        assigned_labels[pos_inds] = gt_labels[assigned_gt_inds[pos_inds] - 1]
        return AssignResult(num_gts, assigned_gt_inds, max_overlaps, assigned_labels)
