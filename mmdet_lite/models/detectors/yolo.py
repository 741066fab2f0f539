"""YOLOv3 (Redmon & Farhadi, 2018: "YOLOv3: An Incremental Improvement")."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage import SingleStageDetector


@MODELS.register_module()
class YOLOV3(SingleStageDetector):
    """YOLOv3: Darknet-53 -> YOLOV3Neck -> YOLOV3Head in the standard configs.

    The flow is :class:`SingleStageDetector`'s; on a 608x608 input::

        backbone: 3 maps [B, 256, 76, 76], [B, 512, 38, 38], [B, 1024, 19, 19]
        neck:     3 maps, coarse first, [B, 512, 19, 19], [B, 256, 38, 38], [B, 128, 76, 76]
        head:     a 1-tuple of 3 maps [B, 3 * (5 + num_classes), H_l, W_l]

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config.
        bbox_head (dict): Head config (receives ``train_cfg`` and ``test_cfg``).
        train_cfg (dict, optional): ``assigner`` of the head. Defaults to None.
        test_cfg (dict, optional): Post-processing of the head. Defaults to None.
        data_preprocessor (dict, optional): Batch normalization and padding.
            Defaults to None.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 bbox_head: ConfigType,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head,
                         train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
