"""init_detector / inference_detector on the tiny shapes Faster R-CNN (random weights).

The checkpoints are written by the tests themselves: a plain ``{'meta', 'state_dict'}`` one
and one shaped like a Runner checkpoint (message hub with HistoryBuffer and numpy values).
``score_thr=0`` makes the random model return detections to compare.
"""
import pickle

import cv2
import numpy as np
import pytest
import torch
from helpers_tools import TINY_CONFIG
from mmengine.config import Config
from mmengine.logging import MessageHub

from mmdet_lite.apis import get_test_pipeline_cfg, inference_detector, init_detector
from mmdet_lite.datasets import ShapesDataset
from mmdet_lite.datasets.transforms import LoadImageFromNDArray
from mmdet_lite.structures import DetDataSample

SCORE_THR_0 = {'model.test_cfg.rcnn.score_thr': 0.0}
CKPT_CLASSES = ('apple', 'pear', 'plum')


def _image(height: int, width: int, seed: int) -> np.ndarray:
    """BGR noise with a bright square, [height, width, 3] uint8."""
    img = np.random.RandomState(seed).randint(0, 80, (height, width, 3)).astype(np.uint8)
    img[10:40, 20:60] = 230
    return img


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A checkpoint of a randomly initialised tiny model and two image files."""
    root = tmp_path_factory.mktemp('inference')
    torch.manual_seed(0)
    model = init_detector(TINY_CONFIG, cfg_options=SCORE_THR_0)
    state_dict = model.state_dict()
    ckpt = root / 'tiny.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(classes=CKPT_CLASSES)),
                    state_dict=state_dict), ckpt)
    img_a, img_b = root / 'a.png', root / 'b.png'
    cv2.imwrite(str(img_a), _image(80, 120, 0))
    cv2.imwrite(str(img_b), _image(80, 120, 1))
    return dict(root=root, ckpt=str(ckpt), state_dict=state_dict, img_a=str(img_a),
                img_b=str(img_b))


@pytest.fixture(scope='module')
def model(files):
    return init_detector(TINY_CONFIG, files['ckpt'], cfg_options=SCORE_THR_0)


def test_init_detector_loads_weights_and_checkpoint_classes(model, files):
    assert not model.training
    assert isinstance(model.cfg, Config)
    assert model.cfg.model.test_cfg.rcnn.score_thr == 0.0
    assert model.dataset_meta['classes'] == CKPT_CLASSES
    # no palette in the checkpoint: the config's dataset (ShapesDataset) gives it
    assert model.dataset_meta['palette'] == ShapesDataset.METAINFO['palette']
    for key, value in model.state_dict().items():
        assert torch.equal(value, files['state_dict'][key]), key


def test_init_detector_without_checkpoint_takes_classes_from_dataset_type():
    model = init_detector(TINY_CONFIG)
    assert model.dataset_meta['classes'] == ShapesDataset.METAINFO['classes']
    assert model.dataset_meta['palette'] == ShapesDataset.METAINFO['palette']


def test_config_metainfo_overrides_dataset_class_and_palette_arg_wins():
    model = init_detector(
        Config.fromfile(TINY_CONFIG), palette='random',
        cfg_options={'test_dataloader.dataset.metainfo': dict(classes=('x', 'y', 'z'))})
    assert model.dataset_meta == dict(classes=('x', 'y', 'z'), palette='random')


def test_runner_style_checkpoint_with_message_hub_loads_weights_only(files, tmp_path):
    hub = MessageHub.get_instance('test_inference_hub')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('eta', np.float64(12.0))
    path = tmp_path / 'runner.pth'
    torch.save(dict(meta=dict(epoch=1, dataset_meta=dict(classes=CKPT_CLASSES)),
                    state_dict=files['state_dict'], message_hub=hub.state_dict()), path)
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(path, weights_only=True)  # why an allow-list is needed at all
    model = init_detector(TINY_CONFIG, str(path))
    assert model.dataset_meta['classes'] == CKPT_CLASSES
    assert torch.equal(model.state_dict()['backbone.conv1.weight'],
                       files['state_dict']['backbone.conv1.weight'])


def test_ddp_prefixed_keys_load(files, tmp_path):
    path = tmp_path / 'ddp.pth'
    torch.save({f'module.{k}': v for k, v in files['state_dict'].items()}, path)
    model = init_detector(TINY_CONFIG, str(path))
    assert torch.equal(model.state_dict()['neck.fpn_convs.0.conv.weight'],
                       files['state_dict']['neck.fpn_convs.0.conv.weight'])


def test_checkpoint_of_another_model_is_rejected(files, tmp_path):
    state_dict = dict(files['state_dict'])
    del state_dict['backbone.conv1.weight']
    state_dict['extra.weight'] = torch.zeros(1)
    path = tmp_path / 'bad.pth'
    torch.save(dict(state_dict=state_dict), path)
    with pytest.raises(ValueError, match=r'does not fit.*missing keys \(1\): '
                       r'backbone.conv1.weight.*unexpected keys \(1\): extra.weight'):
        init_detector(TINY_CONFIG, str(path))


def test_missing_config_or_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='config file not found: .*nope.py'):
        init_detector(str(tmp_path / 'nope.py'))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        init_detector(TINY_CONFIG, str(tmp_path / 'nope.pth'))
    with pytest.raises(TypeError, match='config must be a file path or a Config'):
        init_detector(dict(model=dict()))


def test_inference_on_a_path_returns_a_sample_in_original_pixels(model, files):
    result = inference_detector(model, files['img_a'])
    assert isinstance(result, DetDataSample)
    assert result.ori_shape == (80, 120)
    assert result.img_shape == (64, 96)  # Resize to 96x96 keeping the 2:3 ratio
    pred = result.pred_instances
    assert len(pred) == 20  # score_thr 0: max_per_img detections
    assert pred.bboxes.shape == (20, 4) and pred.labels.dtype == torch.int64
    assert (pred.bboxes[:, 0::2] >= 0).all() and (pred.bboxes[:, 0::2] <= 120).all()
    assert (pred.bboxes[:, 1::2] >= 0).all() and (pred.bboxes[:, 1::2] <= 80).all()


def test_array_input_matches_file_input(model, files):
    from_file = inference_detector(model, files['img_a'])
    from_array = inference_detector(model, cv2.imread(files['img_a']))
    assert from_array.img_path is None
    torch.testing.assert_close(from_array.pred_instances.bboxes, from_file.pred_instances.bboxes)
    torch.testing.assert_close(from_array.pred_instances.scores, from_file.pred_instances.scores)


def test_list_input_gives_a_list_and_batching_keeps_results(model, files):
    paths = [files['img_a'], files['img_b']]
    singles = [inference_detector(model, path) for path in paths]
    batched = inference_detector(model, paths, batch_size=2)
    mixed = inference_detector(model, [files['img_a'], cv2.imread(files['img_b'])])
    assert isinstance(batched, list) and len(batched) == 2 and len(mixed) == 2
    for single, other in zip(singles * 2, batched + mixed):
        torch.testing.assert_close(other.pred_instances.bboxes, single.pred_instances.bboxes)
    assert inference_detector(model, []) == []


def test_bad_images_raise_clear_errors(model, files, tmp_path):
    with pytest.raises(FileNotFoundError, match='image file not found: .*missing.jpg'):
        inference_detector(model, str(tmp_path / 'missing.jpg'))
    for name, content in (('text.jpg', b'not an image'), ('empty.png', b'')):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f'could not decode image .*{name}'):
            inference_detector(model, str(tmp_path / name))
    with pytest.raises(ValueError, match=r'BGR image \[H, W, 3\].*\(4, 4, 4\)'):
        inference_detector(model, np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(TypeError, match='file paths or np.ndarray.*int'):
        inference_detector(model, 3)
    with pytest.raises(ValueError, match='batch_size must be a positive int'):
        inference_detector(model, files['img_a'], batch_size=0)


def test_model_without_cfg_needs_a_pipeline(model, files):
    bare = torch.nn.Module()
    with pytest.raises(ValueError, match='no `cfg`.*test_pipeline'):
        inference_detector(bare, files['img_a'])
    pipeline = get_test_pipeline_cfg(model.cfg)
    cfg, model.cfg = model.cfg, None
    try:
        result = inference_detector(model, files['img_a'], test_pipeline=pipeline)
    finally:
        model.cfg = cfg
    assert len(result.pred_instances) == 20


def test_test_pipeline_drops_annotations_and_swaps_the_loader():
    cfg = Config.fromfile(TINY_CONFIG)
    types = [step['type'] for step in get_test_pipeline_cfg(cfg)]
    assert types == ['LoadImageFromFile', 'Resize', 'PackDetInputs']
    types = [step['type'] for step in get_test_pipeline_cfg(cfg, from_ndarray=True)]
    assert types == ['LoadImageFromNDArray', 'Resize', 'PackDetInputs']
    wrapped = Config(dict(test_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=2, dataset=cfg.test_dataloader.dataset))))
    assert len(get_test_pipeline_cfg(wrapped)) == 3
    with pytest.raises(KeyError, match='test_dataloader.dataset.pipeline'):
        get_test_pipeline_cfg(Config(dict(model=dict())))


def test_load_image_from_ndarray_fills_the_loader_keys():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    results = LoadImageFromNDArray(to_float32=True)(dict(img=gray))
    assert results['img'].shape == (3, 4, 3) and results['img'].dtype == np.float32
    assert results['img_shape'] == results['ori_shape'] == (3, 4)
    assert results['img_path'] is None
    np.testing.assert_array_equal(results['img'][..., 2], gray)
    with pytest.raises(TypeError, match=r"results\['img'\] must be an np.ndarray"):
        LoadImageFromNDArray()(dict(img=[[0]]))
