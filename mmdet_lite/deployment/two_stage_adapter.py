"""Export of two-stage detectors with a ``StandardRoIHead``: Faster R-CNN, Mask R-CNN.

Proposals need NMS (a data-dependent number of boxes) between the two stages, so the
detector becomes two or three graphs with the NMS steps in Python between them::

    'model'     images [B, 3, H, W] raw pixels -> InputNormalizer -> backbone -> neck
                -> feat_0 .. feat_{n-1} (the levels the RoI extractors read, [B, C, H/s, W/s])
                   rpn_cls_scores_l [B, A, H_l, W_l], rpn_bbox_preds_l [B, A*4, H_l, W_l]
       glue 1:  rpn_head.predict_by_feat (top-k, decode, NMS) -> proposals -> rois [K, 5]
    'roi_bbox'  feat_0 .. feat_{n-1}, rois [K, 5] -> RoIAlign (every level, each RoI keeps
                its own level's) -> bbox head -> cls_score [K, C + 1], bbox_pred [K, 4C]
       glue 2:  bbox_head.predict_by_feat (decode, score threshold, per-class NMS)
    'roi_mask'  (Mask R-CNN) feat_0 .., rois [M, 5] of the kept boxes -> mask head
                -> mask_preds [M, C, 28, 28]
       glue 3:  mask_head.predict_by_feat (paste into the original image, threshold)

K and M are dynamic axes of the RoI graphs. Glue 2 and 3 are ``roi_head.predict`` itself,
with its two forward parts (``_bbox_forward``, ``_mask_forward``) served by the exported
graphs (:func:`served_by`), so the detections are eager ``predict``'s by construction.

The RoI graphs pool every RoI from every level and keep its own level's features
(``torch.where``): the eager extractor's per-level index selection has data-dependent
shapes. The kept values are the same; the cost is n RoIAligns instead of one.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence

import torch
from torch import Tensor, nn

from mmdet_lite.models.detectors.two_stage import TwoStageDetector
from mmdet_lite.models.roi_heads.standard_roi_head import StandardRoIHead
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.bbox import bbox2roi
from mmdet_lite.utils import InstanceList
from .adapter import (ExportAdapter, ExportGraph, ExportNotSupportedError, Runner,
                      register_export_adapter)
from .normalize import InputNormalizer
from .outputs import flatten_outputs, output_names, unflatten_outputs


def pool_rois_every_level(extractor: nn.Module, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
    """``SingleRoIExtractor.forward`` without data-dependent shapes.

    Args:
        extractor (SingleRoIExtractor): Its ``roi_layers`` and ``map_roi_levels``.
        feats (Sequence[Tensor]): The levels it reads, each [B, C, H/s, W/s].
        rois (Tensor): [K, 5] (batch_idx, x1, y1, x2, y2).

    Returns:
        Tensor: [K, C, out_h, out_w], each RoI pooled from its own level.
    """
    if len(feats) == 1:
        return extractor.roi_layers[0](feats[0], rois)
    levels = extractor.map_roi_levels(rois, len(feats)).view(-1, 1, 1, 1)  # [K, 1, 1, 1]
    roi_feats = None
    for level, feat in enumerate(feats):
        pooled = extractor.roi_layers[level](feat, rois)  # [K, C, out_h, out_w]
        roi_feats = pooled if roi_feats is None else torch.where(levels == level, pooled,
                                                                 roi_feats)
    return roi_feats


class TwoStageCore(nn.Module):
    """Raw pixels -> (feature levels..., RPN raw outputs...) (graph ``'model'``)."""

    def __init__(self, normalizer: InputNormalizer, detector: nn.Module,
                 num_feats: int) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.detector = detector
        self.num_feats = num_feats

    def forward(self, images: Tensor) -> tuple:
        feats = self.detector.extract_feat(self.normalizer(images))
        rpn_outs = self.detector.rpn_head(feats)  # (cls_scores, bbox_preds) per level
        return tuple(feats[:self.num_feats]) + flatten_outputs(rpn_outs)[0]


class RoIGraph(nn.Module):
    """(feature levels..., rois [K, 5]) -> the box head's or the mask head's raw outputs.

    Args:
        roi_head (StandardRoIHead): The RoI head.
        branch (str): 'bbox' (cls_score [K, C + 1], bbox_pred [K, 4C]) or 'mask'
            (mask_preds [K, C, 28, 28]).
    """

    def __init__(self, roi_head: nn.Module, branch: str) -> None:
        super().__init__()
        self.roi_head = roi_head
        self.branch = branch

    def forward(self, *feats_and_rois: Tensor) -> tuple:
        *feats, rois = feats_and_rois
        extractor = getattr(self.roi_head, f'{self.branch}_roi_extractor')
        roi_feats = pool_rois_every_level(extractor, feats[:extractor.num_inputs], rois)
        if self.roi_head.with_shared_head:
            roi_feats = self.roi_head.shared_head(roi_feats)
        if self.branch == 'bbox':
            return tuple(self.roi_head.bbox_head(roi_feats))  # cls_score, bbox_pred
        return (self.roi_head.mask_head(roi_feats), )


@contextmanager
def served_by(roi_head: nn.Module, runners: Dict[str, Runner]) -> Iterator[None]:
    """Within the block, ``roi_head._bbox_forward`` / ``_mask_forward`` run the graphs.

    ``x`` is what ``roi_head.predict`` got: the graph's feature levels.
    """

    def bbox_forward(x, rois):
        cls_score, bbox_pred = runners['roi_bbox'](*x, rois)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=None)

    def mask_forward(x, rois):
        return dict(mask_preds=runners['roi_mask'](*x, rois)[0], mask_feats=None)

    roi_head._bbox_forward = bbox_forward
    roi_head._mask_forward = mask_forward
    try:
        yield
    finally:
        del roi_head._bbox_forward, roi_head._mask_forward


@register_export_adapter(TwoStageDetector)
class TwoStageAdapter(ExportAdapter):
    """Image graph + RoI graph(s); the proposal and final NMS in Python."""

    def __init__(self, model: nn.Module, input_shape) -> None:
        super().__init__(model, input_shape)
        roi_head = getattr(model, 'roi_head', None)
        if not model.with_rpn or type(roi_head) is not StandardRoIHead:
            raise ExportNotSupportedError(
                f'{type(model).__name__}: export covers an RPN with a StandardRoIHead '
                f'(Faster/Mask R-CNN), got roi_head {type(roi_head).__name__}')
        extractors = [roi_head.bbox_roi_extractor]
        if roi_head.with_mask:
            extractors.append(roi_head.mask_roi_extractor)
        self.num_feats = max(e.num_inputs for e in extractors)
        self.core = TwoStageCore(self.normalizer, model, self.num_feats).eval()
        self.feat_names = [f'feat_{i}' for i in range(self.num_feats)]
        with torch.no_grad():
            rpn_outs = model.rpn_head(model.extract_feat(self.normalizer(self.example_images())))
        _, self.rpn_layout = flatten_outputs(rpn_outs)
        self.rpn_names = [f'rpn_{n}' for n in output_names(self.rpn_layout,
                                                           model.rpn_head.predict_by_feat)]

    def _proposals(self, rpn_flat: Sequence[Tensor], batch_img_metas: List[dict]) -> InstanceList:
        rpn_outs = unflatten_outputs(rpn_flat, self.rpn_layout)
        return self.model.rpn_head.predict_by_feat(*rpn_outs, batch_img_metas=batch_img_metas,
                                                   rescale=False)

    def graphs(self, batch_size: int = 1, dynamic_batch: bool = False) -> List[ExportGraph]:
        images = self.example_images(batch_size)
        graphs = [ExportGraph('model', self.core, (images, ), ['images'],
                              self.feat_names + self.rpn_names,
                              self.batch_dims(dynamic_batch, 'images'))]
        # RoI graphs traced on the proposals of the example images
        with torch.no_grad():
            outs = self.core(images)
        feats = outs[:self.num_feats]
        metas = [dict(img_shape=self.input_shape)] * batch_size
        rois = bbox2roi([p.bboxes for p in self._proposals(outs[self.num_feats:], metas)])
        if rois.size(0) < 2:  # torch.export specializes sizes 0 and 1
            raise ExportNotSupportedError('the example image gave fewer than 2 proposals; '
                                          'cannot trace the RoI graphs')
        dims = dict(self.batch_dims(dynamic_batch, *self.feat_names), rois={0: 'num_rois'})
        roi_head = self.model.roi_head
        graphs.append(ExportGraph('roi_bbox', RoIGraph(roi_head, 'bbox').eval(),
                                  (*feats, rois), self.feat_names + ['rois'],
                                  ['cls_score', 'bbox_pred'], dims))
        if roi_head.with_mask:
            graphs.append(ExportGraph('roi_mask', RoIGraph(roi_head, 'mask').eval(),
                                      (*feats, rois), self.feat_names + ['rois'],
                                      ['mask_preds'], dims))
        return graphs

    def predict(self, runners: Dict[str, Runner], images: Tensor,
                batch_img_metas: List[dict]) -> InstanceList:
        outs = runners['model'](images)
        feats = outs[:self.num_feats]
        proposals = self._proposals(outs[self.num_feats:], batch_img_metas)
        samples = [DetDataSample(metainfo=meta) for meta in batch_img_metas]
        with served_by(self.model.roi_head, runners), torch.no_grad():
            return self.model.roi_head.predict(feats, proposals, samples, rescale=True)
