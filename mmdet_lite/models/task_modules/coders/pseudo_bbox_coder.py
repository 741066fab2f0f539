"""Identity coder: the head regresses absolute boxes directly."""
from typing import Union

from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import BaseBoxes, HorizontalBoxes, get_box_tensor
from .base_bbox_coder import BaseBBoxCoder


@TASK_UTILS.register_module()
class PseudoBBoxCoder(BaseBBoxCoder):
    """Coder that encodes a gt box as itself and decodes a prediction as itself.

    Args:
        use_box_type (bool): Wrap decoded boxes in ``HorizontalBoxes``. Defaults to False.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)

    def encode(self, bboxes: Tensor, gt_bboxes: Union[Tensor, BaseBoxes]) -> Tensor:
        """Return ``gt_bboxes`` as a tensor [N, 4]; ``bboxes`` is unused."""
        return get_box_tensor(gt_bboxes)

    def decode(self, bboxes: Tensor,
               pred_bboxes: Union[Tensor, BaseBoxes]) -> Union[Tensor, BaseBoxes]:
        """Return ``pred_bboxes`` unchanged (wrapped in ``HorizontalBoxes`` with
        ``use_box_type``); ``bboxes`` is unused."""
        if self.use_box_type:
            return HorizontalBoxes(pred_bboxes)
        return pred_bboxes
