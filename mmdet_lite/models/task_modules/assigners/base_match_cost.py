"""Base class of the pairwise matching costs used by the one-to-one / one-to-k assigners."""
from typing import Optional, Union

from mmengine.structures import InstanceData
from torch import Tensor


class BaseMatchCost:
    """A weighted pairwise cost between predictions and ground truths.

    Subclasses are called as ``cost(pred_instances, gt_instances, img_meta)`` and return a
    [num_preds, num_gts] matrix already multiplied by ``weight``; lower means a better match.

    Args:
        weight (float | int): Multiplier of the cost matrix. Defaults to 1.
    """

    def __init__(self, weight: Union[float, int] = 1.) -> None:
        self.weight = weight

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Cost of matching each prediction with each ground truth.

        Args:
            pred_instances (InstanceData): Predictions (``scores``, ``bboxes``, ``masks`` ...).
            gt_instances (InstanceData): Ground truths (``labels``, ``bboxes``, ``masks`` ...).
            img_meta (dict, optional): Image meta, e.g. ``img_shape``.

        Returns:
            Tensor: [num_preds, num_gts].
        """
        raise NotImplementedError(f'{type(self).__name__} does not implement __call__')
