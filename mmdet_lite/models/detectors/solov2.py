"""SOLOv2 (`Dynamic and Fast Instance Segmentation <https://arxiv.org/abs/2003.10152>`_)."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage_instance_seg import SingleStageInstanceSegmentor


@MODELS.register_module()
class SOLOv2(SingleStageInstanceSegmentor):
    """ResNet + FPN (P2-P6) + :class:`~mmdet_lite.models.dense_heads.SOLOV2Head`; arguments
    as :class:`SingleStageInstanceSegmentor`."""

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 mask_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None):
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head,
                         mask_head=mask_head, train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
