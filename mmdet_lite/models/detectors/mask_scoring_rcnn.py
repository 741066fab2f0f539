"""Mask Scoring R-CNN (Huang et al., 2019)."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .two_stage import TwoStageDetector


@MODELS.register_module()
class MaskScoringRCNN(TwoStageDetector):
    """Mask R-CNN whose RoI head also predicts the IoU of each mask with its object.

    The detector is a plain two-stage flow; ``MaskScoringRoIHead`` adds the ``MaskIoUHead``
    and multiplies each detection's class score by its predicted mask IoU.

    Args:
        backbone (dict): e.g. ResNet-50.
        rpn_head (dict): The RPN.
        roi_head (dict): ``MaskScoringRoIHead`` with ``mask_iou_head``.
        train_cfg (dict): ``rpn``, ``rpn_proposal`` and ``rcnn`` (with ``mask_thr_binary``
            for the mask IoU targets).
        test_cfg (dict): ``rpn`` and ``rcnn``.
        neck (dict, optional): e.g. FPN.
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 rpn_head: ConfigType,
                 roi_head: ConfigType,
                 train_cfg: ConfigType,
                 test_cfg: ConfigType,
                 neck: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(backbone=backbone, neck=neck, rpn_head=rpn_head, roi_head=roi_head,
                         train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
