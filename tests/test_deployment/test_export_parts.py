"""The pieces of mmdet_lite.deployment, against hand-computed values and the eager modules
they stand in for: normalization, output flattening and names, letterbox metas, the adapter
lookup, the in-graph NMS op and the export-friendly RoI pooling."""
import numpy as np
import pytest
import torch
from tiny_detectors import tiny_config, tiny_detector

from mmdet_lite.apis import get_test_pipeline_cfg
from mmdet_lite.deployment import (ExportNotSupportedError, InputNormalizer, fixed_size_meta,
                                   get_export_adapter, letterbox)
from mmdet_lite.deployment.dense_adapter import DenseHeadAdapter
from mmdet_lite.deployment.image_input import pipeline_pad_value
from mmdet_lite.deployment.detr_adapter import DETRAdapter, StaticLevelShapes
from mmdet_lite.deployment.onnx_nms import multiclass_nms
from mmdet_lite.deployment.outputs import flatten_outputs, output_names, unflatten_outputs
from mmdet_lite.deployment.two_stage_adapter import TwoStageAdapter, pool_rois_every_level
from mmdet_lite.models.data_preprocessors import DetDataPreprocessor
from mmdet_lite.models.roi_heads.standard_roi_head import StandardRoIHead
from mmdet_lite.structures import DetDataSample

IMAGENET_RGB = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])


@pytest.fixture(scope='module')
def retinanet():
    return tiny_detector('retinanet')


# ------------------------------------------------------------------ normalization


def test_normalizer_equals_the_data_preprocessor():
    preprocessor = DetDataPreprocessor(bgr_to_rgb=True, **IMAGENET_RGB)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(32, 32)))
    expected = preprocessor(dict(inputs=[image], data_samples=[sample]))['inputs']
    normalizer = InputNormalizer.from_data_preprocessor(preprocessor)
    assert torch.equal(normalizer(image[None].float()), expected)
    # by hand: swap to RGB, then (x - mean) / std
    mean = torch.tensor(IMAGENET_RGB['mean']).view(3, 1, 1)
    std = torch.tensor(IMAGENET_RGB['std']).view(3, 1, 1)
    assert torch.allclose(expected[0], (image.flip(0).float() - mean) / std)


def test_raw_pad_value_is_the_mean_in_input_channel_order():
    normalizer = InputNormalizer(swap_channels=True, **IMAGENET_RGB)
    assert normalizer.raw_pad_value() == pytest.approx([103.53, 116.28, 123.675])
    pad = torch.tensor(normalizer.raw_pad_value()).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert torch.equal(normalizer(pad), torch.zeros(1, 3, 4, 4))  # exactly pad_value 0
    assert InputNormalizer(pad_value=7).raw_pad_value() == [7.0, 7.0, 7.0]  # no normalization


# ------------------------------------------------------------------ outputs and metas


def test_flatten_and_unflatten_nested_head_outputs():
    a0, a1, b0, b1, c = (torch.full((1, ), float(i)) for i in range(5))
    flat, layout = flatten_outputs(((a0, a1), [b0, b1], c))
    assert layout == [2, 2, None]
    assert [float(t) for t in flat] == [0, 1, 2, 3, 4]
    groups = unflatten_outputs(flat, layout)
    assert [[float(t) for t in g] for g in groups[:2]] == [[0, 1], [2, 3]]
    assert groups[2] is c
    with pytest.raises(ValueError):
        unflatten_outputs(flat[:4], layout)


def test_output_names_come_from_predict_by_feat(retinanet):
    names = output_names([5, 5], retinanet.bbox_head.predict_by_feat)
    assert names == [f'cls_scores_{i}' for i in range(5)] + [f'bbox_preds_{i}'
                                                             for i in range(5)]

    def predict_by_feat(self, cls_scores, bbox_preds, kernel_preds, mask_feat, cfg=None):
        pass

    assert output_names([1, 1, 1, None], predict_by_feat) == [
        'cls_scores_0', 'bbox_preds_0', 'kernel_preds_0', 'mask_feat']


def test_letterbox_resizes_keeping_the_ratio_and_pads_with_the_raw_pad_value():
    normalizer = InputNormalizer(swap_channels=True, **IMAGENET_RGB)
    img = np.full((100, 50, 3), 200, dtype=np.uint8)  # h=100, w=50
    batch, meta = letterbox(img, (64, 64), normalizer)
    # scale min(64/100, 64/50) = 0.64: 50 * 0.64 = 32 wide, 64 high
    assert batch.shape == (1, 3, 64, 64)
    assert meta == dict(ori_shape=(100, 50), img_shape=(64, 32), pad_shape=(64, 64),
                        batch_input_shape=(64, 64), scale_factor=(32 / 50, 64 / 100))
    assert torch.all(batch[0, :, :, :32] == 200)
    assert torch.allclose(batch[0, :, :, 32:], torch.tensor(
        [103.53, 116.28, 123.675]).view(3, 1, 1).expand(3, 64, 32))


def test_a_test_pipeline_pad_is_the_padding_and_the_img_shape():
    """RTMDet's test pipeline pads with 114 itself; mmcv's Pad makes that the img_shape."""
    rtmdet_pad = pipeline_pad_value(get_test_pipeline_cfg(tiny_config('rtmdet')))
    assert rtmdet_pad == [114.0, 114.0, 114.0]
    assert pipeline_pad_value(get_test_pipeline_cfg(tiny_config('retinanet'))) is None
    assert pipeline_pad_value([dict(type='Pad', pad_val=7)]) == [7.0, 7.0, 7.0]
    img = np.full((32, 64, 3), 9, dtype=np.uint8)
    batch, meta = letterbox(img, (64, 64), InputNormalizer(), pipeline_pad=rtmdet_pad)
    assert meta['img_shape'] == (64, 64) and meta['scale_factor'] == (1.0, 1.0)
    assert torch.all(batch[0, :, 32:] == 114) and torch.all(batch[0, :, :32] == 9)


def test_fixed_size_meta():
    assert fixed_size_meta((480, 640), (60, 80), (64, 96)) == dict(
        ori_shape=(480, 640), img_shape=(60, 80), pad_shape=(64, 96),
        batch_input_shape=(64, 96), scale_factor=(0.125, 0.125))


# ------------------------------------------------------------------ adapters


def test_adapters_are_found_by_detector_class(retinanet):
    assert type(get_export_adapter(retinanet, (64, 64))) is DenseHeadAdapter
    atss = tiny_detector('atss')  # ATSS(SingleStageDetector): the nearest registered base
    assert type(get_export_adapter(atss, (64, 64))) is DenseHeadAdapter
    assert type(get_export_adapter(tiny_detector('dino'), (64, 64))) is DETRAdapter
    assert type(get_export_adapter(tiny_detector('faster-rcnn'), (64, 64))) is TwoStageAdapter


def test_unsupported_detectors_are_refused():
    with pytest.raises(ExportNotSupportedError, match='no export adapter for Linear'):
        get_export_adapter(torch.nn.Linear(1, 1), (64, 64))
    model = tiny_detector('faster-rcnn')

    class CustomRoIHead(StandardRoIHead):
        pass

    model.roi_head.__class__ = CustomRoIHead  # e.g. a cascade: not covered
    with pytest.raises(ExportNotSupportedError, match='StandardRoIHead'):
        get_export_adapter(model, (64, 64))


def test_input_size_must_fit_the_pad_size_divisor(retinanet):
    with pytest.raises(ValueError, match='pad_size_divisor \\(32\\), e.g. 64 64'):
        get_export_adapter(retinanet, (50, 64))


def test_static_level_shapes_answer_tolist():
    shapes = StaticLevelShapes([(8, 8), (4, 4)])
    assert shapes.tolist() == [[8, 8], [4, 4]] and list(shapes) == [(8, 8), (4, 4)]


# ------------------------------------------------------------------ in-graph NMS


def test_multiclass_nms_has_onnx_nonmaxsuppression_semantics():
    boxes = torch.tensor([[[0., 0., 10., 10.],  # 0
                           [0., 0., 10., 5.],  # 1: IoU 0.5 with box 0 (kept: not > 0.5)
                           [1., 0., 10., 10.],  # 2: IoU 0.9 with box 0
                           [20., 20., 30., 30.]]])  # 3
    scores = torch.tensor([[[0.9, 0.8, 0.7, 0.3],  # class 0: box 3 at the threshold: out
                            [0.1, 0.2, 0.6, 0.5]]])  # class 1: 2 then 3 (0, 1 <= 0.3)
    selected = multiclass_nms(boxes, scores, 10, 0.5, 0.3)
    assert selected.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [0, 1, 3]]
    capped = multiclass_nms(boxes, scores, 1, 0.5, 0.3)  # at most one box per class
    assert capped.tolist() == [[0, 0, 0], [0, 1, 2]]


# ------------------------------------------------------------------ RoI pooling


def test_pooling_every_level_equals_the_extractor():
    model = tiny_detector('faster-rcnn')
    extractor = model.roi_head.bbox_roi_extractor
    feats = [torch.randn(2, 16, 64 // s, 64 // s) for s in (4, 8, 16, 32)]
    xy = torch.rand(40, 2) * 40
    wh = torch.rand(40, 2) * torch.tensor([[600.], [2.]]).repeat(20, 1)  # all four levels
    rois = torch.cat([torch.randint(0, 2, (40, 1)).float(), xy, xy + wh + 1], 1)
    levels = extractor.map_roi_levels(rois, 4)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    assert torch.equal(pool_rois_every_level(extractor, feats, rois), extractor(feats, rois))


def test_with_postprocess_is_refused_where_not_covered(tmp_path):
    from mmdet_lite.deployment import export_adapter
    adapter = get_export_adapter(tiny_detector('rtmdet-ins'), (64, 64))
    assert not adapter.supports_with_postprocess
    with pytest.raises(ExportNotSupportedError, match='--with-postprocess'):
        adapter.postprocess_graph()
    with pytest.raises(ValueError, match='needs --format onnx'):
        export_adapter(adapter, str(tmp_path / 'm.pt2'), 'torch_export', with_postprocess=True)
