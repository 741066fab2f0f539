"""AutoAssign (Zhu et al., 2020: "AutoAssign: Differentiable Label Assignment for Dense Object
Detection")."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage import SingleStageDetector


@MODELS.register_module()
class AutoAssign(SingleStageDetector):
    """AutoAssign: backbone -> FPN (P3-P7) -> AutoAssignHead, which weights every point inside
    a box as a soft positive (see :class:`SingleStageDetector` for the loss / predict flow and
    :mod:`..dense_heads.autoassign_head` for the losses).

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config (required, as in mmdetection).
        bbox_head (dict): Head config (AutoAssignHead); receives ``train_cfg`` and
            ``test_cfg``.
        train_cfg (dict, optional): Training config of the head (unused by AutoAssignHead).
        test_cfg (dict, optional): ``nms_pre``, ``min_bbox_size``, ``score_thr``, ``nms``,
            ``max_per_img``.
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
