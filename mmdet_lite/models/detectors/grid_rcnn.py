"""Grid R-CNN (Lu et al., 2018) and Grid R-CNN Plus (2019)."""
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .two_stage import TwoStageDetector


@MODELS.register_module()
class GridRCNN(TwoStageDetector):
    """A two-stage detector whose boxes are located by grid-point heatmaps.

    The detector is the plain two-stage flow; ``GridRoIHead`` classifies the proposals
    with a box head that does not regress, and its ``GridHead`` places each kept box from
    the predicted positions of a 3x3 grid of points on the object.

    Args:
        backbone (dict): e.g. ResNet-50.
        rpn_head (dict): The RPN.
        roi_head (dict): ``GridRoIHead`` with ``grid_roi_extractor`` and ``grid_head``.
        train_cfg (dict): ``rpn``, ``rpn_proposal`` and ``rcnn`` (with ``pos_radius`` for
            the grid targets and ``max_num_grid``).
        test_cfg (dict): ``rpn`` and ``rcnn``.
        neck (dict, optional): e.g. FPN.
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 rpn_head: ConfigType,
                 roi_head: ConfigType,
                 train_cfg: ConfigType,
                 test_cfg: ConfigType,
                 neck: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(backbone=backbone, neck=neck, rpn_head=rpn_head, roi_head=roi_head,
                         train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
