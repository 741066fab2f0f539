"""Single-stage instance segmentors: backbone -> neck -> [box head] -> mask head."""
import copy
from typing import Tuple

from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import OptSampleList, SampleList
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .base import BaseDetector

INF = 1e8


class InstanceSegmentorArgumentError(ValueError, AssertionError):
    """Bad configuration or outputs of a single-stage instance segmentor (an AssertionError
    in mmdetection)."""


@MODELS.register_module()
class SingleStageInstanceSegmentor(BaseDetector):
    """A mask head (and optionally a box head) on backbone (+ neck) features.

    SOLO and SOLOv2 have only a mask head, which assigns its own targets. YOLACT and
    CondInst add a box head whose positives (``get_positive_infos``) and detections feed the
    mask head::

        loss:    extract_feat -> [bbox_head.loss] -> mask_head.loss(positive_infos)
        predict: extract_feat -> [bbox_head.predict] -> mask_head.predict(results_list)
        tensor:  extract_feat -> ([bbox_head.forward], mask_head.forward)

    Args:
        backbone (dict): e.g. ResNet-50 giving C2..C5.
        neck (dict, optional): e.g. FPN giving P2..P6.
        bbox_head (dict, optional): Box head. Defaults to None.
        mask_head (dict): Mask head (required); gets ``train_cfg`` and ``test_cfg``.
        train_cfg (dict, optional): Training config of the heads.
        test_cfg (dict, optional): Post-processing config of the heads.
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 mask_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        if bbox_head is not None:
            bbox_head = copy.deepcopy(bbox_head)
            bbox_head.update(train_cfg=copy.deepcopy(train_cfg),
                             test_cfg=copy.deepcopy(test_cfg))
            self.bbox_head = MODELS.build(bbox_head)
        else:
            self.bbox_head = None
        if not mask_head:
            raise InstanceSegmentorArgumentError(
                f'`mask_head` must be implemented in {type(self).__name__}')
        mask_head = copy.deepcopy(mask_head)
        mask_head.update(train_cfg=copy.deepcopy(train_cfg), test_cfg=copy.deepcopy(test_cfg))
        self.mask_head = MODELS.build(mask_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone then neck.

        Args:
            batch_inputs (Tensor): [B, 3, H, W].

        Returns:
            tuple[Tensor]: With ResNet-50 + SOLO's FPN: 5 maps [B, 256, H/4, W/4] ...
            [B, 256, H/64, W/64].
        """
        x = self.backbone(batch_inputs)  # [B, 256, H/4, W/4] ... [B, 2048, H/32, W/32]
        if self.with_neck:
            x = self.neck(x)
        return x

    def _forward(self, batch_inputs: Tensor, batch_data_samples: OptSampleList = None,
                 **kwargs) -> tuple:
        """Raw outputs: ``(bbox_outs, mask_outs)`` with a box head, else ``(mask_outs, )``.

        With a box head, its ``loss`` runs on ``batch_data_samples`` to find the positives
        the mask head reads (as mmdetection).
        """
        x = self.extract_feat(batch_inputs)
        outs = ()
        positive_infos = None
        if self.with_bbox:
            if batch_data_samples is None:
                raise InstanceSegmentorArgumentError(
                    'tensor mode of a segmentor with a bbox_head needs batch_data_samples')
            outs = outs + (self.bbox_head.forward(x), )
            self.bbox_head.loss(x, batch_data_samples, **kwargs)
            positive_infos = self.bbox_head.get_positive_infos()
        if positive_infos is None:
            mask_outs = self.mask_head.forward(x)
        else:
            mask_outs = self.mask_head.forward(x, positive_infos)
        return outs + (mask_outs, )

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList, **kwargs) -> dict:
        """Box head losses (if any) and mask head losses.

        Args:
            batch_inputs (Tensor): Normalized, padded images [B, 3, H, W].
            batch_data_samples (list[DetDataSample]): ``gt_instances`` with ``masks``.

        Returns:
            dict[str, Tensor]: e.g. ``loss_mask`` and ``loss_cls`` for SOLO.
        """
        x = self.extract_feat(batch_inputs)
        losses = dict()
        positive_infos = None
        if self.with_bbox:
            losses.update(self.bbox_head.loss(x, batch_data_samples, **kwargs))
            positive_infos = self.bbox_head.get_positive_infos()
        mask_losses = self.mask_head.loss(x, batch_data_samples,
                                          positive_infos=positive_infos, **kwargs)
        clashes = set(mask_losses) & set(losses)
        if clashes:
            raise InstanceSegmentorArgumentError(
                f'the mask head loss names {sorted(clashes)} clash with the box head\'s')
        losses.update(mask_losses)
        return losses

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True, **kwargs) -> SampleList:
        """Instance masks as ``pred_instances`` of each sample.

        Args:
            batch_inputs (Tensor): Normalized, padded images [B, 3, H, W].
            batch_data_samples (list[DetDataSample]): Metas (``img_shape``, ``ori_shape``).
            rescale (bool): Results in original-image pixels. Defaults to True.

        Returns:
            list[DetDataSample]: With ``pred_instances``: ``scores`` [K], ``labels`` [K],
            ``masks`` [K, H, W] and ``bboxes`` [K, 4].
        """
        x = self.extract_feat(batch_inputs)
        results_list = None
        if self.with_bbox:
            # The mask head rescales boxes and masks together, so the boxes stay in input
            # pixels here when there is one.
            bbox_rescale = rescale if not self.with_mask else False
            results_list = self.bbox_head.predict(x, batch_data_samples, rescale=bbox_rescale)
        results_list = self.mask_head.predict(x, batch_data_samples, rescale=rescale,
                                              results_list=results_list)
        return self.add_pred_to_datasample(batch_data_samples, results_list)
