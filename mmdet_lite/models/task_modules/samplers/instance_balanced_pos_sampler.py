"""Positive sampler that spreads the positives evenly over the ground-truth instances."""
import torch
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from ..assigners import AssignResult
from .random_sampler import RandomSampler


@TASK_UTILS.register_module()
class InstanceBalancedPosSampler(RandomSampler):
    """Sample about the same number of positives for every gt instance (Libra R-CNN).

    When there are more positives than wanted, each gt keeps at most
    ``round(num_expected / num_gts) + 1`` of its positives (at random); the remainder is
    filled with random unpicked positives, or the pick is cut to ``num_expected`` at random.
    Negatives are drawn as by :class:`RandomSampler`. Arguments are RandomSampler's.
    """

    def _sample_pos(self, assign_result: AssignResult, num_expected: int,
                    **kwargs) -> Tensor:
        """Indices of at most ``num_expected`` positives, balanced over gts.

        Args:
            assign_result (AssignResult): Assignment over the priors.
            num_expected (int): Number of positives wanted.

        Returns:
            Tensor: Long indices of the sampled positives.
        """
        gt_inds = assign_result.gt_inds
        pos_inds = torch.nonzero(gt_inds > 0, as_tuple=True)[0]
        if pos_inds.numel() <= num_expected:
            return pos_inds
        unique_gt_inds = gt_inds[pos_inds].unique()
        num_per_gt = int(round(num_expected / float(len(unique_gt_inds))) + 1)
        sampled = []
        for gt_ind in unique_gt_inds:
            inds = torch.nonzero(gt_inds == gt_ind, as_tuple=True)[0]
            if len(inds) > num_per_gt:
                inds = self.random_choice(inds, num_per_gt)
            sampled.append(inds)
        sampled_inds = torch.cat(sampled)
        if len(sampled_inds) < num_expected:
            picked = torch.zeros_like(gt_inds, dtype=torch.bool)
            picked[sampled_inds] = True
            extra_inds = pos_inds[~picked[pos_inds]]
            num_extra = num_expected - len(sampled_inds)
            if len(extra_inds) > num_extra:
                extra_inds = self.random_choice(extra_inds, num_extra)
            sampled_inds = torch.cat([sampled_inds, extra_inds.long()])
        elif len(sampled_inds) > num_expected:
            sampled_inds = self.random_choice(sampled_inds, num_expected)
        return sampled_inds
