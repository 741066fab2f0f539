"""Every covered detector, exported at 64x64 from its real config (tiny widths): the
exported graphs' raw outputs equal eager PyTorch's and the detections after our
post-processing equal eager ``predict``'s.

For each model and each path (``torch.export`` ExportedProgram, ONNX through the
TorchScript exporter, ONNX through the dynamo exporter for one model per family):

- raw outputs of every graph on its trace inputs: max |diff| <= 1e-4;
- detections of another image (so the RoI graphs also see a number of RoIs they were not
  traced with), from originals 1.5 x 2 times larger (so the boxes are
  rescaled): same count, same labels, boxes within 1e-3, scores within 1e-4 (and masks).

The eager glue alone (the adapters' ``predict`` on the unexported modules) is checked for
every model first: it must give exactly eager ``predict``'s detections.
"""
import pytest
import torch
from export_checks import (assert_same_detections, eager_predict, eager_runners,
                           export_and_load, full_metas, make_metas, raw_outputs_match)
from tiny_detectors import tiny_detector

from mmdet_lite.deployment import get_export_adapter

SHAPE = (64, 64)
DENSE = ['retinanet', 'fcos', 'atss', 'yolox', 'rtmdet', 'rtmdet-ins']
DETR = ['detr', 'deformable-detr', 'deformable-detr-refine-twostage', 'dino']
TWO_STAGE = ['faster-rcnn', 'mask-rcnn']
ALL = DENSE + DETR + TWO_STAGE

# Measured export times on the 2-core CI machine (seconds): above ~2 s -> slow.
FAST_TORCH_EXPORT = {'retinanet', 'atss', 'detr'}
DYNAMO_ONNX = ['retinanet', 'rtmdet-ins', 'detr', 'dino', 'mask-rcnn']  # one per family


def _cases(names, fast):
    return [n if n in fast else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.fixture(scope='module')
def detectors():
    """name -> (model, adapter), built once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            model = tiny_detector(name)
            cache[name] = (model, get_export_adapter(model, SHAPE))
        return cache[name]

    return get


def _check_detections(model, adapter, runners) -> None:
    images = adapter.example_images(1, seed=3)  # not the trace image
    metas = make_metas(SHAPE)
    expected = eager_predict(model, list(images), metas)
    actual = adapter.predict(runners, images, full_metas(metas, SHAPE))
    assert_same_detections(expected, actual, min_total=2)


@pytest.mark.parametrize('name', ALL)
def test_eager_glue_gives_eager_predict(detectors, name):
    model, adapter = detectors(name)
    _check_detections(model, adapter, eager_runners(adapter))


@pytest.mark.parametrize('name', _cases(ALL, fast=FAST_TORCH_EXPORT))
def test_torch_export_matches_eager(detectors, name, tmp_path):
    model, adapter = detectors(name)
    runners = export_and_load(adapter, tmp_path, 'torch_export')
    assert raw_outputs_match(adapter, runners) == 0.0  # the same kernels: bit-identical
    _check_detections(model, adapter, runners)


@pytest.mark.parametrize('name', ALL)
def test_onnx_torchscript_exporter_matches_eager(detectors, name, tmp_path):
    model, adapter = detectors(name)
    runners = export_and_load(adapter, tmp_path, 'onnx', onnx_exporter='torchscript')
    raw_outputs_match(adapter, runners)
    _check_detections(model, adapter, runners)


@pytest.mark.slow
@pytest.mark.parametrize('name', DYNAMO_ONNX)
def test_onnx_dynamo_exporter_matches_eager(detectors, name, tmp_path):
    model, adapter = detectors(name)
    runners = export_and_load(adapter, tmp_path, 'onnx', onnx_exporter='dynamo')
    raw_outputs_match(adapter, runners)
    _check_detections(model, adapter, runners)


@pytest.mark.parametrize('name, fmt', [
    ('retinanet', 'torch_export'), ('retinanet', 'onnx'), ('detr', 'onnx'),
    ('mask-rcnn', 'onnx'), pytest.param('detr', 'torch_export', marks=pytest.mark.slow),
    pytest.param('mask-rcnn', 'torch_export', marks=pytest.mark.slow)])
def test_dynamic_batch_runs_other_batch_sizes(detectors, name, fmt, tmp_path):
    model, adapter = detectors(name)
    runners = export_and_load(adapter, tmp_path, fmt, dynamic_batch=True,
                              onnx_exporter='torchscript')
    for batch_size in (1, 3):
        images = adapter.example_images(batch_size, seed=4)
        metas = make_metas(SHAPE, batch_size)
        assert_same_detections(eager_predict(model, list(images), metas),
                               adapter.predict(runners, images, full_metas(metas, SHAPE)))


def test_fixed_batch_export_refuses_another_batch_size(detectors, tmp_path):
    _, adapter = detectors('retinanet')
    runners = export_and_load(adapter, tmp_path, 'onnx', onnx_exporter='torchscript')
    with pytest.raises(Exception, match='(?i)dimension|shape|index'):
        runners['model'](adapter.example_images(2))


def test_letterboxed_image_matches_eager_padding(detectors, tmp_path):
    """A 50x40 image letterboxed into the 64x64 input (resized to 64x51, padded on the
    right): the raw pad value normalizes to the preprocessor's pad_value, so the graph sees
    what the eager preprocessor's padding gives; the heads clip to the 64x51 img_shape and
    rescale by its scale factor."""
    from mmdet_lite.deployment import letterbox
    model, adapter = detectors('retinanet')
    runners = export_and_load(adapter, tmp_path, 'onnx', onnx_exporter='torchscript')
    generator = torch.Generator().manual_seed(5)
    img = (torch.rand((50, 40, 3), generator=generator) * 255).round().numpy()
    images, meta = letterbox(img, SHAPE, adapter.normalizer)
    assert meta['img_shape'] == (64, 51) and meta['ori_shape'] == (50, 40)
    assert meta['scale_factor'] == (51 / 40, 64 / 50)
    resized = images[0, :, :64, :51]  # what Resize gives the eager preprocessor
    expected = eager_predict(model, [resized], [{k: meta[k] for k in
                                                 ('img_shape', 'ori_shape', 'scale_factor')}])
    assert_same_detections(expected, adapter.predict(runners, images, [meta]))
