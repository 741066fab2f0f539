"""Faster R-CNN (Ren et al., 2015)."""
from mmdet_lite.registry import MODELS
from .two_stage import TwoStageDetector


@MODELS.register_module()
class FasterRCNN(TwoStageDetector):
    """Faster R-CNN: RPN proposals refined by a RoI box head. See :class:`TwoStageDetector`."""
