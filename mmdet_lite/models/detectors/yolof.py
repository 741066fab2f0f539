"""YOLOF (Chen et al., 2021: "You Only Look One-level Feature")."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage import SingleStageDetector


@MODELS.register_module()
class YOLOF(SingleStageDetector):
    """YOLOF: ResNet C5 -> DilatedEncoder -> YOLOFHead, one feature level throughout.

    The flow is :class:`SingleStageDetector`'s; with the R-50 config on an 800x1216 input::

        backbone: 1 map [B, 2048, 25, 38]            (out_indices=(3, ): C5 only)
        neck:     1 map [B, 512, 25, 38]             (dilated residual blocks)
        head:     cls [B, 5 * num_classes, 25, 38], bbox [B, 5 * 4, 25, 38]

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config.
        bbox_head (dict): Head config (receives ``train_cfg`` and ``test_cfg``).
        train_cfg (dict, optional): ``assigner``, ``allowed_border``, ``pos_weight``.
            Defaults to None.
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
