"""Pseudo sampler over predicted masks: keeps every assigned mask prediction."""
import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS
from ..assigners import AssignResult
from .base_sampler import BaseSampler
from .mask_sampling_result import MaskSamplingResult


@TASK_UTILS.register_module()
class MaskPseudoSampler(BaseSampler):
    """Return all positive and negative mask predictions of the assignment; no sampling.

    ``avg_factor`` of the result is the number of positives (at least 1).
    """

    def __init__(self, **kwargs) -> None:
        pass

    def _sample_pos(self, **kwargs):
        """Not used: everything is returned."""
        raise NotImplementedError

    def _sample_neg(self, **kwargs):
        """Not used: everything is returned."""
        raise NotImplementedError

    def sample(self, assign_result: AssignResult, pred_instances: InstanceData,
               gt_instances: InstanceData, *args, **kwargs) -> MaskSamplingResult:
        """Wrap the assignment as a mask sampling result.

        Args:
            assign_result (AssignResult): Assignment over the predictions.
            pred_instances (InstanceData): ``masks`` [N, H, W] (and scores).
            gt_instances (InstanceData): ``masks`` [G, H, W] and ``labels``.

        Returns:
            MaskSamplingResult: Every positive and negative prediction.
        """
        pred_masks = pred_instances.masks
        gt_masks = gt_instances.masks
        pos_inds = torch.nonzero(assign_result.gt_inds > 0, as_tuple=True)[0].unique()
        neg_inds = torch.nonzero(assign_result.gt_inds == 0, as_tuple=True)[0].unique()
        gt_flags = pred_masks.new_zeros(pred_masks.shape[0], dtype=torch.uint8)
        return MaskSamplingResult(pos_inds=pos_inds, neg_inds=neg_inds, masks=pred_masks,
                                  gt_masks=gt_masks, assign_result=assign_result,
                                  gt_flags=gt_flags, avg_factor_with_neg=False)
