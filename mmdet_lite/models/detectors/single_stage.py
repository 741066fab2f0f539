"""Single-stage detectors: backbone -> neck -> one dense head that predicts boxes directly."""
import copy
from typing import Dict, List, Tuple

from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import OptSampleList, SampleList
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .base import BaseDetector


@MODELS.register_module()
class SingleStageDetector(BaseDetector):
    """A dense head on backbone (+ neck) features (RetinaNet and relatives).

    The whole flow::

        loss:    extract_feat -> bbox_head.loss      -> {'loss_cls': [...], 'loss_bbox': [...]}
        predict: extract_feat -> bbox_head.predict   -> DetDataSample.pred_instances
        tensor:  extract_feat -> bbox_head.forward   -> (cls_scores, bbox_preds)

    Args:
        backbone (dict): e.g. ResNet-50, giving C2..C5.
        neck (dict, optional): e.g. FPN, giving P3..P7 for RetinaNet.
        bbox_head (dict): The dense head; receives ``train_cfg`` and ``test_cfg`` whole
            (a single-stage config has no ``rpn``/``rcnn`` split).
        train_cfg (dict, optional): Assigner, sampler, ``allowed_border``, ``pos_weight``.
        test_cfg (dict, optional): ``nms_pre``, ``score_thr``, ``nms``, ``max_per_img`` ...
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if bbox_head is None:
            raise ValueError(f'{type(self).__name__} needs a bbox_head config, e.g. '
                             "dict(type='RetinaHead', num_classes=80, in_channels=256)")
        self.backbone = MODELS.build(backbone)
        if neck is not None:
            self.neck = MODELS.build(neck)
        bbox_head = copy.deepcopy(bbox_head)
        bbox_head.update(train_cfg=train_cfg, test_cfg=test_cfg)
        self.bbox_head = MODELS.build(bbox_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone then neck.

        Args:
            batch_inputs (Tensor): [B, 3, H, W].

        Returns:
            tuple[Tensor]: With ResNet-50 + RetinaNet's FPN: 5 maps [B, 256, H/8, W/8] ...
            [B, 256, H/128, W/128].
        """
        x = self.backbone(batch_inputs)  # [B, 256, H/4, W/4] ... [B, 2048, H/32, W/32]
        if self.with_neck:
            x = self.neck(x)  # [B, 256, H/8, W/8] ... [B, 256, H/128, W/128]
        return x

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, List[Tensor]]:
        """Head losses of a batch, e.g. ``loss_cls`` and ``loss_bbox`` (one value per level).

        Args:
            batch_inputs (Tensor): Normalized, padded images [B, 3, H, W].
            batch_data_samples (list[DetDataSample]): ``gt_instances`` and metas of each
                image.

        Returns:
            dict[str, list[Tensor]]: Loss components; mmengine sums each list.
        """
        x = self.extract_feat(batch_inputs)
        return self.bbox_head.loss(x, batch_data_samples)

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detections as ``pred_instances`` of each sample.

        Args:
            batch_inputs (Tensor): Normalized, padded images [B, 3, H, W].
            batch_data_samples (list[DetDataSample]): Metas (``img_shape``,
                ``scale_factor``).
            rescale (bool): Map boxes back to original-image pixels. Defaults to True.

        Returns:
            list[DetDataSample]: The inputs with ``pred_instances``: ``bboxes`` [K, 4],
            ``scores`` [K], ``labels`` [K].
        """
        x = self.extract_feat(batch_inputs)
        results = self.bbox_head.predict(x, batch_data_samples, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> tuple:
        """Raw head outputs, e.g. ``(cls_scores, bbox_preds)``, each one tensor per level."""
        return self.bbox_head.forward(self.extract_feat(batch_inputs))
