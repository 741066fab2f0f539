"""Two-stage detectors: backbone -> neck -> RPN proposals -> RoI head."""
import copy
import warnings
from typing import Dict, Tuple

from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample, OptSampleList, SampleList
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .base import BaseDetector


@MODELS.register_module()
class TwoStageDetector(BaseDetector):
    """A proposal network followed by a RoI head (Faster/Mask R-CNN and relatives).

    Args:
        backbone (dict): e.g. ResNet-50, giving C2..C5.
        neck (dict, optional): e.g. FPN, giving P2..P6.
        rpn_head (dict, optional): Region proposal head; gets ``train_cfg.rpn`` and
            ``test_cfg.rpn``.
        roi_head (dict, optional): Second stage; gets ``train_cfg.rcnn`` and
            ``test_cfg.rcnn``.
        train_cfg (dict, optional): ``rpn``, ``rpn_proposal`` and ``rcnn`` parts.
        test_cfg (dict, optional): ``rpn`` and ``rcnn`` parts.
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 rpn_head: OptConfigType = None,
                 roi_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        if neck is not None:
            self.neck = MODELS.build(neck)
        train_cfg = train_cfg or {}
        test_cfg = test_cfg or {}
        if rpn_head is not None:
            rpn_head = copy.deepcopy(rpn_head)
            rpn_head.update(train_cfg=train_cfg.get('rpn'), test_cfg=test_cfg.get('rpn'))
            # The RPN is class-agnostic whatever the config says, as in mmdetection.
            num_classes = rpn_head.get('num_classes', None)
            if num_classes is not None and num_classes != 1:
                warnings.warn(f'The RPN is class-agnostic: rpn_head.num_classes should be 1, '
                              f'got {num_classes}; using 1. Set rpn_head.num_classes = 1 in '
                              'the config.')
            rpn_head.update(num_classes=1)
            self.rpn_head = MODELS.build(rpn_head)
        if roi_head is not None:
            roi_head = copy.deepcopy(roi_head)
            roi_head.update(train_cfg=train_cfg.get('rcnn'), test_cfg=test_cfg.get('rcnn'))
            self.roi_head = MODELS.build(roi_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    @property
    def with_rpn(self) -> bool:
        return getattr(self, 'rpn_head', None) is not None

    @property
    def with_roi_head(self) -> bool:
        return getattr(self, 'roi_head', None) is not None

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone then neck.

        Args:
            batch_inputs (Tensor): [B, 3, H, W].

        Returns:
            tuple[Tensor]: With ResNet-50 + FPN: 5 maps [B, 256, H/4, W/4] ...
            [B, 256, H/64, W/64]; with the C4 backbone one map [B, 1024, H/16, W/16].
        """
        x = self.backbone(batch_inputs)  # [B, 256, H/4, W/4] ... [B, 2048, H/32, W/32]
        if self.with_neck:
            x = self.neck(x)  # [B, 256, H/4, W/4] ... [B, 256, H/64, W/64]
        return x

    def _proposals(self, x: Tuple[Tensor, ...], batch_data_samples: SampleList):
        """RPN proposals, or those carried by the samples when there is no RPN."""
        if self.with_rpn:
            return self.rpn_head.predict(x, batch_data_samples, rescale=False)
        return _sample_proposals(batch_data_samples)

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """RPN losses (``loss_rpn_cls``, ``loss_rpn_bbox``) plus RoI head losses.

        Args:
            batch_inputs (Tensor): Normalized, padded images [B, 3, H, W].
            batch_data_samples (list[DetDataSample]): ``gt_instances`` and metas.

        Returns:
            dict[str, Tensor | list[Tensor]]: Loss components (and ``acc``).
        """
        x = self.extract_feat(batch_inputs)
        losses = dict()
        if self.with_rpn:
            proposal_cfg = self.train_cfg.get('rpn_proposal', self.test_cfg.get('rpn'))
            # The RPN is class-agnostic: RPNHead treats every GT box as label 0 itself.
            rpn_losses, proposals = self.rpn_head.loss_and_predict(
                x, batch_data_samples, proposal_cfg=proposal_cfg)
            for key in list(rpn_losses):
                if 'loss' in key and 'rpn' not in key:
                    rpn_losses[f'rpn_{key}'] = rpn_losses.pop(key)
            losses.update(rpn_losses)
        else:
            proposals = _sample_proposals(batch_data_samples)
        losses.update(self.roi_head.loss(x, proposals, batch_data_samples))
        return losses

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detections in original-image pixels (``rescale=True``) as ``pred_instances``.

        Proposals carried by the samples (``proposals``, e.g. from ``LoadProposals``) are
        used as they are, as mmdetection does; otherwise the RPN makes them.

        Args:
            batch_inputs (Tensor): Normalized, padded images [B, 3, H, W].
            batch_data_samples (list[DetDataSample]): Metas of each image.
            rescale (bool): Map the boxes back to the original image. Defaults to True.

        Returns:
            list[DetDataSample]: The samples with ``pred_instances`` (``bboxes`` [K, 4],
            ``scores`` [K], ``labels`` [K], and ``masks`` with a mask head).
        """
        x = self.extract_feat(batch_inputs)
        if batch_data_samples[0].get('proposals', None) is not None:
            proposals = _sample_proposals(batch_data_samples)
        else:
            proposals = self._proposals(x, batch_data_samples)
        results = self.roi_head.predict(x, proposals, batch_data_samples, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> tuple:
        """Raw outputs, as mmdetection 3.3: ``(roi_outs, )``.

        ``roi_outs`` is the RoI head's raw outputs (class scores, box deltas[, mask logits])
        for the RPN's proposals (or the samples' ``proposals`` without an RPN). The RPN's
        own maps are not returned, as in mmdetection.
        """
        x = self.extract_feat(batch_inputs)
        if batch_data_samples is None:
            batch_data_samples = [
                DetDataSample(metainfo=dict(img_shape=tuple(batch_inputs.shape[-2:])))
                for _ in range(batch_inputs.size(0))
            ]
        if self.with_rpn:
            proposals = self.rpn_head.predict(x, batch_data_samples, rescale=False)
        else:
            proposals = _sample_proposals(batch_data_samples)
        return (self.roi_head.forward(x, proposals, batch_data_samples), )


class MissingProposalsError(ValueError, AssertionError):
    """A detector without an RPN got samples without ``proposals``."""


def _sample_proposals(batch_data_samples: SampleList) -> list:
    """The ``proposals`` InstanceData of each sample (for detectors without an RPN)."""
    if not batch_data_samples or batch_data_samples[0].get('proposals', None) is None:
        raise MissingProposalsError(
            'batch_data_samples carry no proposals: a two-stage detector without rpn_head '
            "needs each sample's 'proposals' (e.g. from the LoadProposals transform)")
    return [sample.proposals for sample in batch_data_samples]
