"""TOOD (Feng et al., 2021: "TOOD: Task-aligned One-stage Object Detection")."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage import SingleStageDetector


@MODELS.register_module()
class TOOD(SingleStageDetector):
    """TOOD: ResNet -> FPN (P3-P7) -> TOODHead in the standard configs.

    The flow is :class:`SingleStageDetector`'s; with ResNet-50 on an 800x1333 input::

        backbone: 4 maps [B, 256, H/4, W/4] ... [B, 2048, H/32, W/32]
        neck:     5 maps [B, 256, H/8, W/8] ... [B, 256, H/128, W/128]
        head:     per level cls [B, 80, H, W] (probabilities), boxes [B, 4, H, W] (x1, y1, x2, y2
                  in units of the level's stride)

    The head switches from ATSS to task-aligned assignment after ``train_cfg.initial_epoch``
    epochs (the epoch is read from mmengine's MessageHub).

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config.
        bbox_head (dict): Head config (receives ``train_cfg`` and ``test_cfg``).
        train_cfg (dict, optional): ``initial_epoch``, ``initial_assigner``, ``assigner``,
            ``alpha``, ``beta``, ``allowed_border``, ``pos_weight`` of the head.
            Defaults to None.
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
