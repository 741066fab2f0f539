"""Mask R-CNN (He et al., 2017)."""
from mmdet_lite.registry import MODELS
from .two_stage import TwoStageDetector


@MODELS.register_module()
class MaskRCNN(TwoStageDetector):
    """Mask R-CNN: Faster R-CNN whose RoI head also has a mask branch.

    The mask branch is configured in ``roi_head`` (``mask_roi_extractor``, ``mask_head``);
    see :class:`TwoStageDetector`.
    """
