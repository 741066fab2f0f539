"""ConditionalDETRHead: DETR's head with boxes predicted relative to reference points.

What changes from ``DETRHead``:

- ``forward`` takes the decoder's ``references`` [B, Q, 2] (sigmoid x, y) and adds their
  logits to the predicted box centres: ``box = sigmoid(reg + [logit(x), logit(y), 0, 0])``.
- Classification is by sigmoid focal loss in the configs (``FocalLoss``, no background
  class); ``init_weights`` then sets the classifier bias to ``-log(99)`` (prior 0.01) so
  that training starts with low scores, and prediction keeps the top (query, class) pairs.
- ``loss``/``predict``/``loss_and_predict`` take ``references`` too; prediction uses the
  last decoder layer only.
"""
from typing import Dict, Tuple

import torch
from mmengine.model import bias_init_with_prob
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import SampleList
from mmdet_lite.utils import InstanceList
from ..layers.transformer import inverse_sigmoid
from ..utils import unpack_gt_instances
from .detr_head import DETRHead


@MODELS.register_module()
class ConditionalDETRHead(DETRHead):
    """Head of Conditional DETR (Meng et al., 2021).

    Arguments, branches (``fc_cls``, ``reg_ffn``, ``fc_reg``), matching and losses are
    ``DETRHead``'s; the configs use ``FocalLoss`` (``use_sigmoid=True``), so
    ``cls_out_channels == num_classes``.
    """

    def init_weights(self) -> None:
        """Default init; with a sigmoid classifier, ``fc_cls.bias`` = logit of 0.01."""
        super().init_weights()
        if self.loss_cls.use_sigmoid:
            nn.init.constant_(self.fc_cls.bias, bias_init_with_prob(0.01))

    def forward(self, hidden_states: Tensor, references: Tensor) -> Tuple[Tensor, Tensor]:
        """Class logits and boxes of every decoder layer.

        Args:
            hidden_states (Tensor): [num_layers, B, Q, embed_dims].
            references (Tensor): Reference points [B, Q, 2] as sigmoid (x, y), the same for
                every layer.

        Returns:
            tuple[Tensor, Tensor]: Class logits [num_layers, B, Q, cls_out_channels] and
            boxes [num_layers, B, Q, 4] as sigmoid (cx, cy, w, h).
        """
        reg = self.fc_reg(self.activate(self.reg_ffn(hidden_states)))  # [L, B, Q, 4]
        offsets = inverse_sigmoid(references)  # [B, Q, 2]
        reg = torch.cat([reg[..., :2] + offsets, reg[..., 2:]], dim=-1)
        return self.fc_cls(hidden_states), reg.sigmoid()

    def loss(self, hidden_states: Tensor, references: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of every decoder layer (names as ``DETRHead.loss``).

        Args:
            hidden_states (Tensor): [num_layers, B, Q, embed_dims].
            references (Tensor): [B, Q, 2].
            batch_data_samples (list[DetDataSample]): Ground truth and meta of each image.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` and ``d{i}.*``.
        """
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(batch_data_samples)
        outs = self(hidden_states, references)
        return self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas)

    def loss_and_predict(self, hidden_states: Tensor, references: Tensor,
                         batch_data_samples: SampleList) -> Tuple[dict, InstanceList]:
        """Losses and detections (input-image pixels, last layer) from one forward pass."""
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(batch_data_samples)
        outs = self(hidden_states, references)
        losses = self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas)
        predictions = self.predict_by_feat(*outs, batch_img_metas=batch_img_metas,
                                           rescale=False)
        return losses, predictions

    def predict(self, hidden_states: Tensor, references: Tensor,
                batch_data_samples: SampleList, rescale: bool = True) -> InstanceList:
        """Detections of each image from the last decoder layer.

        Args:
            hidden_states (Tensor): [num_layers, B, Q, embed_dims].
            references (Tensor): [B, Q, 2].
            batch_data_samples (list[DetDataSample]): Meta of each image.
            rescale (bool): Boxes in original-image pixels (else input-image).

        Returns:
            list[InstanceData]: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K] per image.
        """
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        outs = self(hidden_states[-1:], references)
        return self.predict_by_feat(*outs, batch_img_metas=batch_img_metas, rescale=rescale)
