"""Sampler that keeps every assigned prior (dense heads that weight all anchors, e.g. RetinaNet)."""
import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS
from ..assigners import AssignResult
from ..assigners.max_iou_assigner import get_prior_boxes
from .sampling_result import SamplingResult


@TASK_UTILS.register_module()
class PseudoSampler:
    """Return all positives and all negatives of the assignment; no gt boxes are added.

    ``avg_factor`` of the result is the number of positives (at least 1).
    """

    def __init__(self, **kwargs) -> None:
        pass

    def sample(self, assign_result: AssignResult, pred_instances: InstanceData,
               gt_instances: InstanceData, *args, **kwargs) -> SamplingResult:
        """Wrap the assignment as a sampling result.

        Args:
            assign_result (AssignResult): Assignment over the priors.
            pred_instances (InstanceData): ``priors`` [N, 4] (or ``bboxes``).
            gt_instances (InstanceData): ``bboxes`` [G, 4].

        Returns:
            SamplingResult: Every positive and negative prior.
        """
        priors = get_prior_boxes(pred_instances)
        pos_inds = torch.nonzero(assign_result.gt_inds > 0, as_tuple=True)[0].unique()
        neg_inds = torch.nonzero(assign_result.gt_inds == 0, as_tuple=True)[0].unique()
        gt_flags = priors.new_zeros(priors.shape[0], dtype=torch.uint8)
        return SamplingResult(pos_inds=pos_inds, neg_inds=neg_inds, priors=priors,
                              gt_bboxes=gt_instances.bboxes, assign_result=assign_result,
                              gt_flags=gt_flags, avg_factor_with_neg=False)
