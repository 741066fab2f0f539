"""Sampler that takes positives from one sampler and negatives from another."""
from mmdet_lite.registry import TASK_UTILS
from .base_sampler import BaseSampler


@TASK_UTILS.register_module()
class CombinedSampler(BaseSampler):
    """Draw positives with ``pos_sampler`` and negatives with ``neg_sampler``.

    Both are built from their configs with the remaining arguments (``num``,
    ``pos_fraction``, ``neg_pos_ub``, ``add_gt_as_proposals``, ...) as defaults; how many of
    each are drawn, and the gt-as-proposal step, follow :class:`BaseSampler` with those
    arguments.

    Args:
        pos_sampler (dict): Config of the positive sampler (e.g. InstanceBalancedPosSampler).
        neg_sampler (dict): Config of the negative sampler (e.g. IoUBalancedNegSampler).
        **kwargs: ``num``, ``pos_fraction`` and the other :class:`BaseSampler` arguments.
    """

    def __init__(self, pos_sampler: dict, neg_sampler: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pos_sampler = TASK_UTILS.build(pos_sampler, default_args=kwargs)
        self.neg_sampler = TASK_UTILS.build(neg_sampler, default_args=kwargs)

    def _sample_pos(self, **kwargs):
        """Not used: the positives come from ``pos_sampler``."""
        raise NotImplementedError

    def _sample_neg(self, **kwargs):
        """Not used: the negatives come from ``neg_sampler``."""
        raise NotImplementedError
