"""VarifocalNet (Zhang et al., 2021: "VarifocalNet: An IoU-aware Dense Object Detector")."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage import SingleStageDetector


@MODELS.register_module()
class VFNet(SingleStageDetector):
    """VFNet: ResNet -> FPN (P3-P7) -> VFNetHead in the standard configs.

    The flow is :class:`SingleStageDetector`'s; with ResNet-50 on an 800x1333 input::

        backbone: 4 maps [B, 256, H/4, W/4] ... [B, 2048, H/32, W/32]
        neck:     5 maps [B, 256, H/8, W/8] ... [B, 256, H/128, W/128]
        head:     per level IoU-aware cls [B, 80, H, W], refined (l, t, r, b) [B, 4, H, W]
                  (in training also the initial (l, t, r, b) [B, 4, H, W])

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config.
        bbox_head (dict): Head config (receives ``train_cfg`` and ``test_cfg``).
        train_cfg (dict, optional): ``assigner``, ``allowed_border``, ``pos_weight`` of
            the head. Defaults to None.
        test_cfg (dict, optional): ``nms_pre``, ``score_thr``, ``nms``, ``max_per_img``
            of the head. Defaults to None.
        data_preprocessor (dict, optional): Batch normalization and padding. Defaults to None.
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
