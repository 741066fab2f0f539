"""demo/image_demo.py: drawings and JSON predictions that agree with inference_detector.

One run of the real script in a subprocess; the other cases call ``main(argv)`` in-process.
The model is the tiny shapes Faster R-CNN with random weights saved by the test, and
``score_thr=0`` so that there are detections to compare.
"""
import json
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
from helpers_tools import REPO_ROOT, TINY_CONFIG, load_script, run_tool
from mmengine.config import Config

from mmdet_lite.apis import inference_detector, init_detector

DEMO = osp.join(REPO_ROOT, 'demo', 'image_demo.py')
CLASSES = ('circle', 'rectangle', 'triangle')

demo = load_script('demo/image_demo.py')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A config with score_thr 0, checkpoints of random weights and two images."""
    root = tmp_path_factory.mktemp('demo')
    config = root / 'tiny_thr0.py'
    config.write_text(f'_base_ = {TINY_CONFIG!r}\n'
                      'model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))\n')
    torch.manual_seed(0)
    model = init_detector(str(config))
    ckpt = root / 'tiny.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(classes=CLASSES)),
                    state_dict=model.state_dict()), ckpt)
    # as a Runner saves it: with the config text, so that it can stand for the model
    ckpt_with_cfg = root / 'with_cfg.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(classes=CLASSES),
                              cfg=Config.fromfile(str(config)).pretty_text),
                    state_dict=model.state_dict()), ckpt_with_cfg)
    images = root / 'images'
    images.mkdir()
    rng = np.random.RandomState(0)
    for name, (h, w) in (('first.jpg', (72, 96)), ('second.png', (90, 60))):
        img = rng.randint(0, 90, (h, w, 3)).astype(np.uint8)
        img[8:40, 10:50] = (40, 200, 230)
        cv2.imwrite(str(images / name), img)
    (images / 'notes.txt').write_text('not an image, not listed')
    return dict(root=root, config=str(config), ckpt=str(ckpt),
                ckpt_with_cfg=str(ckpt_with_cfg), images=images)


def _check_preds(out_dir, setup, names=('first.jpg', 'second.png')):
    """The JSON files hold mmdetection's keys and inference_detector's detections."""
    model = init_detector(setup['config'], setup['ckpt'])
    for name in names:
        expected = inference_detector(model, str(setup['images'] / name)).pred_instances
        with open(out_dir / 'preds' / (osp.splitext(name)[0] + '.json')) as f:
            preds = json.load(f)
        assert set(preds) == {'labels', 'scores', 'bboxes'}
        assert len(preds['labels']) == len(expected) > 0
        assert preds['labels'] == expected.labels.tolist()
        np.testing.assert_allclose(preds['scores'], expected.scores.numpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(preds['bboxes'], expected.bboxes.numpy(), rtol=1e-5,
                                   atol=1e-4)


@pytest.mark.slow
def test_demo_writes_drawings_and_json_matching_inference_detector(setup, tmp_path):
    out_dir = tmp_path / 'out'
    proc = run_tool(DEMO, [setup['images'], setup['config'], '--weights', setup['ckpt'],
                           '--out-dir', out_dir, '--pred-score-thr', '0.05',
                           '--device', 'cpu'])
    assert proc.returncode == 0, proc.stderr
    assert f'results have been saved at {out_dir}' in proc.stdout
    assert sorted(p.name for p in (out_dir / 'vis').iterdir()) == ['first.jpg', 'second.png']
    assert sorted(p.name for p in (out_dir / 'preds').iterdir()) == ['first.json',
                                                                     'second.json']
    # predictions only are drawn, on the original image: same size, and something drawn
    first = cv2.imread(str(out_dir / 'vis' / 'first.jpg'))
    assert first.shape == (72, 96, 3)
    original = cv2.imread(str(setup['images'] / 'first.jpg'))
    assert (np.abs(first.astype(int) - original).sum(axis=2) > 60).sum() > 50
    assert cv2.imread(str(out_dir / 'vis' / 'second.png')).shape == (90, 60, 3)
    _check_preds(out_dir, setup)


def test_a_checkpoint_as_model_uses_its_saved_config(setup, tmp_path, call_tool):
    out_dir = tmp_path / 'out'
    proc = call_tool('demo/image_demo.py', [setup['images'] / 'first.jpg',
                                            setup['ckpt_with_cfg'], '--out-dir', out_dir,
                                            '--device', 'cpu', '--no-save-vis'])
    assert proc.returncode == 0, proc.stderr
    assert 'using it as --weights' in proc.stderr
    assert not (out_dir / 'vis').exists()
    _check_preds(out_dir, setup, names=('first.jpg', ))


def test_no_save_vis_and_no_save_pred_write_nothing(setup, tmp_path, call_tool, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out-dir is ./outputs
    proc = call_tool('demo/image_demo.py', [setup['images'], setup['config'], '--weights',
                                            setup['ckpt'], '--no-save-vis', '--no-save-pred',
                                            '--print-result', '--device', 'cpu'])
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []
    assert 'saved at' not in proc.stdout
    assert proc.stdout.count("{'predictions': [{'labels': [") == 2  # one print per batch


def test_list_images_takes_a_file_a_folder_or_a_glob(setup):
    images = setup['images']
    expected = [str(images / 'first.jpg'), str(images / 'second.png')]
    assert demo.list_images(str(images)) == expected
    assert demo.list_images(str(images / '*')) == expected
    assert demo.list_images(str(images / 'sec*.png')) == expected[1:]
    assert demo.list_images(expected[0]) == expected[:1]
    with pytest.raises(FileNotFoundError, match=r'no image files .* found in .*\*.bmp'):
        demo.list_images(str(images / '*.bmp'))


def test_images_of_the_same_name_are_warned_about(capsys):
    demo.warn_name_clashes(['/data/a/x.jpg', '/data/b/x.png', '/data/b/y.jpg'])
    assert 'several images are named x:' in capsys.readouterr().err
    demo.warn_name_clashes(['/data/a/x.jpg', '/data/a/y.jpg'])
    assert capsys.readouterr().err == ''


def test_parse_args_splits_init_and_call_arguments():
    init_args, call_args, trusted = demo.parse_args(
        ['img.jpg', 'rtmdet-t', '--weights', 'w.pth', '--palette', 'coco',
         '--trust-checkpoint', 'w.pth', '-c'])
    assert init_args == dict(model='rtmdet-t', weights='w.pth', device=None, palette='coco',
                             fast_path=True, compile=False)
    assert call_args == dict(inputs='img.jpg', out_dir='outputs', pred_score_thr=0.3,
                             batch_size=1, show=False, no_save_vis=False, no_save_pred=False,
                             print_result=False)
    assert trusted == ['w.pth']
    _, call_args, _ = demo.parse_args(['img.jpg', 'cfg.py', '--no-save-vis', '--no-save-pred'])
    assert call_args['out_dir'] == ''  # as mmdetection: nothing to save
    init_args, _, _ = demo.parse_args(['img.jpg', 'cfg.py', '--no-fast-path', '--compile'])
    assert (init_args['fast_path'], init_args['compile']) == (False, True)


@pytest.mark.parametrize('flags', [['--texts', 'bench . car .'], ['--tokens-positive', '-1'],
                                   ['--chunked-size', '80']])
def test_text_prompt_options_are_refused(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(['img.jpg', 'cfg.py', *flags])
    assert exit_info.value.code == 2
    assert re.search(f'{flags[0]}: text-prompted models .* not supported',
                     capsys.readouterr().err)


@pytest.mark.parametrize('case, message', [
    ('missing_image', 'error: input image not found: .*nope.jpg'),
    ('unreadable_image', 'error: could not decode image .*broken.jpg'),
    ('missing_config', 'error: config file not found: .*nope.py'),
    ('unknown_model', "error: unknown model 'rtmdet-tt'.*close matches: rtmdet-t"),
    ('missing_weights', 'error: --weights: checkpoint not found: .*nope.pth'),
])
def test_bad_input_exits_with_a_one_line_error(setup, tmp_path, capsys, monkeypatch,
                                               case, message):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)
    (tmp_path / 'broken.jpg').write_bytes(b'\x00garbage')
    image = {'missing_image': tmp_path / 'nope.jpg',
             'unreadable_image': tmp_path / 'broken.jpg'}.get(case, setup['images'])
    config = {'missing_config': tmp_path / 'nope.py',
              'unknown_model': 'rtmdet-tt'}.get(case, setup['config'])
    weights = tmp_path / 'nope.pth' if case == 'missing_weights' else setup['ckpt']
    with pytest.raises(SystemExit) as exit_info:
        demo.main([str(image), str(config), '--weights', str(weights),
                   '--out-dir', str(tmp_path / 'out'), '--device', 'cpu'])
    assert exit_info.value.code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err_lines) == 1
    assert re.search(message, err_lines[0]), err_lines
