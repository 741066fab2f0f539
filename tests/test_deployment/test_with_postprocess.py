"""``--with-postprocess``: decoding, score filter and NMS inside the ONNX graph give eager
``predict``'s detections (boxes within 1e-3, same labels, same count).

Images fill the input and their originals have the same size (scale factor 1), the case
where the in-graph boxes (input pixels, clipped to the input) are eager's (see
mmdet_lite/deployment/dense_postprocess.py for the other cases).
"""
import pytest
import torch
from export_checks import assert_same_detections, eager_predict, export_and_load, make_metas
from tiny_detectors import tiny_detector

from mmdet_lite.deployment import get_export_adapter
from mmdet_lite.deployment.dense_postprocess import dets_to_instances

SHAPE = (64, 64)
HEADS = ['retinanet', 'fcos', 'atss', 'rtmdet', 'yolox']


def _expected_and_inputs(model, adapter, batch_size=2):
    images = adapter.example_images(batch_size, seed=6)
    metas = make_metas(SHAPE, batch_size, ori_scale=(1.0, 1.0))
    return eager_predict(model, list(images), metas), images, metas


@pytest.mark.parametrize('name', HEADS)
def test_postprocess_module_equals_eager_predict(name):
    """The module that gets exported, run eagerly (with the op's torchvision NMS)."""
    model = tiny_detector(name)
    adapter = get_export_adapter(model, SHAPE)
    expected, images, metas = _expected_and_inputs(model, adapter)
    with torch.no_grad():
        dets, labels = adapter.postprocess_graph(2).module(images)
    max_per_img = model.bbox_head.test_cfg.get('max_per_img')
    # K rows: max_per_img, or (YOLOX keeps every NMS survivor) one per prior
    assert dets.shape == (2, max_per_img or 8 * 8 + 4 * 4 + 2 * 2, 5)
    assert_same_detections(expected, dets_to_instances(dets, labels, metas), min_total=2)


@pytest.mark.parametrize('name', HEADS)
def test_onnx_with_postprocess_torchscript_exporter(name, tmp_path):
    model = tiny_detector(name)
    adapter = get_export_adapter(model, SHAPE)
    runners = export_and_load(adapter, tmp_path, 'onnx', with_postprocess=True,
                              dynamic_batch=True, onnx_exporter='torchscript')
    expected, images, metas = _expected_and_inputs(model, adapter)
    dets, labels = runners['model'](images)
    assert_same_detections(expected, dets_to_instances(dets, labels, metas), min_total=2)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['retinanet', 'yolox'])
def test_onnx_with_postprocess_dynamo_exporter(name, tmp_path):
    model = tiny_detector(name)
    adapter = get_export_adapter(model, SHAPE)
    runners = export_and_load(adapter, tmp_path, 'onnx', with_postprocess=True,
                              dynamic_batch=True, onnx_exporter='dynamo')
    expected, images, metas = _expected_and_inputs(model, adapter)
    dets, labels = runners['model'](images)
    assert_same_detections(expected, dets_to_instances(dets, labels, metas), min_total=2)
    dets, labels = runners['model'](images[:1])  # another batch size
    assert_same_detections(expected[:1], dets_to_instances(dets, labels, metas[:1]))


def test_rows_past_the_detections_are_padding(tmp_path):
    """With a high score threshold few boxes survive: the remaining rows of the fixed
    [B, max_per_img] outputs have zero boxes and scores and label -1, as mmdeploy pads."""
    model = tiny_detector('retinanet')
    model.bbox_head.test_cfg['score_thr'] = 0.9
    adapter = get_export_adapter(model, SHAPE)
    runners = export_and_load(adapter, tmp_path, 'onnx', with_postprocess=True,
                              onnx_exporter='torchscript')
    expected, images, metas = _expected_and_inputs(model, adapter, batch_size=1)
    dets, labels = runners['model'](images)
    count = len(expected[0])
    assert 0 < count < 100 and dets.shape == (1, 100, 5)
    assert torch.all(labels[0, :count] >= 0) and torch.all(labels[0, count:] == -1)
    assert torch.all(dets[0, count:] == 0)
    assert torch.all(dets[0, :count - 1, 4] >= dets[0, 1:count, 4])  # best first
    assert_same_detections(expected, dets_to_instances(dets, labels, metas))


def test_dets_to_instances_rescales_to_the_original_image():
    dets = torch.tensor([[[10., 20., 30., 40., 0.9], [0., 0., 0., 0., 0.]]])
    labels = torch.tensor([[2, -1]])
    result = dets_to_instances(dets, labels, [dict(scale_factor=(0.5, 2.0))])[0]
    assert result.bboxes.tolist() == [[20., 10., 60., 20.]]
    assert result.scores.tolist() == pytest.approx([0.9]) and result.labels.tolist() == [2]
