"""RPN as a detector: a region proposal network trained and evaluated on its own."""
import copy
import warnings

import torch
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import SampleList
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .base import BaseDetector
from .single_stage import SingleStageDetector


class RPNConfigError(TypeError):
    """RPN got no ``test_cfg`` (mmdetection fails on ``None['rpn']`` with a TypeError)."""


@MODELS.register_module()
class RPN(SingleStageDetector):
    """Region Proposal Network (Faster R-CNN's first stage) as a stand-alone detector.

    The RPN head is stored as ``bbox_head`` (the state_dict keys are ``bbox_head.rpn_conv``
    ...), so :class:`SingleStageDetector`'s ``predict`` and ``_forward`` serve it unchanged:
    ``predict`` returns the proposals as ``pred_instances`` (``bboxes`` [K, 4] in
    original-image pixels, objectness ``scores`` [K], ``labels`` [K] all 0), the input that
    ``CocoMetric(metric='proposal_fast' | 'proposal')`` evaluates, and that ``DumpProposals``
    writes for Fast R-CNN.

    Args:
        backbone (dict): e.g. ResNet-50.
        neck (dict): e.g. FPN; None for a backbone feeding the head directly.
        rpn_head (dict): e.g. ``RPNHead``; its ``num_classes`` is forced to 1.
        train_cfg (dict, optional): Its ``rpn`` part (assigner, sampler) goes to the head.
        test_cfg (dict): Its ``rpn`` part (``nms_pre``, ``nms``, ``max_per_img``,
            ``min_bbox_size``) goes to the head.
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
        **kwargs: Ignored, as in mmdetection (e.g. a ``roi_head`` left in a config).
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 rpn_head: ConfigType,
                 train_cfg: ConfigType,
                 test_cfg: ConfigType,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        # SingleStageDetector.__init__ would hand the whole train/test cfg to the head; the
        # RPN hands over only the 'rpn' parts, so it starts from BaseDetector.
        BaseDetector.__init__(self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if test_cfg is None:
            raise RPNConfigError("RPN needs test_cfg with an 'rpn' part, e.g. dict(rpn=dict("
                                 "nms_pre=2000, max_per_img=1000, nms=dict(type='nms', "
                                 'iou_threshold=0.7), min_bbox_size=0))')
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        rpn_head = copy.deepcopy(rpn_head)
        num_classes = rpn_head.get('num_classes', 1)
        if num_classes != 1:
            warnings.warn(f'The RPN is class-agnostic: rpn_head.num_classes should be 1, got '
                          f'{num_classes}; using 1. Set rpn_head.num_classes = 1 in the '
                          'config.')
            rpn_head.update(num_classes=1)
        rpn_head.update(train_cfg=train_cfg['rpn'] if train_cfg is not None else None,
                        test_cfg=test_cfg['rpn'])
        self.bbox_head = MODELS.build(rpn_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict:
        """Objectness and box losses, every ground-truth object counted as class 0.

        Args:
            batch_inputs (Tensor): Normalized, padded images [B, 3, H, W].
            batch_data_samples (list[DetDataSample]): ``gt_instances`` and metas; left
                unchanged (the class-agnostic labels go to a copy).

        Returns:
            dict: ``loss_rpn_cls`` and ``loss_rpn_bbox`` (lists, one value per level, for
            ``RPNHead``).
        """
        x = self.extract_feat(batch_inputs)  # with FPN: [B, 256, H/4, W/4] ... H/64
        rpn_data_samples = copy.deepcopy(batch_data_samples)
        for sample in rpn_data_samples:
            labels = sample.gt_instances.labels
            sample.gt_instances.labels = torch.zeros_like(labels)
        return self.bbox_head.loss(x, rpn_data_samples)
