"""Export of one-stage detectors: RetinaNet, FCOS, ATSS, YOLOX, RTMDet(-Ins) ...

Exported graph (``'model'``)::

    images [B, 3, H, W] raw pixels
      -> InputNormalizer -> backbone -> neck -> bbox_head.forward   ('tensor' mode)
      -> the head's raw outputs, flat: RetinaNet cls_scores_0..4 [B, A*C, H_l, W_l],
         bbox_preds_0..4 [B, A*4, H_l, W_l]; FCOS/ATSS add score_factors_l (centerness),
         YOLOX objectnesses_l, RTMDet-Ins kernel_preds_l and mask_feat [B, P, H/8, W/8]

Eager glue (:meth:`DenseHeadAdapter.predict`): ``bbox_head.predict_by_feat(*outputs,
batch_img_metas, rescale=True)``, the head's own decoding, score threshold, top-k, NMS and
(RTMDet-Ins) mask assembly, exactly what ``predict`` runs after the same forward pass.
"""
from typing import Dict, List

import torch
from torch import Tensor, nn

from mmdet_lite.models.detectors.single_stage import SingleStageDetector
from mmdet_lite.utils import InstanceList
from .adapter import ExportAdapter, ExportGraph, Runner, register_export_adapter
from .normalize import InputNormalizer
from .outputs import flatten_outputs, output_names, unflatten_outputs


class DenseCore(nn.Module):
    """Raw pixels -> the dense head's raw outputs as a flat tuple (see the module docstring).

    Args:
        normalizer (InputNormalizer): The preprocessor's normalization.
        detector (SingleStageDetector): The detector, whose ``_forward`` ('tensor' mode)
            gives the head outputs.
    """

    def __init__(self, normalizer: InputNormalizer, detector: nn.Module) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.detector = detector

    def forward(self, images: Tensor) -> tuple:
        outs = self.detector._forward(self.normalizer(images))
        return flatten_outputs(outs)[0]


@register_export_adapter(SingleStageDetector)
class DenseHeadAdapter(ExportAdapter):
    """One graph up to the head's raw outputs; ``predict_by_feat`` in Python.

    ``--with-postprocess`` (ONNX) is offered for heads whose post-processing is
    ``BaseDenseHead``'s (RetinaNet, FCOS, ATSS, RTMDet) and for YOLOX; see
    :mod:`mmdet_lite.deployment.dense_postprocess`.
    """

    def __init__(self, model: nn.Module, input_shape) -> None:
        super().__init__(model, input_shape)
        self.core = DenseCore(self.normalizer, model).eval()
        with torch.no_grad():  # the nesting of the head outputs, from one eager pass
            _, self.layout = flatten_outputs(model._forward(
                self.normalizer(self.example_images())))
        self.output_names = output_names(self.layout, model.bbox_head.predict_by_feat)

    @property
    def supports_with_postprocess(self) -> bool:
        from .dense_postprocess import supports_in_graph_postprocess
        return supports_in_graph_postprocess(self.model.bbox_head)

    def graphs(self, batch_size: int = 1, dynamic_batch: bool = False) -> List[ExportGraph]:
        return [ExportGraph('model', self.core, (self.example_images(batch_size), ),
                            ['images'], list(self.output_names),
                            self.batch_dims(dynamic_batch, 'images'))]

    def predict(self, runners: Dict[str, Runner], images: Tensor,
                batch_img_metas: List[dict]) -> InstanceList:
        outs = unflatten_outputs(runners['model'](images), self.layout)
        return self.model.bbox_head.predict_by_feat(*outs, batch_img_metas=batch_img_metas,
                                                    rescale=True)

    def postprocess_graph(self, batch_size: int = 1,
                          dynamic_batch: bool = False) -> ExportGraph:
        from .dense_postprocess import DensePostprocess
        if not self.supports_with_postprocess:
            return super().postprocess_graph(batch_size, dynamic_batch)  # raises
        module = DensePostprocess(self.core, self.model.bbox_head, self.layout,
                                  self.input_shape).eval()
        return ExportGraph('model', module, (self.example_images(batch_size), ), ['images'],
                           ['dets', 'labels'], self.batch_dims(dynamic_batch, 'images'))
