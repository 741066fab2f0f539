"""DetInferencer on the tiny shapes Faster R-CNN (random weights saved by the test).

The reference is :func:`inference_detector` on the same model: the inferencer must return
the same detections, as mmdetection's dicts, and write mmdetection's files. The config sets
``score_thr=0`` so that the random model returns detections (``max_per_img=20`` each).
"""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from helpers_tools import REPO_ROOT, TINY_CONFIG
from mmengine.config import Config
from mmengine.structures import InstanceData
from pycocotools import mask as mask_util

from mmdet_lite.apis import DetInferencer, inference_detector, init_detector
from mmdet_lite.apis.model_names import METAFILE_NAMES, list_models, resolve_model_name
from mmdet_lite.structures import DetDataSample

CLASSES = ('apple', 'pear', 'plum')
CONFIGS = osp.join(REPO_ROOT, 'configs')


def _image(height: int, width: int, seed: int) -> np.ndarray:
    """BGR noise with a bright rectangle, [height, width, 3] uint8."""
    img = np.random.RandomState(seed).randint(0, 80, (height, width, 3)).astype(np.uint8)
    img[10:40, 20:50] = (40, 200, 230)
    return img


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A score_thr-0 config, a checkpoint of random weights and a folder of images."""
    root = tmp_path_factory.mktemp('det_inferencer')
    config = root / 'tiny_thr0.py'
    config.write_text(f'_base_ = {TINY_CONFIG!r}\n'
                      'model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))\n')
    torch.manual_seed(0)
    state_dict = init_detector(str(config)).state_dict()
    ckpt = root / 'tiny.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(classes=CLASSES)), state_dict=state_dict), ckpt)
    images = root / 'images'
    (images / 'sub').mkdir(parents=True)
    cv2.imwrite(str(images / 'b.png'), _image(90, 60, 1))
    cv2.imwrite(str(images / 'a.jpg'), _image(72, 96, 0))
    cv2.imwrite(str(images / 'sub' / 'c.png'), _image(64, 64, 2))  # not listed: no recursion
    (images / 'notes.txt').write_text('not an image')
    return dict(config=str(config), ckpt=str(ckpt), images=str(images),
                a=str(images / 'a.jpg'), b=str(images / 'b.png'))


@pytest.fixture(scope='module')
def inferencer(files):
    return DetInferencer(files['config'], files['ckpt'], device='cpu', show_progress=False)


@pytest.fixture(scope='module')
def model(files):
    """The reference: the same model through init_detector."""
    return init_detector(files['config'], files['ckpt'])


def _assert_same_detections(pred: dict, expected: DetDataSample) -> None:
    instances = expected.pred_instances
    assert len(pred['labels']) == len(instances) == 20
    assert pred['labels'] == instances.labels.tolist()
    np.testing.assert_allclose(pred['scores'], instances.scores.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred['bboxes'], instances.bboxes.numpy(), rtol=1e-5, atol=1e-4)


def test_a_path_gives_mmdetection_dicts_equal_to_inference_detector(inferencer, model, files):
    result = inferencer(files['a'])
    assert set(result) == {'predictions', 'visualization'}
    assert result['visualization'] == []  # nothing drawn: not shown, saved nor asked for
    (pred, ) = result['predictions']
    assert set(pred) == {'labels', 'scores', 'bboxes'}
    assert all(isinstance(label, int) for label in pred['labels'])
    assert all(len(box) == 4 for box in pred['bboxes'])
    _assert_same_detections(pred, inference_detector(model, files['a']))
    assert inferencer.model.dataset_meta['classes'] == CLASSES


def test_a_folder_gives_its_images_and_out_dir_gets_mmdetection_files(
        inferencer, model, files, tmp_path):
    result = inferencer(files['images'], out_dir=str(tmp_path), no_save_pred=False)
    assert len(result['predictions']) == 2  # a.jpg, b.png; not notes.txt nor sub/c.png
    assert sorted(p.name for p in (tmp_path / 'vis').iterdir()) == ['a.jpg', 'b.png']
    assert sorted(p.name for p in (tmp_path / 'preds').iterdir()) == ['a.json', 'b.json']
    # drawn because they were saved: returned although return_vis is False (mmdetection)
    assert [vis.shape for vis in result['visualization']] == [(72, 96, 3), (90, 60, 3)]
    assert cv2.imread(str(tmp_path / 'vis' / 'b.png')).shape == (90, 60, 3)
    for name, pred in zip(('a', 'b'), result['predictions']):
        with open(tmp_path / 'preds' / f'{name}.json') as f:
            saved = json.load(f)
        assert set(saved) == {'labels', 'scores', 'bboxes'}
        assert saved == json.loads(json.dumps(pred))
        _assert_same_detections(saved, inference_detector(model, files[name]))


def test_the_default_saves_drawings_but_not_predictions(inferencer, files, tmp_path):
    inferencer(files['a'], out_dir=str(tmp_path))  # no_save_pred defaults to True
    assert (tmp_path / 'vis' / 'a.jpg').is_file()
    assert not (tmp_path / 'preds').exists()
    inferencer(files['b'], out_dir=str(tmp_path / 'x'), no_save_vis=True, no_save_pred=False)
    assert not (tmp_path / 'x' / 'vis').exists() and (tmp_path / 'x' / 'preds' / 'b.json').is_file()


def test_arrays_get_numbered_outputs_and_match_inference_detector(files, model, tmp_path):
    inferencer = DetInferencer(files['config'], files['ckpt'], device='cpu',
                               show_progress=False)  # fresh counters
    arrays = [_image(72, 96, 0), _image(64, 80, 5)]
    result = inferencer(arrays, out_dir=str(tmp_path), no_save_pred=False)
    for pred, array in zip(result['predictions'], arrays):
        _assert_same_detections(pred, inference_detector(model, array))
    inferencer(arrays[1], out_dir=str(tmp_path), no_save_pred=False)  # counters go on
    assert sorted(p.name for p in (tmp_path / 'vis').iterdir()) == [
        '00000000.jpg', '00000001.jpg', '00000002.jpg']
    assert sorted(p.name for p in (tmp_path / 'preds').iterdir()) == ['0.json', '1.json',
                                                                      '2.json']
    assert cv2.imread(str(tmp_path / 'vis' / '00000001.jpg')).shape == (64, 80, 3)
    with open(tmp_path / 'preds' / '2.json') as f:
        assert f.read() == open(tmp_path / 'preds' / '1.json').read()  # same image


def test_return_vis_draws_above_the_threshold_and_predictions_stay_unthresholded(
        inferencer, files):
    rgb = cv2.imread(files['a'])[..., ::-1]  # files are drawn in RGB
    drawn = inferencer(files['a'], return_vis=True, pred_score_thr=0.0)
    (vis, ) = drawn['visualization']
    assert vis.shape == rgb.shape and vis.dtype == np.uint8
    assert (np.abs(vis.astype(int) - rgb).sum(axis=2) > 30).sum() > 100  # boxes and labels

    nothing = inferencer(files['a'], return_vis=True, pred_score_thr=1.0)
    np.testing.assert_array_equal(nothing['visualization'][0], rgb)  # no score is above 1
    assert nothing['predictions'] == drawn['predictions']  # all 20, whatever the threshold
    assert max(nothing['predictions'][0]['scores']) < 1.0

    undrawn = inferencer(files['a'], return_vis=True, pred_score_thr=0.0, draw_pred=False)
    np.testing.assert_array_equal(undrawn['visualization'][0], rgb)


def test_arrays_are_drawn_as_given_as_mmdetection_does(inferencer):
    bgr = _image(64, 64, 3)
    (vis, ) = inferencer(bgr, return_vis=True, pred_score_thr=1.0)['visualization']
    np.testing.assert_array_equal(vis, bgr)  # mmdetection does not flip arrays to RGB


def test_batch_size_2_gives_the_predictions_of_batch_size_1(inferencer, model, files):
    # images of one size: a batch adds no padding, so the detections cannot change
    inputs = [files['a'], _image(72, 96, 7), _image(72, 96, 8)]  # a partial last batch
    single = inferencer(inputs)['predictions']
    batched = inferencer(inputs, batch_size=2)['predictions']
    assert len(batched) == 3
    for one, other in zip(single, batched):
        assert one['labels'] == other['labels']
        np.testing.assert_allclose(other['scores'], one['scores'], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(other['bboxes'], one['bboxes'], rtol=1e-4, atol=1e-3)
    # sizes differ: padded to a common size, as inference_detector's batches
    mixed = [files['a'], files['b']]
    for pred, expected in zip(inferencer(mixed, batch_size=2)['predictions'],
                              inference_detector(model, mixed, batch_size=2)):
        _assert_same_detections(pred, expected)
    with pytest.raises(ValueError, match='batch_size must be a positive int'):
        inferencer(files['a'], batch_size=0)


def test_return_datasamples_keeps_samples_and_saves_no_json(inferencer, files, tmp_path):
    with pytest.warns(UserWarning, match='Prediction results are not saved'):
        result = inferencer(files['a'], return_datasamples=True, out_dir=str(tmp_path),
                            no_save_pred=False, no_save_vis=True)
    (sample, ) = result['predictions']
    assert isinstance(sample, DetDataSample) and len(sample.pred_instances) == 20
    assert 'img_id' not in sample.metainfo  # the inferencer's pipeline drops it
    assert not (tmp_path / 'preds').exists()


@pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')  # pycocotools
def test_masks_become_rle_with_str_counts_and_boxes_come_from_masks_if_missing(inferencer):
    masks = torch.zeros(2, 6, 5, dtype=torch.bool)
    masks[0, 1:4, 2:5] = True
    masks[1, 0:2, 0:1] = True
    sample = DetDataSample()
    sample.pred_instances = InstanceData(  # SOLO: all-zero boxes
        labels=torch.tensor([2, 0]), scores=torch.tensor([0.5, 0.25]), bboxes=torch.zeros(2, 4),
        masks=masks)
    result = json.loads(json.dumps(inferencer.pred2dict(sample)))
    assert result['labels'] == [2, 0] and result['scores'] == [0.5, 0.25]
    assert result['bboxes'] == [[2, 1, 5, 4], [0, 0, 1, 2]]  # tight, right/bottom exclusive
    for rle, mask in zip(result['masks'], masks):
        assert rle['size'] == [6, 5] and isinstance(rle['counts'], str)
        decoded = mask_util.decode(dict(size=rle['size'], counts=rle['counts'].encode()))
        np.testing.assert_array_equal(decoded.astype(bool), mask.numpy())


def test_progress_bar_and_print_result(files, capsys):
    inferencer = DetInferencer(files['config'], files['ckpt'], device='cpu')
    inferencer([files['a'], files['b']], print_result=True)
    out = capsys.readouterr().out
    assert 'Inference' in out and "{'predictions': [{'labels': [" in out
    inferencer.show_progress = False
    inferencer(files['a'])
    assert 'Inference' not in capsys.readouterr().out


def test_bad_arguments_are_refused(inferencer, files):
    with pytest.raises(ValueError, match='texts=.*text-prompted detectors.*not supported'):
        inferencer(files['a'], texts='bench . car .')
    with pytest.raises(ValueError, match='tokens_positive=-1'):
        inferencer(files['a'], tokens_positive=-1)
    with pytest.raises(ValueError, match="unknown argument {'score_thr'}"):
        inferencer(files['a'], score_thr=0.5)
    with pytest.raises(ValueError, match='scope must be one of'):
        DetInferencer(files['config'], scope='mmyolo')
    with pytest.raises(ValueError, match='model and weights are both None'):
        DetInferencer()
    with pytest.raises(FileNotFoundError, match='config file not found: .*nope.py'):
        DetInferencer('configs/nope.py')


def test_model_none_takes_the_config_saved_in_the_checkpoint(files, tmp_path):
    ckpt = torch.load(files['ckpt'], weights_only=True)
    ckpt['meta']['cfg'] = Config.fromfile(files['config']).pretty_text
    path = tmp_path / 'with_cfg.pth'
    torch.save(ckpt, path)
    from_ckpt = DetInferencer(weights=str(path), device='cpu', scope='mmdet_lite',
                              show_progress=False)
    from_config = DetInferencer(files['config'], files['ckpt'], device='cpu',
                                show_progress=False)
    assert from_ckpt(files['a'])['predictions'] == from_config(files['a'])['predictions']
    with pytest.raises(ValueError, match='holds no config'):
        DetInferencer(weights=files['ckpt'])


def test_model_names_resolve_to_our_configs():
    tiny = osp.join(CONFIGS, 'rtmdet', 'rtmdet_tiny_8xb32-300e_coco.py')
    assert osp.samefile(resolve_model_name('rtmdet_tiny_8xb32-300e_coco'), tiny)
    assert osp.samefile(resolve_model_name('RTMDet-T'), tiny)  # alias, any case
    assert osp.samefile(resolve_model_name('yolox_s_8x8_300e_coco'),  # metafile name
                        osp.join(CONFIGS, 'yolox', 'yolox_s_8xb8-300e_coco.py'))
    assert osp.samefile(resolve_model_name('faster-rcnn_r18_fpn_shapes'),
                        osp.join(CONFIGS, 'shapes', 'faster-rcnn_r18_fpn_shapes.py'))
    assert resolve_model_name(TINY_CONFIG) == TINY_CONFIG
    names = list_models()
    assert {'rtmdet-t', 'rtmdet-ins-s', 'faster-rcnn_r50_fpn_1x_coco'} <= set(names)
    assert 'faster-rcnn_r50_fpn' not in names  # _base_/models/faster-rcnn_r50_fpn.py
    assert DetInferencer.list_models(patterns='rtmdet-ins-') == [
        'rtmdet-ins-l', 'rtmdet-ins-m', 'rtmdet-ins-s', 'rtmdet-ins-t', 'rtmdet-ins-x']
    for name, path in METAFILE_NAMES.items():
        assert osp.isfile(osp.join(CONFIGS, path)), name


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'rtmdet_tinny_8xb32-300e_coco'.*"
                       r'close matches: rtmdet_tiny_8xb32-300e_coco'):
        resolve_model_name('rtmdet_tinny_8xb32-300e_coco')
    with pytest.raises(FileNotFoundError, match='config file not found: no/such.py'):
        resolve_model_name('no/such.py')


def test_a_model_name_builds_with_random_weights_and_says_it_never_downloads():
    with pytest.warns(UserWarning, match='mmdet_lite never downloads'):
        inferencer = DetInferencer('faster-rcnn_r18_fpn_shapes', device='cpu',
                                   show_progress=False)
    assert inferencer.cfg.filename.endswith('faster-rcnn_r18_fpn_shapes.py')
    assert inferencer.model.dataset_meta['classes'] == ('circle', 'rectangle', 'triangle')
