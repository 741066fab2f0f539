"""IoU-balanced negative sampler (Libra R-CNN, https://arxiv.org/abs/1904.02701)."""
import torch
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from ..assigners import AssignResult
from .random_sampler import RandomSampler


class _SamplerConfigError(ValueError, AssertionError):
    """Invalid sampler arguments (mmdetection asserts these)."""


@TASK_UTILS.register_module()
class IoUBalancedNegSampler(RandomSampler):
    """Sample negatives evenly across IoU bins instead of uniformly.

    ``floor_fraction`` of the negatives are drawn at random among those with max IoU below
    ``floor_thr``; the others are split evenly over ``num_bins`` IoU intervals from
    ``floor_thr`` to the highest IoU. Shortfalls are filled with random negatives.

    Args:
        num (int): Number of samples per image.
        pos_fraction (float): Upper bound of the fraction of positives.
        floor_thr (float): IoU below which negatives are drawn at random; -1 puts every
            negative in the IoU-balanced part. Defaults to -1.
        floor_fraction (float): Fraction of the negatives drawn below ``floor_thr``.
            Defaults to 0.
        num_bins (int): Number of IoU bins. Defaults to 3.
        **kwargs: ``neg_pos_ub``, ``add_gt_as_proposals``, as in :class:`RandomSampler`.
    """

    def __init__(self,
                 num: int,
                 pos_fraction: float,
                 floor_thr: float = -1,
                 floor_fraction: float = 0,
                 num_bins: int = 3,
                 **kwargs) -> None:
        super().__init__(num, pos_fraction, **kwargs)
        if not (floor_thr >= 0 or floor_thr == -1):
            raise _SamplerConfigError(f'floor_thr must be >= 0 or -1, got {floor_thr}')
        if not 0 <= floor_fraction <= 1:
            raise _SamplerConfigError(f'floor_fraction must be in [0, 1], got {floor_fraction}')
        if num_bins < 1:
            raise _SamplerConfigError(f'num_bins must be >= 1, got {num_bins}')
        self.floor_thr = floor_thr
        self.floor_fraction = floor_fraction
        self.num_bins = num_bins

    def _pick(self, mask: Tensor, num: int) -> Tensor:
        """Indices where ``mask`` is set; ``num`` of them at random when there are more."""
        inds = torch.nonzero(mask, as_tuple=True)[0]
        return self.random_choice(inds, num) if len(inds) > num else inds

    def sample_via_interval(self, max_overlaps: Tensor, candidates: Tensor,
                            num_expected: int, floor_thr: float = None) -> Tensor:
        """Sample ``num_expected`` candidates evenly over the IoU bins.

        Args:
            max_overlaps (Tensor): Max IoU [N] of every prior.
            candidates (Tensor): Bool mask [N] of the priors to sample from.
            num_expected (int): Number of samples.
            floor_thr (float, optional): Lower end of the first bin; defaults to
                ``self.floor_thr``.

        Returns:
            Tensor: Long indices; at most ``num_expected // num_bins`` per bin, then random
            candidates to reach ``num_expected``.
        """
        floor_thr = self.floor_thr if floor_thr is None else floor_thr
        interval = (max_overlaps.max() - floor_thr) / self.num_bins
        per_bin = int(num_expected / self.num_bins)
        sampled = []
        for i in range(self.num_bins):
            start, end = floor_thr + i * interval, floor_thr + (i + 1) * interval
            in_bin = candidates & (max_overlaps >= start) & (max_overlaps < end)
            sampled.append(self._pick(in_bin, per_bin))
        sampled_inds = torch.cat(sampled)
        if len(sampled_inds) < num_expected:
            rest = candidates.clone()
            rest[sampled_inds] = False
            sampled_inds = torch.cat([sampled_inds,
                                      self._pick(rest, num_expected - len(sampled_inds))])
        return sampled_inds

    def _sample_neg(self, assign_result: AssignResult, num_expected: int,
                    **kwargs) -> Tensor:
        """Indices of at most ``num_expected`` negatives, balanced over IoU.

        Args:
            assign_result (AssignResult): Assignment with ``max_overlaps``.
            num_expected (int): Number of negatives wanted.

        Returns:
            Tensor: Long indices of the sampled negatives.
        """
        is_neg = assign_result.gt_inds == 0
        neg_inds = torch.nonzero(is_neg, as_tuple=True)[0]
        if len(neg_inds) <= num_expected:
            return neg_inds
        max_overlaps = assign_result.max_overlaps
        floor_thr = self.floor_thr
        if floor_thr > 0:
            floor_mask = (max_overlaps >= 0) & (max_overlaps < floor_thr)
            iou_mask = max_overlaps >= floor_thr
        elif floor_thr == 0:
            floor_mask = max_overlaps == 0
            iou_mask = max_overlaps > 0
        else:
            # -1: every negative is IoU-balanced, with bins starting at IoU 0. (mmdetection
            # also sets self.floor_thr = 0 here, which changes later calls; we do not.)
            floor_mask = torch.zeros_like(is_neg)
            iou_mask = max_overlaps > floor_thr
            floor_thr = 0
        floor_neg, iou_neg = floor_mask & is_neg, iou_mask & is_neg

        num_expected_iou = int(num_expected * (1 - self.floor_fraction))
        if int(iou_neg.sum()) > num_expected_iou:
            if self.num_bins >= 2:
                iou_sampled = self.sample_via_interval(max_overlaps, iou_neg, num_expected_iou,
                                                       floor_thr=floor_thr)
            else:
                iou_sampled = self._pick(iou_neg, num_expected_iou)
        else:
            iou_sampled = torch.nonzero(iou_neg, as_tuple=True)[0]
        floor_sampled = self._pick(floor_neg, num_expected - len(iou_sampled))
        sampled_inds = torch.cat([floor_sampled, iou_sampled])
        if len(sampled_inds) < num_expected:
            rest = is_neg.clone()
            rest[sampled_inds] = False
            sampled_inds = torch.cat([sampled_inds,
                                      self._pick(rest, num_expected - len(sampled_inds))])
        return sampled_inds.long()
