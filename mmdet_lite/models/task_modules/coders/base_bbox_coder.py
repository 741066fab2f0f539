"""Base class of box coders: the interface every coder in TASK_UTILS implements."""
from abc import ABCMeta, abstractmethod


class _CoderShapeError(ValueError, AssertionError):
    """Inputs of the wrong shape for a coder (mmdetection asserts these)."""


class BaseBBoxCoder(metaclass=ABCMeta):
    """Turn (prior, gt) pairs into regression targets (``encode``) and back (``decode``).

    Args:
        use_box_type (bool): Return decoded boxes as ``HorizontalBoxes`` instead of a plain
            tensor. Defaults to False.
    """

    # Size of the last dimension of an encoded target (heads size their reg branch with it).
    encode_size = 4

    def __init__(self, use_box_type: bool = False, **kwargs) -> None:
        self.use_box_type = use_box_type

    @abstractmethod
    def encode(self, bboxes, gt_bboxes):
        """Regression targets that turn ``bboxes`` into ``gt_bboxes``."""

    @abstractmethod
    def decode(self, bboxes, bboxes_pred):
        """Boxes obtained by applying the predictions ``bboxes_pred`` to ``bboxes``."""
