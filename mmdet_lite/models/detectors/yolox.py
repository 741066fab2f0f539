"""YOLOX (Ge et al., 2021: "YOLOX: Exceeding YOLO Series in 2021")."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage import SingleStageDetector


@MODELS.register_module()
class YOLOX(SingleStageDetector):
    """YOLOX: CSPDarknet -> YOLOXPAFPN -> YOLOXHead in the standard configs.

    The flow is :class:`SingleStageDetector`'s; with yolox_s on a 640x640 input::

        backbone: 3 maps [B, 128, 80, 80], [B, 256, 40, 40], [B, 512, 20, 20]
        neck:     3 maps [B, 128, 80, 80], [B, 128, 40, 40], [B, 128, 20, 20]
        head:     per level cls [B, 80, H, W], bbox [B, 4, H, W], objectness [B, 1, H, W]

    Multi-scale training is done on the batch by the data preprocessor's
    ``BatchSyncRandomResize``; the last epochs' L1 loss is switched on by
    ``YOLOXModeSwitchHook``.

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config.
        bbox_head (dict): Head config (receives ``train_cfg`` and ``test_cfg``).
        train_cfg (dict, optional): ``assigner`` of the head. Defaults to None.
        test_cfg (dict, optional): ``score_thr`` and ``nms`` of the head. Defaults to None.
        data_preprocessor (dict, optional): Batch normalization, padding and batch
            augmentations. Defaults to None.
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
