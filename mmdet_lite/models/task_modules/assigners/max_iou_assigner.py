"""Assign each prior to the ground-truth box it overlaps most (Faster R-CNN / RetinaNet rule)."""
from typing import Callable, Optional, Union

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import bbox_overlaps, get_box_tensor
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .base_assigner import AssignerError, BaseAssigner


def get_prior_boxes(pred_instances: InstanceData) -> Tensor:
    """Priors of ``pred_instances``: its ``priors``, or its ``bboxes`` (RoI-head proposals)."""
    if 'priors' in pred_instances:
        return pred_instances.priors
    if 'bboxes' in pred_instances:
        return pred_instances.bboxes
    raise KeyError('pred_instances must have a "priors" (or "bboxes") field, but has '
                   f'{list(pred_instances.keys())}')


def _jitter_boxes(bboxes: Tensor, iou_calculator: Callable, iou_thr: float,
                  perm_range: float, max_iter: int = 5) -> Tensor:
    """Scale the coordinates of identical boxes by random factors in [1 - r, 1 + r].

    Draws again (with a range shrinking by 0.001 per try, at least 1e-3) while a jittered
    box is degenerate or overlaps the original by less than ``iou_thr``; after ``max_iter``
    extra tries the last draw is kept.

    Args:
        bboxes (Tensor): [K, 4] copies of one box.
        iou_calculator (callable): Pairwise IoU of two box sets.
        iou_thr (float): Minimum IoU of each jittered box with the original.
        perm_range (float): Initial relative jitter r.
        max_iter (int): Extra tries.

    Returns:
        Tensor: [K, 4] jittered boxes.
    """
    jittered = bboxes
    for attempt in range(max_iter + 1):
        scale = max(perm_range - attempt * 0.001, 1e-3) if attempt else perm_range
        jittered = bboxes * bboxes.new_empty(bboxes.shape).uniform_(1 - scale, 1 + scale)
        wh = jittered[:, 2:] - jittered[:, :2]
        overlaps = iou_calculator(bboxes[:1], jittered)
        if (wh > 0).all() and not (overlaps < iou_thr).any():
            break
    return jittered


def perm_repeat_bboxes(bboxes: Tensor,
                       iou_calculator: Optional[Callable] = None,
                       perm_repeat_cfg: Optional[dict] = None) -> Tensor:
    """Make repeated (identical) boxes slightly different, so that ties break.

    Every group of two or more identical boxes is jittered by :func:`_jitter_boxes`; unique
    boxes are left as they are. Used by ``MaxIoUAssigner(perm_repeat_gt_cfg=...)`` for
    datasets (e.g. Objects365, CrowdHuman) with duplicated annotations.

    Args:
        bboxes (Tensor): Boxes [N, 4], (x1, y1, x2, y2).
        iou_calculator (callable, optional): Pairwise IoU; plain IoU if None.
        perm_repeat_cfg (dict, optional): ``iou_thr`` (default 0.97) and ``perm_range``
            (default 0.01).

    Returns:
        Tensor: A new [N, 4] tensor.
    """
    bboxes = get_box_tensor(bboxes)
    if iou_calculator is None:
        iou_calculator = bbox_overlaps
    cfg = perm_repeat_cfg or {}
    iou_thr = cfg.get('iou_thr', 0.97)
    perm_range = cfg.get('perm_range', 0.01)
    bboxes = bboxes.clone()
    for box in bboxes.unique(dim=0):
        same = (bboxes == box).all(dim=-1)
        if int(same.sum()) > 1:
            bboxes[same] = _jitter_boxes(bboxes[same], iou_calculator, iou_thr, perm_range)
    return bboxes


@TASK_UTILS.register_module()
class MaxIoUAssigner(BaseAssigner):
    """Assign a ground truth (or background / ignore) to each prior by IoU.

    Steps, per prior: start as ignored (-1); background (0) if its best IoU is in the negative
    range; positive (gt index + 1) if its best IoU >= ``pos_iou_thr``. Then, with
    ``match_low_quality``, every gt also claims the prior(s) it overlaps most, provided that
    IoU >= ``min_pos_iou``, so no gt is left without a positive.

    Args:
        pos_iou_thr (float): IoU threshold for positives.
        neg_iou_thr (float | tuple[float, float]): Priors whose best IoU is in
            ``[0, neg_iou_thr)`` are negative, or in ``[lo, hi)`` for a pair. (A value of any
            other type marks no prior negative, as in mmdetection.)
        min_pos_iou (float): Minimum IoU for a low-quality match. Defaults to 0.
        gt_max_assign_all (bool): A gt claims all priors tied at its maximum IoU, not just the
            first. Defaults to True.
        ignore_iof_thr (float): Priors whose IoF with an ignored box exceeds this are ignored;
            negative disables. Defaults to -1.
        ignore_wrt_candidates (bool): IoF relative to the prior (True) or to the ignored box.
            Defaults to True.
        match_low_quality (bool): Allow the low-quality matches above. Defaults to True.
        gpu_assign_thr (int): With more ground truths than this (when positive), assign on
            the CPU to save GPU memory; results come back on the priors' device.
            Defaults to -1.
        iou_calculator (dict): Config of the overlap calculator.
            Defaults to ``dict(type='BboxOverlaps2D')``.
        perm_repeat_gt_cfg (dict, optional): If set, identical gt boxes are jittered apart
            first (see :func:`perm_repeat_bboxes`). Defaults to None.
    """

    def __init__(self,
                 pos_iou_thr: float,
                 neg_iou_thr: Union[float, tuple],
                 min_pos_iou: float = .0,
                 gt_max_assign_all: bool = True,
                 ignore_iof_thr: float = -1,
                 ignore_wrt_candidates: bool = True,
                 match_low_quality: bool = True,
                 gpu_assign_thr: float = -1,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D'),
                 perm_repeat_gt_cfg: Optional[dict] = None) -> None:
        if isinstance(neg_iou_thr, (tuple, list)) and len(neg_iou_thr) != 2:
            # Such an assigner could never assign (mmdetection asserts on first use).
            raise AssignerError(f'{type(self).__name__}: neg_iou_thr as a range must be '
                                f'(lo, hi), got {neg_iou_thr!r}.')
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.gt_max_assign_all = gt_max_assign_all
        self.ignore_iof_thr = ignore_iof_thr
        self.ignore_wrt_candidates = ignore_wrt_candidates
        self.gpu_assign_thr = gpu_assign_thr
        self.match_low_quality = match_low_quality
        self.iou_calculator = TASK_UTILS.build(iou_calculator)
        self.perm_repeat_gt_cfg = perm_repeat_gt_cfg

    def _ignore_overlapping(self, overlaps: Tensor, priors: Tensor,
                            gt_bboxes_ignore: Optional[Tensor]) -> None:
        """Set to -1 (in place) the columns of priors covered by an ignored box."""
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

        assign_on_cpu = self.gpu_assign_thr > 0 and len(gt_bboxes) > self.gpu_assign_thr
        device = priors.device
        if assign_on_cpu:
            priors, gt_bboxes, gt_labels = priors.cpu(), gt_bboxes.cpu(), gt_labels.cpu()
            if gt_bboxes_ignore is not None:
                gt_bboxes_ignore = gt_bboxes_ignore.cpu()

        if self.perm_repeat_gt_cfg is not None and priors.numel() > 0:
            gt_bboxes = perm_repeat_bboxes(gt_bboxes, self.iou_calculator,
                                           self.perm_repeat_gt_cfg)
        overlaps = self.iou_calculator(gt_bboxes, priors)  # [G, N]
        self._ignore_overlapping(overlaps, priors, gt_bboxes_ignore)
        result = self.assign_wrt_overlaps(overlaps, gt_labels)
        if assign_on_cpu:
            result.gt_inds = result.gt_inds.to(device)
            result.max_overlaps = result.max_overlaps.to(device)
            if result.labels is not None:
                result.labels = result.labels.to(device)
        return result

    def _negative_mask(self, max_overlaps: Tensor) -> Optional[Tensor]:
        """Priors in the negative range, or None when ``neg_iou_thr`` gives none."""
        thr = self.neg_iou_thr
        if isinstance(thr, (tuple, list)):
            if len(thr) != 2:
                raise AssignerError(f'{type(self).__name__}: neg_iou_thr as a range must be '
                                    f'(lo, hi), got {thr!r}.')
            return (max_overlaps >= thr[0]) & (max_overlaps < thr[1])
        if isinstance(thr, (int, float)) and not isinstance(thr, bool):
            return (max_overlaps >= 0) & (max_overlaps < thr)
        return None

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

        negative = self._negative_mask(max_overlaps)
        if negative is not None:
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
