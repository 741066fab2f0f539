"""Export of the DETR family: DETR, Deformable DETR (+ refine, two-stage), DINO ...

Exported graph (``'model'``)::

    images [B, 3, H, W] raw pixels
      -> InputNormalizer -> backbone -> neck -> transformer -> bbox_head.forward
      -> the last decoder layer's cls_scores [B, Q, cls_out_channels] (logits) and
         bbox_preds [B, Q, 4] (sigmoid cx, cy, w, h relative to the input size)

Only the last layer is returned: the others feed the auxiliary losses, which inference
does not read. In eval mode DINO builds no denoising queries and Deformable DETR's
two-stage proposals stay inside the graph (a fixed top-Q), so nothing data-dependent is left.

The graph sees the whole (H, W) input as image: it is traced without data samples, so the
padding masks are all False. Eager ``predict`` equals it for an image that fills the input
(``img_shape == batch_input_shape``); a letterboxed smaller image attends to its padding here
and not in eager mode, which changes the detections slightly.

Multi-level members carry the level sizes as a ``spatial_shapes`` tensor [n, 2] that the
deformable layers turn back into Python sizes (``tolist()``) for ``split``, ``reshape`` and
``linspace``; on a traced tensor those sizes would be data-dependent. While tracing,
:func:`static_level_shapes` hands the layers the same sizes as a list of Python ints
(:class:`StaticLevelShapes`, which answers ``tolist()``), read from the feature maps'
static shapes. No model code changes, and eager runs are untouched.

Eager glue: ``bbox_head.predict_by_feat`` (top-k over queries and classes, box scaling to
``img_shape`` and back to the original image).
"""
from contextlib import contextmanager
from typing import Dict, Iterator, List

from torch import Tensor, nn

from mmdet_lite.models.detectors.base_detr import DetectionTransformer
from mmdet_lite.utils import InstanceList
from .adapter import ExportAdapter, ExportGraph, Runner, register_export_adapter
from .normalize import InputNormalizer


class StaticLevelShapes(list):
    """``[(h_0, w_0), ...]``: the ``spatial_shapes`` [n, 2] tensor's values as Python ints."""

    def tolist(self) -> List[List[int]]:
        return [list(shape) for shape in self]


@contextmanager
def static_level_shapes(detector: nn.Module) -> Iterator[None]:
    """Within the block, ``detector.pre_transformer`` returns ``spatial_shapes`` as
    :class:`StaticLevelShapes` (the sizes of the feature maps it was given)."""
    pre_transformer = detector.pre_transformer

    def with_static_shapes(mlvl_feats, *args, **kwargs):
        encoder_inputs, decoder_inputs = pre_transformer(mlvl_feats, *args, **kwargs)
        for inputs in (encoder_inputs, decoder_inputs):
            if 'spatial_shapes' in inputs:
                num_levels = inputs['spatial_shapes'].shape[0]
                inputs['spatial_shapes'] = StaticLevelShapes(
                    (int(f.shape[-2]), int(f.shape[-1])) for f in mlvl_feats[-num_levels:])
        return encoder_inputs, decoder_inputs

    detector.pre_transformer = with_static_shapes
    try:
        yield
    finally:
        del detector.pre_transformer


class DETRCore(nn.Module):
    """Raw pixels -> (cls_scores [B, Q, C], bbox_preds [B, Q, 4]) of the last layer."""

    def __init__(self, normalizer: InputNormalizer, detector: nn.Module) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.detector = detector

    def forward(self, images: Tensor) -> tuple:
        with static_level_shapes(self.detector):
            all_cls_scores, all_bbox_preds = self.detector._forward(self.normalizer(images))
        return all_cls_scores[-1], all_bbox_preds[-1]  # [B, Q, C], [B, Q, 4]


@register_export_adapter(DetectionTransformer)
class DETRAdapter(ExportAdapter):
    """One graph up to the last decoder layer's outputs; ``predict_by_feat`` in Python."""

    def __init__(self, model: nn.Module, input_shape) -> None:
        super().__init__(model, input_shape)
        self.core = DETRCore(self.normalizer, model).eval()

    def graphs(self, batch_size: int = 1, dynamic_batch: bool = False) -> List[ExportGraph]:
        return [ExportGraph('model', self.core, (self.example_images(batch_size), ),
                            ['images'], ['cls_scores', 'bbox_preds'],
                            self.batch_dims(dynamic_batch, 'images'))]

    def predict(self, runners: Dict[str, Runner], images: Tensor,
                batch_img_metas: List[dict]) -> InstanceList:
        cls_scores, bbox_preds = runners['model'](images)
        # predict_by_feat reads the last of the stacked layers: one layer here
        return self.model.bbox_head.predict_by_feat(cls_scores[None], bbox_preds[None],
                                                    batch_img_metas=batch_img_metas,
                                                    rescale=True)
