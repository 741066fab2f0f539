"""Result of sampling: the positive and negative priors that enter the loss, with targets."""
import warnings
from typing import Any, Dict, Union

import torch
from torch import Tensor

from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import BaseBoxes, cat_boxes
from mmdet_lite.utils.util_random import ensure_rng, random_boxes  # noqa: F401 (mmdet's names)
from ..assigners import AssignResult

BoxesLike = Union[Tensor, BaseBoxes]


class _NoGtError(ValueError, AssertionError):
    """Positives without any gt box (mmdetection asserts this)."""


class SamplingResult:
    """Sampled positive / negative priors and the ground truth matched to each positive.

    Args:
        pos_inds (Tensor): Indices [P] of positive priors (into ``priors``).
        neg_inds (Tensor): Indices [Q] of negative priors.
        priors (Tensor | BaseBoxes): All priors [N, 4] (gt boxes first when they were added).
        gt_bboxes (Tensor | BaseBoxes): Ground-truth boxes [G, 4]. As in mmdetection,
            ``pos_gt_bboxes`` keeps their kind: a box object for box objects, so consumers
            read it through ``get_box_tensor``.
        assign_result (AssignResult): The assignment over ``priors``.
        gt_flags (Tensor): uint8 [N], 1 where a prior is an added gt box.
        avg_factor_with_neg (bool): ``avg_factor`` counts negatives too (sampled heads) or
            positives only (dense heads with ``PseudoSampler``). Defaults to True.
    """

    def __init__(self,
                 pos_inds: Tensor,
                 neg_inds: Tensor,
                 priors: BoxesLike,
                 gt_bboxes: BoxesLike,
                 assign_result: AssignResult,
                 gt_flags: Tensor,
                 avg_factor_with_neg: bool = True) -> None:
        self.pos_inds = pos_inds
        self.neg_inds = neg_inds
        # At least 1, so that losses can divide by them.
        self.num_pos = max(pos_inds.numel(), 1)
        self.num_neg = max(neg_inds.numel(), 1)
        self.avg_factor_with_neg = avg_factor_with_neg
        self.avg_factor = self.num_pos + self.num_neg if avg_factor_with_neg else self.num_pos
        self.pos_priors = priors[pos_inds]  # [P, 4]
        self.neg_priors = priors[neg_inds]  # [Q, 4]
        self.pos_is_gt = gt_flags[pos_inds]  # [P]
        self.num_gts = gt_bboxes.shape[0]
        self.pos_assigned_gt_inds = assign_result.gt_inds[pos_inds] - 1  # [P], 0-based
        self.pos_gt_labels = assign_result.labels[pos_inds]  # [P]
        box_dim = gt_bboxes.box_dim if isinstance(gt_bboxes, BaseBoxes) else 4
        if gt_bboxes.numel() == 0:
            if self.pos_assigned_gt_inds.numel() != 0:
                raise _NoGtError('SamplingResult: positives were sampled but there is no gt box')
            self.pos_gt_bboxes = gt_bboxes.view(-1, box_dim)  # [0, box_dim]
        else:
            self.pos_gt_bboxes = gt_bboxes.view(-1, box_dim)[self.pos_assigned_gt_inds.long()]

    @property
    def priors(self) -> BoxesLike:
        """Tensor | BaseBoxes: Positive then negative priors [P + Q, 4]."""
        return cat_boxes([self.pos_priors, self.neg_priors])

    @property
    def bboxes(self) -> Tensor:
        """Tensor: Deprecated alias of ``priors`` (older mmdet name); warns."""
        warnings.warn('DeprecationWarning: bboxes is deprecated, please use "priors" instead')
        return self.priors

    @property
    def pos_bboxes(self) -> Tensor:
        """Tensor: Deprecated alias of ``pos_priors``; warns."""
        warnings.warn('DeprecationWarning: pos_bboxes is deprecated, '
                      'please use "pos_priors" instead')
        return self.pos_priors

    @property
    def neg_bboxes(self) -> Tensor:
        """Tensor: Deprecated alias of ``neg_priors``; warns."""
        warnings.warn('DeprecationWarning: neg_bboxes is deprecated, '
                      'please use "neg_priors" instead')
        return self.neg_priors

    def to(self, device) -> 'SamplingResult':
        """Move every tensor / box attribute to ``device`` (in place) and return self."""
        for key, value in self.__dict__.items():
            if isinstance(value, (Tensor, BaseBoxes)):
                self.__dict__[key] = value.to(device)
        return self

    @classmethod
    def random(cls, rng=None, **kwargs) -> 'SamplingResult':
        """A random sampling result, for tests and debugging.

        Draws :meth:`AssignResult.random`, random priors and gt boxes in the unit square, and
        samples them with a ``RandomSampler(num=32, pos_fraction=0.5, neg_pos_ub=-1,
        add_gt_as_proposals=True)``, as mmdetection does.

        Args:
            rng (None | int | np.random.RandomState): Seed or random state for the
                assignment and the boxes (the sampler and the gt labels use torch's RNG).
            **kwargs: Passed to :meth:`AssignResult.random` (``num_preds``, ``num_gts``,
                ``p_ignore``, ``p_assigned``, ``num_classes``).

        Returns:
            SamplingResult: The sampled result, gt boxes first among the priors.
        """
        rng = ensure_rng(rng)
        assign_result = AssignResult.random(rng=rng, **kwargs)
        pred_instances = InstanceData(priors=random_boxes(assign_result.num_preds, rng=rng))
        gt_instances = InstanceData(
            bboxes=random_boxes(assign_result.num_gts, rng=rng),
            labels=torch.randint(0, 5, (assign_result.num_gts, ), dtype=torch.long))
        # Built through the registry: the sampler modules import this one.
        sampler = TASK_UTILS.build(
            dict(type='RandomSampler', num=32, pos_fraction=0.5, neg_pos_ub=-1,
                 add_gt_as_proposals=True, rng=rng))
        return sampler.sample(assign_result=assign_result, pred_instances=pred_instances,
                              gt_instances=gt_instances)

    @property
    def info(self) -> Dict[str, Any]:
        """dict: The main attributes, for printing and debugging."""
        return {
            'pos_inds': self.pos_inds,
            'neg_inds': self.neg_inds,
            'pos_priors': self.pos_priors,
            'neg_priors': self.neg_priors,
            'pos_is_gt': self.pos_is_gt,
            'num_gts': self.num_gts,
            'pos_assigned_gt_inds': self.pos_assigned_gt_inds,
            'num_pos': self.num_pos,
            'num_neg': self.num_neg,
            'avg_factor': self.avg_factor,
        }

    def __nice__(self) -> str:
        """The ``info`` entries sorted by key, one per line; prior tensors as their shapes."""
        data = dict(self.info)
        for key in list(data):
            if key.endswith('_priors') or key.endswith('_masks'):
                data[key] = data[key].shape
        body = ',\n    '.join(f"'{key}': {value!r}" for key, value in sorted(data.items()))
        return '{\n    ' + body + '\n}'

    def __repr__(self) -> str:
        # mmdetection's NiceRepr layout: the summary plus the object's address.
        return f'<{self.__class__.__name__}({self.__nice__()}) at {hex(id(self))}>'

    def __str__(self) -> str:
        return f'<{self.__class__.__name__}({self.__nice__()})>'
