"""DABDETRHead: boxes predicted as refinements of each layer's anchor boxes.

What changes from ``ConditionalDETRHead``:

- The box branch is a 3-layer ``MLP`` (``fc_reg.layers.{0,1,2}``; no ``reg_ffn``). The
  decoder uses this same module to refine its anchors between layers.
- ``references`` are the anchors each decoder layer received, [num_layers, B, Q, 4] (or 2
  for point queries): ``box = sigmoid(fc_reg(h) + [inverse_sigmoid(anchor, eps=1e-3), 0..])``.
- ``init_weights`` zeroes the last box layer, so every layer starts by predicting its
  anchor unchanged; the sigmoid classifier's bias is the logit of 0.01.
"""
from typing import Tuple

import torch
from mmengine.model import bias_init_with_prob, constant_init
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import SampleList
from mmdet_lite.utils import InstanceList
from ..layers.transformer import MLP, inverse_sigmoid
from .conditional_detr_head import ConditionalDETRHead


@MODELS.register_module()
class DABDETRHead(ConditionalDETRHead):
    """Head of DAB-DETR (Liu et al., 2022).

    Arguments, matching and losses are ``DETRHead``'s.
    """

    def _init_layers(self) -> None:
        """Classifier ``fc_cls`` and the box MLP ``fc_reg`` (C -> C -> C -> 4)."""
        self.fc_cls = nn.Linear(self.embed_dims, self.cls_out_channels)
        self.fc_reg = MLP(self.embed_dims, self.embed_dims, 4, 3)

    def init_weights(self) -> None:
        """Classifier bias (sigmoid: logit of 0.01) and a zero last box layer.

        As mmdetection, only these two are set (no ``init_cfg`` of the head is applied).
        """
        if self.loss_cls.use_sigmoid:
            nn.init.constant_(self.fc_cls.bias, bias_init_with_prob(0.01))
        constant_init(self.fc_reg.layers[-1], 0., bias=0.)

    def forward(self, hidden_states: Tensor, references: Tensor) -> Tuple[Tensor, Tensor]:
        """Class logits and refined anchors of every decoder layer.

        Args:
            hidden_states (Tensor): [num_layers, B, Q, embed_dims].
            references (Tensor): Each layer's input anchors, [num_layers, B, Q, 4 or 2],
                sigmoid (cx, cy, w, h) or (x, y).

        Returns:
            tuple[Tensor, Tensor]: Class logits [num_layers, B, Q, cls_out_channels] and
            boxes [num_layers, B, Q, 4] as sigmoid (cx, cy, w, h).
        """
        reg = self.fc_reg(hidden_states)  # [L, B, Q, 4] logits
        offsets = inverse_sigmoid(references, eps=1e-3)
        dims = offsets.size(-1)
        reg = torch.cat([reg[..., :dims] + offsets, reg[..., dims:]], dim=-1)
        return self.fc_cls(hidden_states), reg.sigmoid()

    def predict(self, hidden_states: Tensor, references: Tensor,
                batch_data_samples: SampleList, rescale: bool = True) -> InstanceList:
        """Detections of each image from the last decoder layer and its anchors.

        Args:
            hidden_states (Tensor): [num_layers, B, Q, embed_dims].
            references (Tensor): [num_layers, B, Q, 4 or 2].
            batch_data_samples (list[DetDataSample]): Meta of each image.
            rescale (bool): Boxes in original-image pixels (else input-image).

        Returns:
            list[InstanceData]: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K] per image.
        """
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        outs = self(hidden_states[-1:], references[-1:])
        return self.predict_by_feat(*outs, batch_img_metas=batch_img_metas, rescale=rescale)
