"""RetinaNet (Lin et al., 2017: "Focal Loss for Dense Object Detection")."""
from mmdet_lite.registry import MODELS
from .single_stage import SingleStageDetector


@MODELS.register_module()
class RetinaNet(SingleStageDetector):
    """RetinaNet: a RetinaHead on P3-P7 of an FPN, trained with the focal loss.

    See :class:`SingleStageDetector` for the arguments.
    """
