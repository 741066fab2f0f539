"""``--with-postprocess``: a dense head's decoding, score filter and NMS inside the graph.

The graph gives mmdeploy's outputs: ``dets`` [B, K, 5] (x1, y1, x2, y2, score, input-image
pixels, best first) and ``labels`` [B, K] (int64); rows past an image's detections are
padding, with zero boxes and scores and label -1. K is ``test_cfg.max_per_img`` (YOLOX,
which keeps every NMS survivor: the number of priors).

Each step follows the head's eager post-processing, batched and with fixed shapes:

- ``BaseDenseHead`` heads (RetinaNet, FCOS, ATSS, RTMDet): per level, the ``nms_pre`` best
  (prior, class) scores (sigmoid, or softmax without the background), kept when above
  ``score_thr``; boxes decoded by the head's ``bbox_coder`` from its priors and clipped to
  the input; scores times the sigmoid score factors (centerness) when the head has them;
  boxes not wider and taller than ``min_bbox_size`` dropped;
- YOLOX: best class per prior, kept when class x objectness >= ``score_thr``;
- then per-class NMS (``nms.iou_threshold``; ``class_agnostic`` honoured) with ONNX
  ``NonMaxSuppression`` (:mod:`.onnx_nms`) and the ``max_per_img`` best survivors.

Differences from eager ``predict``, by design: boxes stay in input-image pixels (divide by
``scale_factor`` yourself) and are clipped to the whole input, not to the valid ``img_shape``
of a letterboxed image; NMS runs on those boxes, not on the rescaled ones (the same result
unless a scale factor differs between x and y).
"""
from typing import List, Sequence

import torch
from torch import Tensor, nn

from mmdet_lite.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet_lite.models.dense_heads.yolox_head import YOLOXHead
from mmdet_lite.structures.bbox import get_box_tensor
from .onnx_nms import multiclass_nms
from .outputs import Layout, unflatten_outputs


def supports_in_graph_postprocess(head: nn.Module) -> bool:
    """YOLOX, or a head whose post-processing is ``BaseDenseHead``'s own."""
    if isinstance(head, YOLOXHead):
        return True
    return (isinstance(head, BaseDenseHead)
            and type(head).predict_by_feat is BaseDenseHead.predict_by_feat
            and type(head)._predict_by_feat_single is BaseDenseHead._predict_by_feat_single
            and type(head)._bbox_post_process is BaseDenseHead._bbox_post_process)


def _flat(level: Tensor, channels: int) -> Tensor:
    """[B, A * channels, H, W] -> [B, H * W * A, channels] (the priors' order)."""
    return level.permute(0, 2, 3, 1).reshape(level.size(0), -1, channels)


class DensePostprocess(nn.Module):
    """Raw pixels -> (dets [B, K, 5], labels [B, K]) (see the module docstring).

    Args:
        core (nn.Module): Raw pixels -> the head's flat raw outputs.
        head (nn.Module): The dense head (priors, coder, ``test_cfg``).
        layout (list): Nesting of the raw outputs (:mod:`.outputs`).
        input_shape (tuple[int, int]): (H, W) of the input, to clip the boxes to.
    """

    def __init__(self, core: nn.Module, head: nn.Module, layout: Layout,
                 input_shape: Sequence[int]) -> None:
        super().__init__()
        if not supports_in_graph_postprocess(head):
            raise ValueError(f'{type(head).__name__} has its own post-processing; '
                             '--with-postprocess covers BaseDenseHead heads and YOLOX')
        self.core = core
        self.head = head
        self.layout = layout
        self.input_shape = tuple(input_shape)
        self.cfg = head.test_cfg

    def forward(self, images: Tensor) -> tuple:
        outs = unflatten_outputs(self.core(images), self.layout)
        if isinstance(self.head, YOLOXHead):
            bboxes, scores, labels, valid = self._yolox_candidates(*outs)
        else:
            bboxes, scores, labels, valid = self._dense_candidates(*outs)
        return self._nms(bboxes, scores, labels, valid)

    def _dense_candidates(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                          score_factors: List[Tensor] = None) -> tuple:
        """``BaseDenseHead._predict_by_feat_single``, batched: boxes [B, M, 4], scores,
        labels and validity [B, M] of the per-level top-k candidates."""
        head, cfg = self.head, self.cfg
        nms_pre, score_thr = cfg.get('nms_pre', -1), cfg.get('score_thr', 0)
        mlvl_priors = head.prior_generator.grid_priors(
            [score.shape[-2:] for score in cls_scores], dtype=cls_scores[0].dtype,
            device=cls_scores[0].device)
        batch_size = cls_scores[0].size(0)
        priors, deltas, scores, labels, factors = [], [], [], [], []
        for lvl, (cls_score, bbox_pred, level_priors) in enumerate(
                zip(cls_scores, bbox_preds, mlvl_priors)):
            level_scores = _flat(cls_score, head.cls_out_channels)
            level_scores = level_scores.sigmoid() if head.use_sigmoid_cls else \
                level_scores.softmax(-1)[..., :-1]  # [B, N_l, C]
            num_classes = level_scores.size(-1)
            flat_scores = level_scores.reshape(batch_size, -1)  # [B, N_l * C]
            topk = flat_scores.size(1) if nms_pre <= 0 else min(nms_pre, flat_scores.size(1))
            top_scores, flat_idx = flat_scores.topk(topk, dim=1)  # [B, k]
            prior_idx = torch.div(flat_idx, num_classes, rounding_mode='floor')
            scores.append(top_scores)
            labels.append(flat_idx % num_classes)
            priors.append(level_priors[prior_idx])  # [B, k, 2 or 4]
            level_deltas = _flat(bbox_pred, head.bbox_coder.encode_size)
            deltas.append(torch.gather(
                level_deltas, 1, prior_idx[..., None].expand(-1, -1, level_deltas.size(-1))))
            if score_factors is not None:
                factor = _flat(score_factors[lvl], 1)[..., 0].sigmoid()  # [B, N_l]
                factors.append(torch.gather(factor, 1, prior_idx))
        scores = torch.cat(scores, 1)  # [B, M]
        valid = scores > score_thr
        bboxes = get_box_tensor(head.bbox_coder.decode(torch.cat(priors, 1),
                                                       torch.cat(deltas, 1),
                                                       max_shape=self.input_shape))
        if factors:
            scores = scores * torch.cat(factors, 1)
        min_bbox_size = cfg.get('min_bbox_size', -1)
        if min_bbox_size >= 0:
            widths = bboxes[..., 2] - bboxes[..., 0]
            heights = bboxes[..., 3] - bboxes[..., 1]
            valid = valid & (widths > min_bbox_size) & (heights > min_bbox_size)
        return bboxes, scores, torch.cat(labels, 1), valid

    def _yolox_candidates(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                          objectnesses: List[Tensor]) -> tuple:
        """``YOLOXHead.predict_by_feat`` before NMS: best class per prior, score threshold."""
        flat_cls, flat_bbox, flat_obj, priors = self.head._flatten_outputs(
            cls_scores, bbox_preds, objectnesses)
        obj_probs = flat_obj.sigmoid()  # [B, N]
        max_scores, labels = flat_cls.sigmoid().max(-1)  # [B, N]
        valid = obj_probs * max_scores >= self.cfg['score_thr']
        bboxes = self.head._bbox_decode(priors, flat_bbox)  # [B, N, 4]
        return bboxes, max_scores * obj_probs, labels, valid

    def _nms(self, bboxes: Tensor, scores: Tensor, labels: Tensor, valid: Tensor) -> tuple:
        """Per-class NMS of the valid candidates, then the best ``max_per_img``, padded."""
        nms_cfg = self.cfg['nms']
        batch_size, num_candidates = scores.shape
        num_classes = self.head.num_classes
        if nms_cfg.get('class_agnostic', False):
            labels_for_nms, num_groups = torch.zeros_like(labels), 1
        else:
            labels_for_nms, num_groups = labels, num_classes
        max_per_img = self.cfg.get('max_per_img', -1)
        keep_top = num_candidates if max_per_img is None or max_per_img <= 0 else \
            min(max_per_img, num_candidates)
        # [B, groups, M]: each candidate scores in its own class only; invalid ones (and the
        # other classes) get -1, under the NMS score threshold, whatever score_thr is
        groups = torch.arange(num_groups, device=labels.device).view(1, -1, 1)
        in_group = (labels_for_nms[:, None, :] == groups) & valid[:, None, :]
        nms_scores = torch.where(in_group, scores[:, None, :], torch.full_like(scores[:, None, :],
                                                                               -1.0))
        selected = multiclass_nms(bboxes, nms_scores, keep_top,
                                  float(nms_cfg['iou_threshold']), -0.5)  # [K, 3]
        kept = torch.zeros_like(valid).index_put(
            (selected[:, 0], selected[:, 2]), torch.ones_like(selected[:, 0], dtype=torch.bool))
        final_scores = torch.where(kept, scores, torch.full_like(scores, -1.0))
        top_scores, order = final_scores.topk(keep_top, dim=1)  # [B, K], best first
        found = top_scores >= 0
        top_boxes = torch.gather(bboxes, 1, order[..., None].expand(-1, -1, 4))
        dets = torch.cat([top_boxes, top_scores[..., None]], -1)  # [B, K, 5]
        dets = torch.where(found[..., None], dets, torch.zeros_like(dets))
        top_labels = torch.where(found, torch.gather(labels, 1, order),
                                 torch.full_like(order, -1))
        return dets, top_labels


def dets_to_instances(dets: Tensor, labels: Tensor, batch_img_metas: List[dict]) -> list:
    """The padded graph outputs as ``predict``-style results in original-image pixels.

    Args:
        dets (Tensor): [B, K, 5] (x1, y1, x2, y2, score), input-image pixels.
        labels (Tensor): [B, K], -1 on padding.
        batch_img_metas (list[dict]): ``scale_factor`` (w, h) of each image.

    Returns:
        list[InstanceData]: ``bboxes`` [k, 4], ``scores`` [k], ``labels`` [k] per image.
    """
    from mmengine.structures import InstanceData
    results = []
    for img_dets, img_labels, meta in zip(dets, labels, batch_img_metas):
        found = img_labels >= 0
        w_scale, h_scale = meta.get('scale_factor', (1.0, 1.0))[:2]
        scale = img_dets.new_tensor([w_scale, h_scale, w_scale, h_scale])
        results.append(InstanceData(bboxes=img_dets[found, :4] / scale,
                                    scores=img_dets[found, 4], labels=img_labels[found]))
    return results
