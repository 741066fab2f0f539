"""CondInst (Tian et al., 2020: "Conditional Convolutions for Instance Segmentation")."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage_instance_seg import SingleStageInstanceSegmentor


@MODELS.register_module()
class CondInst(SingleStageInstanceSegmentor):
    """CondInst: backbone -> FPN (P3-P7) -> :class:`CondInstBboxHead` (FCOS plus each
    point's dynamic mask parameters) -> :class:`CondInstMaskHead` (the positives' or
    detections' masks from those parameters); see
    :class:`SingleStageInstanceSegmentor` for the flow.

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config (required, as in mmdetection).
        bbox_head (dict): ``CondInstBboxHead`` config.
        mask_head (dict): ``CondInstMaskHead`` config.
        train_cfg (dict, optional): Training config of the heads.
        test_cfg (dict, optional): ``nms_pre``, ``min_bbox_size``, ``score_thr``, ``nms``,
            ``max_per_img`` and ``mask_thr``.
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 bbox_head: ConfigType,
                 mask_head: ConfigType,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head,
                         mask_head=mask_head, train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
