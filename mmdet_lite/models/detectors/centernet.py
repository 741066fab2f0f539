"""CenterNet (Zhou et al., 2019: "Objects as Points"), as a single-stage detector.

mmdetection uses the same detector class for the original CenterNet (ResNet + CTResNetNeck +
CenterNetHead) and for the "CenterNet-update" of CenterNet2 (ResNet + FPN +
CenterNetUpdateHead); only the config differs.
"""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage import SingleStageDetector


@MODELS.register_module()
class CenterNet(SingleStageDetector):
    """CenterNet: backbone -> neck -> a heatmap head (see :class:`SingleStageDetector` for the
    loss / predict flow).

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config (required, as in mmdetection).
        bbox_head (dict): Head config; receives ``train_cfg`` and ``test_cfg``.
        train_cfg (dict, optional): Training config of the head.
        test_cfg (dict, optional): Test config of the head.
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict or list[dict], optional): Initialization config.
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
