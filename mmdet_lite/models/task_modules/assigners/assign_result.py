"""Result of assigning ground-truth boxes to predictions (priors / proposals)."""
from typing import Any, Dict

import torch
from torch import Tensor


class AssignResult:
    """Which ground truth, if any, each prediction was assigned to.

    Args:
        num_gts (int): Number of ground-truth boxes considered.
        gt_inds (Tensor): [N] per prediction: 0 negative (background), -1 ignored, ``k > 0``
            assigned to ground truth ``k - 1`` (1-based so that 0 can mean background).
        max_overlaps (Tensor): [N] best overlap of each prediction with any ground truth.
        labels (Tensor): [N] class of the assigned ground truth, -1 where not positive.

    Example:
        >>> result = AssignResult(1, torch.tensor([1, 0, -1]), torch.tensor([.8, .1, .0]),
        ...                       torch.tensor([3, -1, -1]))
        >>> result.num_preds
        3
    """

    def __init__(self, num_gts: int, gt_inds: Tensor, max_overlaps: Tensor,
                 labels: Tensor) -> None:
        self.num_gts = num_gts
        self.gt_inds = gt_inds
        self.max_overlaps = max_overlaps
        self.labels = labels
        self._extra_properties: Dict[str, Any] = {}

    @property
    def num_preds(self) -> int:
        """int: Number of predictions (priors) assigned."""
        return len(self.gt_inds)

    def set_extra_property(self, key: str, value: Any) -> None:
        """Attach an extra per-assignment value (e.g. assigner-specific scores)."""
        if key in self.info:
            raise KeyError(f'AssignResult already has a property named {key!r}')
        self._extra_properties[key] = value

    def get_extra_property(self, key: str) -> Any:
        """Return an extra property set by ``set_extra_property`` (None if absent)."""
        return self._extra_properties.get(key, None)

    @property
    def info(self) -> Dict[str, Any]:
        """dict: All attributes, for printing and debugging."""
        basic = {
            'num_gts': self.num_gts,
            'num_preds': self.num_preds,
            'gt_inds': self.gt_inds,
            'max_overlaps': self.max_overlaps,
            'labels': self.labels,
        }
        basic.update(self._extra_properties)
        return basic

    def add_gt_(self, gt_labels: Tensor) -> None:
        """Prepend the ground truths themselves as perfectly matched predictions (in place).

        Used by samplers that add gt boxes to the proposals so every gt has a positive.

        Args:
            gt_labels (Tensor): Labels [G] of the ground truths.
        """
        self_inds = torch.arange(1, len(gt_labels) + 1, dtype=torch.long,
                                 device=gt_labels.device)
        self.gt_inds = torch.cat([self_inds, self.gt_inds])
        self.max_overlaps = torch.cat(
            [self.max_overlaps.new_ones(len(gt_labels)), self.max_overlaps])
        self.labels = torch.cat([gt_labels, self.labels])

    def __repr__(self) -> str:
        parts = [f'num_gts={self.num_gts}', f'num_preds={self.num_preds}']
        for name in ('gt_inds', 'max_overlaps', 'labels'):
            value = getattr(self, name)
            parts.append(f'{name}.shape={tuple(value.shape)}' if value is not None else
                         f'{name}=None')
        return f'<AssignResult({", ".join(parts)})>'
