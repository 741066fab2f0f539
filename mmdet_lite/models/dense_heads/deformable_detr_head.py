"""DeformableDETRHead: per-layer branches predicting boxes relative to reference points.

What Deformable DETR changes from ``DETRHead``:

- One classifier and one box MLP per decoder layer (``cls_branches`` / ``reg_branches``),
  the same module repeated (``share_pred_layer``) unless boxes are refined layer by layer.
  Two-stage adds one more pair, used by the detector on the encoder output.
- Boxes are offsets in logit space: ``sigmoid(reg(hidden) + inverse_sigmoid(reference))``
  (only cx, cy when the reference is a point).
- Two-stage training adds the encoder proposals' losses ``enc_loss_cls``,
  ``enc_loss_bbox``, ``enc_loss_iou``: every ground truth counts as class 0 (foreground).

Matching, per-layer losses and the top-k decoding (over all query-class pairs with the
sigmoid classifier) are ``DETRHead``'s.
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.model import bias_init_with_prob, constant_init
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import SampleList
from mmdet_lite.utils import InstanceList, OptInstanceList
from ..layers.transformer import inverse_sigmoid
from ..utils import unpack_gt_instances
from .detr_head import DETRHead


@MODELS.register_module()
class DeformableDETRHead(DETRHead):
    """Head of Deformable DETR.

    The detector sets the three arguments below from its own (``with_box_refine``,
    ``as_two_stage``, the decoder's ``num_layers``); the other arguments are
    ``DETRHead``'s.

    Args:
        share_pred_layer (bool): Every layer uses the same classifier and box branch
            (no box refinement). Defaults to False.
        num_pred_layer (int): Number of (classifier, box branch) pairs: the decoder
            layers, plus one for the encoder proposals when two-stage. Defaults to 6.
        as_two_stage (bool): The detector makes its queries from encoder proposals.
            Defaults to False.
    """

    def __init__(self,
                 *args,
                 share_pred_layer: bool = False,
                 num_pred_layer: int = 6,
                 as_two_stage: bool = False,
                 **kwargs) -> None:
        self.share_pred_layer = share_pred_layer
        self.num_pred_layer = num_pred_layer
        self.as_two_stage = as_two_stage
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        """``cls_branches`` (Linear) and ``reg_branches`` (num_reg_fcs x (Linear, ReLU),
        Linear to 4), ``num_pred_layer`` of each."""
        fc_cls = nn.Linear(self.embed_dims, self.cls_out_channels)
        reg_layers = []
        for _ in range(self.num_reg_fcs):
            reg_layers += [nn.Linear(self.embed_dims, self.embed_dims), nn.ReLU()]
        reg_layers.append(nn.Linear(self.embed_dims, 4))
        reg_branch = nn.Sequential(*reg_layers)
        if self.share_pred_layer:  # one module, listed once per layer
            self.cls_branches = nn.ModuleList([fc_cls] * self.num_pred_layer)
            self.reg_branches = nn.ModuleList([reg_branch] * self.num_pred_layer)
        else:
            self.cls_branches = nn.ModuleList(
                copy.deepcopy(fc_cls) for _ in range(self.num_pred_layer))
            self.reg_branches = nn.ModuleList(
                copy.deepcopy(reg_branch) for _ in range(self.num_pred_layer))

    def init_weights(self) -> None:
        """Classifier biases at prior 0.01 (sigmoid); box outputs start at the reference.

        The last Linear of every box branch is zero, so the first boxes are the references
        themselves; the first layer's w, h logits start at -2 (boxes of ~0.12 of the
        image) unless two-stage, whose references already carry a size.
        """
        if self.loss_cls.use_sigmoid:
            bias_init = bias_init_with_prob(0.01)
            for fc_cls in self.cls_branches:
                nn.init.constant_(fc_cls.bias, bias_init)
        for reg_branch in self.reg_branches:
            constant_init(reg_branch[-1], 0, bias=0)
        nn.init.constant_(self.reg_branches[0][-1].bias.data[2:], -2.0)
        if self.as_two_stage:
            for reg_branch in self.reg_branches:
                nn.init.constant_(reg_branch[-1].bias.data[2:], 0.0)

    def forward(self, hidden_states: Tensor,
                references: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """Classes and boxes of every decoder layer.

        Args:
            hidden_states (Tensor): [L, B, Q, embed_dims].
            references (list[Tensor]): L + 1 references: the initial one, then each
                layer's output one (the last is not used). Each is [B, Q, 2] (cx, cy) or
                [B, Q, 4] (cx, cy, w, h), in [0, 1].

        Returns:
            tuple[Tensor, Tensor]: Class logits [L, B, Q, cls_out_channels] and boxes
            [L, B, Q, 4] as sigmoid (cx, cy, w, h).
        """
        all_cls_scores, all_bbox_preds = [], []
        for layer_id, hidden_state in enumerate(hidden_states):
            reference = inverse_sigmoid(references[layer_id])
            reg_preds = self.reg_branches[layer_id](hidden_state)  # [B, Q, 4]
            if reference.size(-1) == 4:
                reg_preds = reg_preds + reference
            elif reference.size(-1) == 2:  # a point: only the centre is relative to it
                reg_preds = torch.cat((reg_preds[..., :2] + reference, reg_preds[..., 2:]), -1)
            else:
                raise ValueError('DeformableDETRHead: references must end with 2 (cx, cy) '
                                 f'or 4 (cx, cy, w, h), got {reference.size(-1)}.')
            all_cls_scores.append(self.cls_branches[layer_id](hidden_state))
            all_bbox_preds.append(reg_preds.sigmoid())
        return torch.stack(all_cls_scores), torch.stack(all_bbox_preds)

    def loss(self, hidden_states: Tensor, references: List[Tensor],
             enc_outputs_class: Optional[Tensor], enc_outputs_coord: Optional[Tensor],
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of every decoder layer, and of the encoder proposals when two-stage.

        Args:
            hidden_states (Tensor): [L, B, Q, embed_dims].
            references (list[Tensor]): See ``forward``.
            enc_outputs_class (Tensor, optional): Two-stage: [B, N, cls_out_channels]
                class logits of the N encoder positions; else None.
            enc_outputs_coord (Tensor, optional): Two-stage: [B, N, 4] sigmoid
                (cx, cy, w, h) proposals; else None.
            batch_data_samples (list[DetDataSample]): Ground truth and meta of each image.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou``, ``d{i}.loss_*``
            and, two-stage, ``enc_loss_cls``, ``enc_loss_bbox``, ``enc_loss_iou``.
        """
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(batch_data_samples)
        all_cls_scores, all_bbox_preds = self(hidden_states, references)
        return self.loss_by_feat(all_cls_scores, all_bbox_preds, enc_outputs_class,
                                 enc_outputs_coord, batch_gt_instances, batch_img_metas)

    def loss_by_feat(self,
                     all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     enc_cls_scores: Optional[Tensor],
                     enc_bbox_preds: Optional[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Decoder losses (``DETRHead.loss_by_feat``) plus the encoder proposals' ones.

        The proposals are matched and weighted like a decoder layer's predictions, with
        every ground truth relabelled 0: class 0's logit is the "objectness" the detector
        ranks proposals by.

        Args:
            all_layers_cls_scores (Tensor): [L, B, Q, cls_out_channels].
            all_layers_bbox_preds (Tensor): [L, B, Q, 4] normalized (cx, cy, w, h).
            enc_cls_scores (Tensor, optional): [B, N, cls_out_channels] or None.
            enc_bbox_preds (Tensor, optional): [B, N, 4] or None.
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): ``img_shape`` of each image.
            batch_gt_instances_ignore (list, optional): Must be None (or all None).

        Returns:
            dict[str, Tensor]: See ``loss``.
        """
        losses = super().loss_by_feat(all_layers_cls_scores, all_layers_bbox_preds,
                                      batch_gt_instances, batch_img_metas,
                                      batch_gt_instances_ignore)
        if enc_cls_scores is not None:
            proposal_gt_instances = []
            for gt_instances in batch_gt_instances:
                proposal_gt = gt_instances.clone()
                proposal_gt.labels = torch.zeros_like(gt_instances.labels)
                proposal_gt_instances.append(proposal_gt)
            enc_losses = self.loss_by_feat_single(enc_cls_scores, enc_bbox_preds,
                                                  proposal_gt_instances, batch_img_metas)
            for name, loss in zip(('loss_cls', 'loss_bbox', 'loss_iou'), enc_losses):
                losses[f'enc_{name}'] = loss
        return losses

    def predict(self, hidden_states: Tensor, references: List[Tensor],
                batch_data_samples: SampleList, rescale: bool = True) -> InstanceList:
        """Detections of each image from the last decoder layer.

        Args:
            hidden_states (Tensor): [L, B, Q, embed_dims].
            references (list[Tensor]): See ``forward``.
            batch_data_samples (list[DetDataSample]): Meta of each image.
            rescale (bool): Boxes in original-image pixels (else input-image).

        Returns:
            list[InstanceData]: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K] per image.
        """
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        outs = self(hidden_states, references)
        return self.predict_by_feat(*outs, batch_img_metas=batch_img_metas, rescale=rescale)

    def predict_by_feat(self, all_layers_cls_scores: Tensor, all_layers_bbox_preds: Tensor,
                        batch_img_metas: List[dict], rescale: bool = False) -> InstanceList:
        """``DETRHead.predict_by_feat`` with mmdetection's default ``rescale=False`` here."""
        return super().predict_by_feat(all_layers_cls_scores, all_layers_bbox_preds,
                                       batch_img_metas, rescale=rescale)
