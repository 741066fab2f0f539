"""RTMDet (Lyu et al., 2022: "RTMDet: An Empirical Study of Designing Real-Time Object
Detectors")."""
import torch
from mmengine.dist import get_world_size
from mmengine.logging import print_log

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .single_stage import SingleStageDetector


@MODELS.register_module()
class RTMDet(SingleStageDetector):
    """RTMDet: CSPNeXt backbone -> CSPNeXtPAFPN -> RTMDetSepBNHead (see
    :class:`SingleStageDetector` for the loss / predict flow).

    Args:
        backbone (dict): Backbone config (CSPNeXt in the RTMDet configs).
        neck (dict): Neck config (CSPNeXtPAFPN).
        bbox_head (dict): Head config (RTMDetSepBNHead); receives ``train_cfg`` and
            ``test_cfg``.
        train_cfg (dict, optional): ``assigner`` (DynamicSoftLabelAssigner),
            ``allowed_border``, ``pos_weight``.
        test_cfg (dict, optional): ``nms_pre``, ``min_bbox_size``, ``score_thr``, ``nms``,
            ``max_per_img``.
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
        use_syncbn (bool): Convert every BatchNorm to SyncBatchNorm when running on more than
            one process (the world size is read once, at construction). Defaults to True.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 bbox_head: ConfigType,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 use_syncbn: bool = True) -> None:
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head,
                         train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if use_syncbn and get_world_size() > 1:
            # Replaces the BN children in place (self is not a BN, so nothing is returned
            # that would need keeping). A single process keeps plain BN, which SyncBN would
            # only emulate.
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(self)
            print_log('Using SyncBatchNorm()', 'current')
