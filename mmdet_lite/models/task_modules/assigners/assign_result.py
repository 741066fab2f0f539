"""Result of assigning ground-truth boxes to predictions (priors / proposals)."""
from typing import Any, Dict

import numpy as np
import torch
from torch import Tensor

from mmdet_lite.utils.util_random import ensure_rng


class DuplicatePropertyError(KeyError, AssertionError):
    """An extra property of an AssignResult was set twice (mmdetection asserts here)."""


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
        """Attach an extra per-assignment value (e.g. assigner-specific scores).

        Args:
            key (str): Name of the property; must not be a basic field or set already.
            value (Any): The value.

        Raises:
            DuplicatePropertyError: If ``key`` is taken (a KeyError and an AssertionError,
                as mmdetection asserts here).
        """
        if key in self.info:
            raise DuplicatePropertyError(f'AssignResult already has a property named {key!r}')
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

    @classmethod
    def random(cls, **kwargs) -> 'AssignResult':
        """A random but self-consistent assignment, for tests and debugging.

        Args:
            **kwargs: Optional settings, as mmdetection's:

                - num_preds (int): Number of predictions N; random in [0, 16) if not given.
                - num_gts (int): Number of ground truths G; random in [0, 8) if not given.
                - p_ignore (float): Chance that an assigned prediction is ignored instead.
                  Defaults to 0.3.
                - p_assigned (float): Chance that a prediction is assigned at all (at most
                  G are). Defaults to 0.7.
                - num_classes (int): Labels are drawn from [0, num_classes). Defaults to 3.
                - rng (None | int | np.random.RandomState): Seed or random state.

        Returns:
            AssignResult: ``gt_inds`` (int64 [N]) in [-1, G], each gt at most once;
            ``max_overlaps`` (float32 [N]) in [0, 1), 0 where unassigned; ``labels``
            (int64 [N]) in [0, num_classes) where positive (``gt_inds > 0``), -1
            elsewhere, as real assigners give (mmdetection's random puts 0 there).

        Example:
            >>> result = AssignResult.random(num_preds=5, num_gts=2, rng=0)
            >>> result.num_preds, result.num_gts
            (5, 2)
        """
        rng = ensure_rng(kwargs.get('rng', None))
        num_gts = kwargs.get('num_gts', None)
        num_preds = kwargs.get('num_preds', None)
        p_ignore = kwargs.get('p_ignore', 0.3)
        p_assigned = kwargs.get('p_assigned', 0.7)
        num_classes = kwargs.get('num_classes', 3)
        if num_gts is None:
            num_gts = rng.randint(0, 8)
        if num_preds is None:
            num_preds = rng.randint(0, 16)
        num_gts, num_preds = int(num_gts), int(num_preds)

        gt_inds = torch.zeros(num_preds, dtype=torch.int64)
        max_overlaps = torch.zeros(num_preds, dtype=torch.float32)
        labels = torch.full((num_preds, ), -1, dtype=torch.int64)
        if num_gts == 0 or num_preds == 0:
            return cls(num_gts, gt_inds, max_overlaps, labels)

        # Each gt is matched at most once: keep at most num_gts of the drawn predictions.
        assigned = np.flatnonzero(rng.rand(num_preds) < p_assigned)
        rng.shuffle(assigned)
        assigned = np.sort(assigned[:num_gts])
        is_assigned = torch.zeros(num_preds, dtype=torch.bool)
        is_assigned[torch.from_numpy(assigned)] = True
        is_ignored = torch.from_numpy(rng.rand(num_preds) < p_ignore) & is_assigned
        is_positive = is_assigned & ~is_ignored

        gt_order = torch.from_numpy(rng.permutation(num_gts)[:len(assigned)])
        gt_inds[is_assigned] = gt_order + 1  # 1-based; 0 stays "background"
        gt_inds[is_ignored] = -1
        max_overlaps[is_assigned] = torch.from_numpy(rng.rand(len(assigned))).float()
        if num_classes > 0:
            drawn = torch.from_numpy(rng.randint(0, num_classes, size=num_preds))
            labels[is_positive] = drawn[is_positive]
        return cls(num_gts, gt_inds, max_overlaps, labels)

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

    def _nice(self) -> str:
        """The field summary inside mmdetection's ``<AssignResult(...)>`` strings."""
        parts = [f'num_gts={self.num_gts!r}']
        for name in ('gt_inds', 'max_overlaps', 'labels'):
            value = getattr(self, name)
            parts.append(f'{name}={value!r}' if value is None else
                         f'{name}.shape={tuple(value.shape)!r}')
        return ', '.join(parts)

    def __str__(self) -> str:
        return f'<{self.__class__.__name__}({self._nice()})>'

    def __repr__(self) -> str:
        # As mmdetection's NiceRepr: the str form plus the object's address.
        return f'<{self.__class__.__name__}({self._nice()}) at {hex(id(self))}>'
