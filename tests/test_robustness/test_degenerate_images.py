"""Images a detector cannot use say so; extreme but usable ones go through; drawing a big
image costs memory in proportion to its pixels.

- An empty image or one with a side under 2 pixels: ``ValueError`` naming the image (its
  path, or 'image array #i' for ``inference_detector``'s i-th array) and its shape. Before,
  ``Resize`` divided by zero (0 x 0) or cv2 failed on a 0-pixel side.
- An extreme aspect ratio (5000 x 4): ``Resize`` clamps the short side to 1 pixel and the
  model runs, with boxes inside the original image.
- A float array in 0..1 given to ``inference_detector`` is refused (the model expects
  0..255; it used to lose every detection silently).
- ``DetLocalVisualizer`` draws boxes where mmengine's matplotlib rendering put them, in a
  fraction of its memory (it rendered the image itself through matplotlib).
"""
import tracemalloc
import uuid

import cv2
import mmcv
import numpy as np
import pytest
import torch
from helpers_tools import TINY_CONFIG
from mmengine.structures import InstanceData
from mmengine.visualization import Visualizer

from mmdet_lite.datasets.transforms import LoadImageFromFile, Resize
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks
from mmdet_lite.visualization import DetLocalVisualizer


@pytest.fixture(scope='module')
def model():
    from mmdet_lite.apis import init_detector
    torch.manual_seed(0)
    return init_detector(TINY_CONFIG)  # random weights: only shapes and errors matter


def _infer(model, imgs):
    from mmdet_lite.apis import inference_detector
    return inference_detector(model, imgs)


@pytest.mark.parametrize('shape,what', [((0, 0, 3), 'is empty'), ((1, 1, 3), 'is too small'),
                                        ((1, 50, 3), 'is too small'),
                                        ((40, 0), 'is empty')])
def test_tiny_arrays_are_refused_naming_the_array_and_shape(model, shape, what):
    good = np.full((32, 32, 3), 80, np.uint8)
    with pytest.raises(ValueError) as info:
        _infer(model, [good, np.zeros(shape, np.uint8)])
    assert str(info.value) == (f'image array #1 {what}: shape {shape} (height, width, '
                               'channels); both sides must be at least 2 pixels')


def test_tiny_image_file_is_refused_or_skipped_naming_the_file(model, tmp_path):
    path = str(tmp_path / 'dot.png')
    cv2.imwrite(path, np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match=rf'^image {path} is too small: shape \(1, 1, 3\)'):
        _infer(model, path)
    # a training pipeline with ignore_empty=True skips it like an unreadable file
    assert LoadImageFromFile(ignore_empty=True).transform(dict(img_path=path)) is None


@pytest.mark.parametrize('shape', [(5000, 4, 3), (4, 5000, 3), (3, 2, 3)])
def test_extreme_aspect_ratios_run_with_boxes_inside_the_image(model, shape):
    result = _infer(model, np.full(shape, 100, np.uint8))
    assert min(result.img_shape) >= 1
    bboxes = result.pred_instances.bboxes
    assert len(bboxes) > 0  # score_thr of the tiny config keeps some random boxes
    h, w = shape[:2]
    assert (bboxes[:, 0::2] >= 0).all() and (bboxes[:, 0::2] <= w).all()
    assert (bboxes[:, 1::2] >= 0).all() and (bboxes[:, 1::2] <= h).all()


def test_resize_clamps_every_side_to_one_pixel_with_annotations():
    img = np.zeros((5000, 4, 3), np.uint8)
    masks = np.zeros((1, 5000, 4), np.uint8)
    masks[0, 1000:2000] = 1
    results = dict(img=img, gt_bboxes=np.array([[0., 1000., 4., 2000.]], np.float32),
                   gt_masks=BitmapMasks(masks, 5000, 4), gt_seg_map=np.zeros((5000, 4), np.uint8))
    out = Resize(scale=(96, 96), keep_ratio=True).transform(results)
    assert out['img'].shape == (96, 1, 3) and out['img_shape'] == (96, 1)
    assert out['gt_masks'].masks.shape == (1, 96, 1) and out['gt_seg_map'].shape == (96, 1)
    np.testing.assert_allclose(out['scale_factor'], (1 / 4, 96 / 5000))
    np.testing.assert_allclose(out['gt_bboxes'], [[0., 19.2, 1., 38.4]], rtol=1e-5)
    # scale_factor and exact-size resizes clamp too; polygons follow the image
    poly = PolygonMasks([[np.array([0., 0., 4., 0., 4., 50.])]], 5000, 4)
    out = Resize(scale_factor=0.1).transform(dict(img=img, gt_masks=poly))
    assert out['img_shape'] == (500, 1) and (out['gt_masks'].height, out['gt_masks'].width) \
        == (500, 1)
    assert Resize(scale=(0.4, 10)).transform(dict(img=img))['img_shape'] == (10, 1)


def test_resize_of_an_empty_image_names_it():
    with pytest.raises(ValueError, match=r'^Resize: image a\.jpg is empty: shape \(0, 7, 3\)'):
        Resize(scale=(96, 96), keep_ratio=True).transform(
            dict(img=np.zeros((0, 7, 3), np.uint8), img_path='a.jpg'))


def test_float_array_in_0_1_is_refused_with_the_fix(model):
    img01 = np.random.RandomState(0).rand(40, 50, 3).astype(np.float32)
    with pytest.raises(ValueError) as info:
        _infer(model, [np.zeros((40, 50, 3), np.uint8), img01])
    message = str(info.value)
    assert message.startswith('image array #1 is a float32 array with values in [')
    assert 'looks like an image scaled to 0..1' in message
    assert 'pass a uint8 array in 0..255, or multiply the array by 255' in message
    assert len(_infer(model, img01 * 255).pred_instances) > 0  # 0..255 floats are fine


def _box_sample(boxes) -> DetDataSample:
    sample = DetDataSample()
    sample.pred_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                         labels=torch.tensor([0, 1][:len(boxes)]),
                                         scores=torch.tensor([0.9, 0.8][:len(boxes)]))
    return sample


def _visualizer() -> DetLocalVisualizer:
    vis = DetLocalVisualizer.get_instance(f'robust-{uuid.uuid4().hex}')
    vis.dataset_meta = dict(classes=('cat', 'dog'), palette=[(255, 0, 0), (0, 0, 255)])
    return vis


def test_drawing_matches_mmengine_matplotlib_rendering():
    """Boxes and labels land on the same pixels as when matplotlib rendered the image."""
    img = np.random.RandomState(1).randint(0, 255, (90, 120, 3)).astype(np.uint8)
    sample = _box_sample([[10., 12., 70., 60.], [80., 5., 115., 85.]])
    vis = _visualizer()
    ours = vis._draw_instances(img, sample.pred_instances, ('cat', 'dog'),
                               vis.dataset_meta['palette'])
    reference = _visualizer()
    for name in ('set_image', 'get_image'):  # mmengine's: the image drawn by matplotlib
        setattr(reference, name, getattr(Visualizer, name).__get__(reference))
    theirs = reference._draw_instances(img, sample.pred_instances, ('cat', 'dog'),
                                       reference.dataset_meta['palette'])
    assert ours.shape == theirs.shape == img.shape
    assert (ours != img).any(axis=-1).sum() > 300  # something was drawn
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 3  # rounding only


def test_drawing_a_large_image_costs_memory_in_proportion(tmp_path):
    h, w = 1500, 2000
    img = np.full((h, w, 3), 100, np.uint8)
    masks = torch.zeros(1, h, w, dtype=torch.bool)
    masks[0, 400:600, 1200:1500] = True
    sample = _box_sample([[100., 200., 900., 1000.]])
    sample.pred_instances.masks = masks
    vis, out_file = _visualizer(), str(tmp_path / 'big.png')
    tracemalloc.start()
    try:
        vis.add_datasample('big', img, sample, draw_gt=False, out_file=out_file)
        peak = tracemalloc.get_traced_memory()[1]
        print(f'drawing peak: {peak / h / w:.1f} bytes per pixel')
    finally:
        tracemalloc.stop()
    # ~13 bytes per pixel (image copies, PNG encoding); matplotlib's imshow took ~110
    assert peak < 25 * h * w, f'{peak / h / w:.1f} bytes per pixel'
    drawn = mmcv.imread(out_file, channel_order='rgb')
    assert drawn.shape == (h, w, 3)
    assert drawn[600, 100, 0] > 200 and drawn[600, 100, 2] < 100  # left edge of the red box
    fill = drawn[500, 1350].astype(int)  # inside the mask: tinted with (jittered) red
    assert fill[0] > fill[2] + 100, fill
    np.testing.assert_array_equal(drawn[1100:, 1000:], 100)  # untouched far away
