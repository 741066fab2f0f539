"""Detectors and heads take mmdetection's keyword names (and the old mmdet_lite ones).

mmdetection 3.3 writes ``loss(batch_inputs, batch_data_samples)``,
``predict(batch_inputs, batch_data_samples, rescale=True)``, ``_forward(batch_inputs,
batch_data_samples)`` and ``extract_feat(batch_inputs)`` for detectors; dense heads
``loss(x, batch_data_samples)`` / ``predict(x, batch_data_samples, rescale=False)``; RoI
heads ``loss(x, rpn_results_list, batch_data_samples)`` / ``predict(..., rescale=False)``.
A call by keyword must give exactly what the positional call gives.
"""
import copy
import inspect

import pytest
import torch
from helpers import build_detector, make_batch, make_det_sample, tiny_two_stage_cfg
from mmengine.structures import InstanceData

from mmdet_lite.models.detectors import (DETR, BaseDetector, FasterRCNN, MaskRCNN, RetinaNet,
                                         SingleStageDetector, TwoStageDetector)
from mmdet_lite.models.detectors.base_detr import DetectionTransformer

DETECTORS = [BaseDetector, TwoStageDetector, FasterRCNN, MaskRCNN, SingleStageDetector,
             RetinaNet, DetectionTransformer, DETR]


@pytest.mark.parametrize('cls', DETECTORS, ids=lambda c: c.__name__)
def test_signatures_use_mmdetection_names(cls):
    assert list(inspect.signature(cls.loss).parameters) == [
        'self', 'batch_inputs', 'batch_data_samples']
    assert list(inspect.signature(cls.predict).parameters)[:3] == [
        'self', 'batch_inputs', 'batch_data_samples']
    assert list(inspect.signature(cls._forward).parameters) == [
        'self', 'batch_inputs', 'batch_data_samples']
    assert list(inspect.signature(cls.extract_feat).parameters) == ['self', 'batch_inputs']
    assert list(inspect.signature(cls.forward).parameters) == [
        'self', 'inputs', 'data_samples', 'mode']


def preprocessed(model, samples, training):
    data = model.data_preprocessor(make_batch(samples), training)
    return data['inputs'], data['data_samples']


@pytest.fixture(scope='module')
def faster_rcnn():
    torch.manual_seed(0)
    return build_detector(tiny_two_stage_cfg(with_mask=True))


def assert_same_losses(a: dict, b: dict):
    assert set(a) == set(b)
    for name in a:
        va = a[name] if isinstance(a[name], list) else [a[name]]
        vb = b[name] if isinstance(b[name], list) else [b[name]]
        for x, y in zip(va, vb):
            assert torch.equal(x, y), name


def test_two_stage_loss_by_keyword_equals_positional(faster_rcnn):
    samples = [make_det_sample([[8, 8, 40, 40]], [1], with_mask=True)]
    inputs, data_samples = preprocessed(faster_rcnn, samples, True)
    results = []
    for call in (lambda: faster_rcnn.loss(inputs, data_samples),
                 lambda: faster_rcnn.loss(batch_inputs=inputs, batch_data_samples=data_samples),
                 lambda: faster_rcnn.loss(inputs=inputs, data_samples=data_samples),
                 lambda: faster_rcnn.loss(inputs, batch_data_samples=data_samples)):
        torch.manual_seed(7)  # the same random sampling for every call
        results.append(call())
    for other in results[1:]:
        assert_same_losses(results[0], other)


def test_two_stage_predict_and_forward_by_keyword(faster_rcnn):
    faster_rcnn.eval()
    samples = [make_det_sample([[8, 8, 40, 40]], [1], with_mask=True)]
    inputs, data_samples = preprocessed(faster_rcnn, samples, False)
    with torch.no_grad():
        plain = faster_rcnn.predict(inputs, copy.deepcopy(data_samples), False)[0]
        keyword = faster_rcnn.predict(batch_inputs=inputs,
                                      batch_data_samples=copy.deepcopy(data_samples),
                                      rescale=False)[0]
        old = faster_rcnn.predict(inputs=inputs, data_samples=copy.deepcopy(data_samples),
                                  rescale=False)[0]
        for pred in (keyword, old):
            for field in ('bboxes', 'scores', 'labels', 'masks'):
                assert torch.equal(plain.pred_instances.get(field),
                                   pred.pred_instances.get(field))
        raw = faster_rcnn._forward(inputs, data_samples)
        raw_kw = faster_rcnn._forward(batch_inputs=inputs, batch_data_samples=data_samples)
        assert torch.equal(raw[0][0], raw_kw[0][0])
        feats = faster_rcnn.extract_feat(batch_inputs=inputs)
        assert all(torch.equal(a, b) for a, b in zip(feats, faster_rcnn.extract_feat(inputs)))


def test_both_spellings_at_once_is_a_type_error(faster_rcnn):
    inputs = torch.zeros(1, 3, 64, 64)
    with pytest.raises(TypeError, match="'batch_inputs' and its alias 'inputs'"):
        faster_rcnn.extract_feat(inputs=inputs, batch_inputs=inputs)


def test_single_stage_and_detr_by_keyword():
    from test_detr import tiny_detr_cfg
    from test_retinanet import tiny_retinanet

    for model in (tiny_retinanet(), build_detector(tiny_detr_cfg())):
        model.eval()
        samples = [make_det_sample([[8, 8, 40, 40]], [1])]
        inputs, data_samples = preprocessed(model, samples, True)
        with torch.no_grad():
            assert_same_losses(model.loss(inputs, data_samples),
                               model.loss(batch_inputs=inputs,
                                          batch_data_samples=data_samples))
            plain = model.predict(inputs, copy.deepcopy(data_samples))[0].pred_instances
            keyword = model.predict(batch_inputs=inputs,
                                    batch_data_samples=copy.deepcopy(data_samples),
                                    rescale=True)[0].pred_instances
            assert torch.equal(plain.bboxes, keyword.bboxes)
            assert torch.equal(plain.scores, keyword.scores)


def test_plugin_detector_with_the_old_names_takes_the_new_ones():

    class OldStyle(SingleStageDetector):

        def loss(self, inputs, data_samples):
            return dict(inputs=inputs, data_samples=data_samples)

    model = OldStyle.__new__(OldStyle)  # the method alone is under test
    out = OldStyle.loss(model, batch_inputs=1, batch_data_samples=2)
    assert out == dict(inputs=1, data_samples=2)


def test_heads_take_mmdetection_keywords(faster_rcnn):
    faster_rcnn.eval()
    samples = [make_det_sample([[8, 8, 40, 40]], [1], with_mask=True)]
    inputs, data_samples = preprocessed(faster_rcnn, samples, True)
    with torch.no_grad():
        x = faster_rcnn.extract_feat(inputs)
        rpn = faster_rcnn.rpn_head
        torch.manual_seed(5)  # the RPN samples anchors at random
        plain = rpn.loss(x, data_samples)
        torch.manual_seed(5)
        assert_same_losses(plain, rpn.loss(x=x, batch_data_samples=data_samples))
        props = rpn.predict(x, data_samples, False)
        props_kw = rpn.predict(x=x, batch_data_samples=data_samples, rescale=False)
        assert torch.equal(props[0].bboxes, props_kw[0].bboxes)

        roi = faster_rcnn.roi_head
        given = [InstanceData(bboxes=torch.tensor([[8., 8., 40., 40.], [0., 0., 30., 20.]]))]
        torch.manual_seed(3)
        plain = roi.loss(x, copy.deepcopy(given), data_samples)
        torch.manual_seed(3)
        keyword = roi.loss(x=x, rpn_results_list=copy.deepcopy(given),
                           batch_data_samples=data_samples)
        assert_same_losses(plain, keyword)
        plain = roi.predict(x, copy.deepcopy(given), data_samples, True)[0]
        keyword = roi.predict(x=x, rpn_results_list=copy.deepcopy(given),
                              batch_data_samples=data_samples, rescale=True)[0]
        assert torch.equal(plain.bboxes, keyword.bboxes)
        assert torch.equal(plain.masks, keyword.masks)


def test_detector_head_properties(faster_rcnn):
    from test_retinanet import tiny_retinanet
    assert faster_rcnn.with_bbox and faster_rcnn.with_mask
    assert not faster_rcnn.with_shared_head
    retina = tiny_retinanet()
    assert retina.with_bbox and not retina.with_mask and not retina.with_shared_head


def test_invalid_mode_is_a_runtime_error_as_in_mmdetection(faster_rcnn):
    with pytest.raises(RuntimeError, match="Invalid mode 'train'"):
        faster_rcnn(torch.zeros(1, 3, 64, 64), None, mode='train')
