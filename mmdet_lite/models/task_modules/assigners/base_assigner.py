"""Interface every assigner implements: ``assign(pred_instances, gt_instances, ...)``."""
from abc import ABCMeta, abstractmethod
from typing import Optional

from mmengine.structures import InstanceData


class BaseAssigner(metaclass=ABCMeta):
    """Base class of the assigners, which decide for each prediction (prior, anchor, point,
    proposal or query) whether it is matched to a ground truth, background, or ignored."""

    @abstractmethod
    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs):
        """Assign each prediction a ground truth, the background, or "ignore".

        Args:
            pred_instances (InstanceData): Predictions, typically with ``priors`` [N, 4].
            gt_instances (InstanceData): Ground truths, with ``bboxes`` [G, 4] and
                ``labels`` [G].
            gt_instances_ignore (InstanceData, optional): Regions to ignore (``bboxes``).

        Returns:
            AssignResult: The assignment.
        """


class AssignerError(ValueError, AssertionError):
    """Bad argument or input of an assigner or match cost.

    Derives from AssertionError as well because mmdetection reports these cases with
    ``assert``; code written against it (``except AssertionError``) keeps working.
    """
