"""Sampler that draws positives and negatives uniformly at random."""
from typing import Union

import torch
from numpy import ndarray
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from ..assigners import AssignResult
from .base_sampler import BaseSampler


@TASK_UTILS.register_module()
class RandomSampler(BaseSampler):
    """Random sampler (R-CNN): at most ``num * pos_fraction`` positives, negatives fill up.

    Uses ``torch.randperm``, so runs are reproducible under ``torch.manual_seed``.

    Args:
        num (int): Number of samples per image.
        pos_fraction (float): Upper bound of the fraction of positives.
        neg_pos_ub (int): Upper bound of negatives per positive; -1 disables. Defaults to -1.
        add_gt_as_proposals (bool): Add gt boxes as proposals. Defaults to True.
    """

    def __init__(self,
                 num: int,
                 pos_fraction: float,
                 neg_pos_ub: int = -1,
                 add_gt_as_proposals: bool = True,
                 **kwargs) -> None:
        super().__init__(num=num, pos_fraction=pos_fraction, neg_pos_ub=neg_pos_ub,
                         add_gt_as_proposals=add_gt_as_proposals)

    @staticmethod
    def random_choice(gallery: Union[Tensor, ndarray, list], num: int) -> Tensor:
        """Pick ``num`` distinct elements of ``gallery`` at random.

        Args:
            gallery (Tensor | ndarray | list): Indices to pick from.
            num (int): How many to pick; at most ``len(gallery)``.

        Returns:
            Tensor: ``num`` elements of ``gallery`` (a long tensor if it was not a tensor).
        """
        if not isinstance(gallery, Tensor):
            gallery = torch.as_tensor(gallery, dtype=torch.long)
        if num > gallery.numel():
            raise ValueError(f'can not pick {num} elements from a gallery of {gallery.numel()}')
        perm = torch.randperm(gallery.numel())[:num].to(gallery.device)
        return gallery[perm]

    def _sample_by_flag(self, flags: Tensor, num_expected: int) -> Tensor:
        inds = torch.nonzero(flags, as_tuple=True)[0]
        if inds.numel() <= num_expected:
            return inds
        return self.random_choice(inds, num_expected)

    def _sample_pos(self, assign_result: AssignResult, num_expected: int, **kwargs) -> Tensor:
        """Random positives (``gt_inds > 0``), at most ``num_expected``."""
        return self._sample_by_flag(assign_result.gt_inds > 0, num_expected)

    def _sample_neg(self, assign_result: AssignResult, num_expected: int, **kwargs) -> Tensor:
        """Random negatives (``gt_inds == 0``), at most ``num_expected``."""
        return self._sample_by_flag(assign_result.gt_inds == 0, num_expected)
