"""demo/image_demo.py: drawings and JSON predictions that agree with inference_detector.

One run of the real script in a subprocess; error cases and helpers run in-process.
The model is the tiny shapes Faster R-CNN with random weights saved by the test, and
``score_thr=0`` so that there are detections to compare.
"""
import importlib.util
import json
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
from helpers_tools import REPO_ROOT, TINY_CONFIG, run_tool
from mmengine.structures import InstanceData
from pycocotools import mask as mask_util

from mmdet_lite.apis import inference_detector, init_detector

DEMO = osp.join(REPO_ROOT, 'demo', 'image_demo.py')
CLASSES = ('circle', 'rectangle', 'triangle')


def _load_demo():
    spec = importlib.util.spec_from_file_location('image_demo', DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A config with score_thr 0, a checkpoint of random weights and two images."""
    root = tmp_path_factory.mktemp('demo')
    config = root / 'tiny_thr0.py'
    config.write_text(f'_base_ = {TINY_CONFIG!r}\n'
                      'model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))\n')
    torch.manual_seed(0)
    model = init_detector(str(config))
    ckpt = root / 'tiny.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(classes=CLASSES)),
                    state_dict=model.state_dict()), ckpt)
    images = root / 'images'
    images.mkdir()
    rng = np.random.RandomState(0)
    for name, (h, w) in (('first.jpg', (72, 96)), ('second.png', (90, 60))):
        img = rng.randint(0, 90, (h, w, 3)).astype(np.uint8)
        img[8:40, 10:50] = (40, 200, 230)
        cv2.imwrite(str(images / name), img)
    (images / 'notes.txt').write_text('not an image, not listed')
    return dict(root=root, config=str(config), ckpt=str(ckpt), images=images)


@pytest.mark.slow
def test_demo_writes_drawings_and_json_matching_inference_detector(setup, tmp_path):
    out_dir = tmp_path / 'out'
    proc = run_tool(DEMO, [setup['images'], setup['config'], '--weights', setup['ckpt'],
                           '--out-dir', out_dir, '--pred-score-thr', '0.05'])
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out_dir / 'vis').iterdir()) == ['first.jpg', 'second.png']
    assert sorted(p.name for p in (out_dir / 'preds').iterdir()) == ['first.json',
                                                                     'second.json']
    # predictions only are drawn, on the original image: same size
    assert cv2.imread(str(out_dir / 'vis' / 'first.jpg')).shape == (72, 96, 3)
    assert cv2.imread(str(out_dir / 'vis' / 'second.png')).shape == (90, 60, 3)

    model = init_detector(setup['config'], setup['ckpt'])
    for name in ('first.jpg', 'second.png'):
        expected = inference_detector(model, str(setup['images'] / name)).pred_instances
        with open(out_dir / 'preds' / (osp.splitext(name)[0] + '.json')) as f:
            preds = json.load(f)
        assert len(preds['labels']) == len(expected) > 0
        assert preds['labels'] == expected.labels.tolist()
        assert preds['class_names'] == [CLASSES[i] for i in preds['labels']]
        np.testing.assert_allclose(preds['scores'], expected.scores.numpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(preds['bboxes'], expected.bboxes.numpy(), rtol=1e-5,
                                   atol=1e-4)


def test_list_images_takes_a_file_a_folder_or_a_glob(setup):
    images = setup['images']
    expected = [str(images / 'first.jpg'), str(images / 'second.png')]
    assert demo.list_images(str(images)) == expected
    assert demo.list_images(str(images / '*')) == expected
    assert demo.list_images(str(images / 'sec*.png')) == expected[1:]
    assert demo.list_images(expected[0]) == expected[:1]
    with pytest.raises(FileNotFoundError, match=r'no image files .* found in .*\*.bmp'):
        demo.list_images(str(images / '*.bmp'))


def test_output_names_keep_subfolders_apart():
    names = demo.output_names(['/data/a/x.jpg', '/data/b/x.jpg'])
    assert names == [osp.join('a', 'x.jpg'), osp.join('b', 'x.jpg')]
    assert demo.output_names(['/data/a/x.jpg']) == ['x.jpg']


@pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')  # pycocotools
def test_masks_are_written_as_rle_with_str_counts():
    masks = torch.zeros(1, 6, 5, dtype=torch.bool)
    masks[0, 1:4, 2:5] = True
    pred = InstanceData(labels=torch.tensor([2]), scores=torch.tensor([0.5]),
                        bboxes=torch.tensor([[2., 1., 5., 4.]]), masks=masks)
    result = json.loads(json.dumps(demo.prediction_to_dict(pred, CLASSES)))
    assert result['class_names'] == ['triangle']
    rle = result['masks'][0]
    assert rle['size'] == [6, 5] and isinstance(rle['counts'], str)
    decoded = mask_util.decode(dict(size=rle['size'], counts=rle['counts'].encode()))
    np.testing.assert_array_equal(decoded.astype(bool), masks[0].numpy())


@pytest.mark.parametrize('case, message', [
    ('missing_image', 'error: input image not found: .*nope.jpg'),
    ('unreadable_image', 'error: could not decode image .*broken.jpg'),
    ('missing_config', 'error: config file not found: .*nope.py'),
    ('missing_weights', 'error: --weights: checkpoint not found: .*nope.pth'),
])
def test_bad_input_exits_with_a_one_line_error(setup, tmp_path, capsys, monkeypatch,
                                               case, message):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)
    (tmp_path / 'broken.jpg').write_bytes(b'\x00garbage')
    image = {'missing_image': tmp_path / 'nope.jpg',
             'unreadable_image': tmp_path / 'broken.jpg'}.get(case, setup['images'])
    config = tmp_path / 'nope.py' if case == 'missing_config' else setup['config']
    weights = tmp_path / 'nope.pth' if case == 'missing_weights' else setup['ckpt']
    with pytest.raises(SystemExit) as exit_info:
        demo.main([str(image), str(config), '--weights', str(weights),
                   '--out-dir', str(tmp_path / 'out')])
    assert exit_info.value.code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err_lines) == 1
    assert re.search(message, err_lines[0]), err_lines
