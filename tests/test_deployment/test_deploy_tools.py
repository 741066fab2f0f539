"""tools/deployment/export.py and onnx_infer.py, in-process on a tiny RetinaNet config file
and checkpoint: the files they write, the detections onnx_infer finds (eager ``predict``'s
on the same letterboxed image), and one-line errors for bad input."""
import json

import cv2
import numpy as np
import pytest
import torch
from export_checks import assert_same_detections, eager_predict
from helpers_tools import load_script
from tiny_detectors import tiny_config, tiny_detector

EXPORT = 'tools/deployment/export.py'
INFER = 'tools/deployment/onnx_infer.py'


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)


@pytest.fixture(scope='module')
def tiny_files(tmp_path_factory):
    """A RetinaNet config file, a checkpoint of its tiny model and a 48x80 test image."""
    root = tmp_path_factory.mktemp('deploy_tools')
    config = root / 'retinanet_tiny.py'
    tiny_config('retinanet').dump(str(config))
    model = tiny_detector('retinanet')
    checkpoint = root / 'retinanet_tiny.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=('circle', 'square', 'triangle')))),
               checkpoint)
    image = root / 'image.png'
    rng = np.random.default_rng(0)
    cv2.imwrite(str(image), rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    return dict(config=config, checkpoint=checkpoint, image=image, model=model, root=root)


def _export(call_tool, files, out, *extra):
    return call_tool(EXPORT, [files['config'], files['checkpoint'], '--format', 'onnx',
                              '--shape', 64, 64, '--onnx-exporter', 'torchscript', '--out',
                              out, *extra])


def test_export_writes_the_graph_and_its_manifest(call_tool, tiny_files):
    out = tiny_files['root'] / 'export' / 'retina.onnx'
    result = _export(call_tool, tiny_files, out, '--verify')
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out.parent / 'retina.json').read_text())
    assert manifest['format'] == 'onnx' and manifest['detector'] == 'RetinaNet'
    assert manifest['input_shape'] == [64, 64] and manifest['with_postprocess'] is False
    assert manifest['graphs']['model']['file'] == 'retina.onnx'
    assert manifest['graphs']['model']['outputs'][0] == 'cls_scores_0'
    assert out.is_file()
    diff = float(result.stdout.split('raw outputs = ')[1].split()[0])
    assert diff <= 1e-4


def test_onnx_infer_draws_eager_predicts_detections(call_tool, tiny_files):
    out = tiny_files['root'] / 'infer' / 'retina.onnx'
    assert _export(call_tool, tiny_files, out).returncode == 0
    vis = tiny_files['root'] / 'vis.png'
    result = call_tool(INFER, [out, tiny_files['image'], '--out-file', vis,
                               '--pred-score-thr', 0.5])
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(vis)).shape == (48, 80, 3)

    # the same detections as eager predict on the letterboxed image
    infer = load_script(INFER)
    from mmdet_lite.deployment import get_export_adapter, letterbox, load_runners, read_manifest
    model = tiny_files['model']
    manifest = read_manifest(str(out))
    adapter = get_export_adapter(model, (64, 64))
    img = cv2.imread(str(tiny_files['image']))
    found = infer.detect(manifest, adapter, load_runners(manifest), img)
    images, meta = letterbox(img, (64, 64), adapter.normalizer)
    h, w = meta['img_shape']  # scale min(64 / 48, 64 / 80) = 0.8
    assert (h, w) == (38, 64)
    expected = eager_predict(model, [images[0, :, :h, :w]],
                             [{k: meta[k] for k in ('img_shape', 'ori_shape', 'scale_factor')}])
    assert_same_detections(expected, found)
    assert f'{len(found[0])} detections' in result.stdout


def test_onnx_infer_with_postprocess_graph(call_tool, tiny_files):
    out = tiny_files['root'] / 'pp' / 'retina.onnx'
    assert _export(call_tool, tiny_files, out, '--with-postprocess').returncode == 0
    vis = tiny_files['root'] / 'vis_pp.png'
    result = call_tool(INFER, [out, tiny_files['image'], '--out-file', vis])
    assert result.returncode == 0, result.stderr
    assert vis.is_file() and 'detections' in result.stdout


@pytest.mark.parametrize('argv, message', [
    (['--format', 'torch_export', '--with-postprocess'], 'needs --format onnx'),
    (['--format', 'onnx', '--shape', '50', '64'], 'pad_size_divisor'),
])
def test_export_errors_are_one_line(call_tool, tiny_files, tmp_path, argv, message):
    if '--shape' not in argv:
        argv = argv + ['--shape', '64', '64']
    result = call_tool(EXPORT, [tiny_files['config'], tiny_files['checkpoint'],
                                '--out', tmp_path / 'm.onnx', *argv])
    assert result.returncode == 2 and message in result.stderr
    assert 'Traceback' not in result.stderr


def test_missing_files_are_one_line_errors(call_tool, tiny_files, tmp_path):
    result = call_tool(EXPORT, [tiny_files['config'], tmp_path / 'missing.pth', '--format',
                                'onnx', '--shape', 64, 64])
    assert result.returncode == 2 and 'checkpoint not found' in result.stderr
    result = call_tool(INFER, [tmp_path / 'missing.onnx', tiny_files['image']])
    assert result.returncode == 2 and 'no export manifest' in result.stderr
