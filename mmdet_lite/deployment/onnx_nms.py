"""Batched multi-class NMS as one op that exports to ONNX ``NonMaxSuppression``.

``torch.ops.mmdet_lite.multiclass_nms(boxes, scores, max_output_boxes_per_class,
iou_threshold, score_threshold)`` has the ONNX operator's semantics:

- boxes [B, N, 4] (x1, y1, x2, y2), scores [B, C, N];
- per image and class, boxes scoring above ``score_threshold`` go through greedy NMS
  (a box is dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold``),
  at most ``max_output_boxes_per_class`` kept;
- returns the kept (batch, class, box) index triples [K, 3] (int64), K data-dependent.

Eagerly it runs ``torchvision.ops.nms`` per (image, class); the dynamo ONNX exporter
translates it with :func:`onnx_translation_table`, the TorchScript exporter with the
symbolic registered by :func:`register_torchscript_symbolic`.
"""
import torch
import torchvision
from torch import Tensor

_OP = 'mmdet_lite::multiclass_nms'


@torch.library.custom_op(_OP, mutates_args=())
def multiclass_nms(boxes: Tensor, scores: Tensor, max_output_boxes_per_class: int,
                   iou_threshold: float, score_threshold: float) -> Tensor:
    """See the module docstring."""
    kept = []
    for img in range(boxes.size(0)):
        for cls in range(scores.size(1)):
            candidates = (scores[img, cls] > score_threshold).nonzero().squeeze(1)
            keep = torchvision.ops.nms(boxes[img, candidates], scores[img, cls, candidates],
                                       iou_threshold)[:max_output_boxes_per_class]
            idx = candidates[keep]
            kept.append(torch.stack([torch.full_like(idx, img), torch.full_like(idx, cls), idx],
                                    1))
    return torch.cat(kept) if kept else boxes.new_zeros((0, 3), dtype=torch.long)


@multiclass_nms.register_fake
def _(boxes: Tensor, scores: Tensor, max_output_boxes_per_class: int, iou_threshold: float,
      score_threshold: float) -> Tensor:
    num_kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num_kept, 3), dtype=torch.long)


def onnx_translation_table() -> dict:
    """``custom_translation_table`` of ``torch.onnx.export(..., dynamo=True)``."""
    from onnxscript import opset18 as op

    def nms_to_onnx(boxes, scores, max_output_boxes_per_class: int, iou_threshold: float,
                    score_threshold: float):
        return op.NonMaxSuppression(
            boxes, scores, op.Constant(value_ints=[max_output_boxes_per_class]),
            op.Constant(value_floats=[iou_threshold]),
            op.Constant(value_floats=[score_threshold]), center_point_box=0)

    return {torch.ops.mmdet_lite.multiclass_nms.default: nms_to_onnx}


def register_torchscript_symbolic(opset: int) -> None:
    """Let the TorchScript ONNX exporter emit ``NonMaxSuppression`` for the op."""
    from torch.onnx import register_custom_op_symbolic

    def symbolic(g, boxes, scores, max_output_boxes_per_class, iou_threshold,
                 score_threshold):
        def const(value, dtype):
            return g.op('Constant', value_t=torch.tensor([value], dtype=dtype))

        max_out = torch.onnx.symbolic_helper._maybe_get_const(max_output_boxes_per_class, 'i')
        iou = torch.onnx.symbolic_helper._maybe_get_const(iou_threshold, 'f')
        score = torch.onnx.symbolic_helper._maybe_get_const(score_threshold, 'f')
        return g.op('NonMaxSuppression', boxes, scores, const(max_out, torch.long),
                    const(iou, torch.float), const(score, torch.float), center_point_box_i=0)

    register_custom_op_symbolic(_OP, symbolic, opset)
