"""Fast R-CNN (Girshick, 2015): a RoI head on precomputed proposals."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .two_stage import TwoStageDetector


@MODELS.register_module()
class FastRCNN(TwoStageDetector):
    """Fast R-CNN: a two-stage detector without an RPN.

    The proposals come with the data: ``LoadProposals`` reads them (e.g. an RPN's dump) and
    ``PackDetInputs`` puts them in each sample's ``proposals`` (``bboxes`` [N, 4] in the
    network-input frame, ``scores`` [N]). :class:`TwoStageDetector` then feeds them to the
    RoI head in ``loss``, ``predict`` and ``tensor`` modes.

    Args:
        backbone (dict): e.g. ResNet-50.
        roi_head (dict): e.g. ``StandardRoIHead`` with a ``Shared2FCBBoxHead``.
        train_cfg (dict): Needs ``rcnn`` (assigner, sampler) for training.
        test_cfg (dict): Needs ``rcnn`` (``score_thr``, ``nms``, ``max_per_img``).
        neck (dict, optional): e.g. FPN.
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 roi_head: ConfigType,
                 train_cfg: ConfigType,
                 test_cfg: ConfigType,
                 neck: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(backbone=backbone, neck=neck, roi_head=roi_head,
                         train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
