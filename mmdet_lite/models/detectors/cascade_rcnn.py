"""Cascade R-CNN (Cai & Vasconcelos, 2018)."""
from mmdet_lite.registry import MODELS
from .two_stage import TwoStageDetector


@MODELS.register_module()
class CascadeRCNN(TwoStageDetector):
    """Cascade (Mask) R-CNN: an RPN followed by a :class:`CascadeRoIHead`.

    The detector itself is a plain two-stage one; the cascade of box (and mask) heads,
    trained at rising IoU thresholds, lives in ``roi_head`` (see :class:`TwoStageDetector`
    for the arguments; ``train_cfg.rcnn`` holds one dict per stage). Paper:
    https://arxiv.org/abs/1906.09756.
    """
