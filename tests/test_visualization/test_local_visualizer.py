"""DetLocalVisualizer and the palette helpers."""
import glob
import uuid

import mmcv
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import VISUALIZERS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks
from mmdet_lite.visualization import DetLocalVisualizer, get_palette
from mmdet_lite.visualization.palette import _get_adaptive_scales, jitter_color

H, W = 60, 80
GREY = 100
RED, BLUE = (255, 0, 0), (0, 0, 255)


def _visualizer(**kwargs) -> DetLocalVisualizer:
    # get_instance is global per name: a fresh name gives a fresh visualizer per test
    vis = DetLocalVisualizer.get_instance(f'test-{uuid.uuid4().hex}', **kwargs)
    vis.dataset_meta = dict(classes=('cat', 'dog'), palette=[RED, BLUE])
    return vis


def _image() -> np.ndarray:
    return np.full((H, W, 3), GREY, np.uint8)


def _square_mask(n: int = 1) -> np.ndarray:
    mask = np.zeros((n, H, W), np.uint8)
    mask[:, 20:40, 20:40] = 1
    return mask


def _sample() -> DetDataSample:
    """GT: one 'cat' box + mask; predictions: a 'dog' at 0.9 and a low-score 'cat' at 0.1."""
    sample = DetDataSample()
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10., 10., 50., 50.]]), labels=torch.tensor([0]),
        masks=BitmapMasks(_square_mask(), H, W))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[10., 10., 50., 50.], [62., 5., 76., 25.]]),
        labels=torch.tensor([1, 0]), scores=torch.tensor([0.9, 0.1]),
        masks=torch.from_numpy(np.concatenate([_square_mask(), np.zeros((1, H, W), np.uint8)])
                               ).bool())
    return sample


def _draw(vis, sample, tmp_path, **kwargs) -> np.ndarray:
    out_file = str(tmp_path / 'drawn.png')
    vis.add_datasample('img', _image(), sample, out_file=out_file, **kwargs)
    return mmcv.imread(out_file, channel_order='rgb')


def test_gt_and_pred_are_side_by_side(tmp_path):
    drawn = _draw(_visualizer(), _sample(), tmp_path)
    assert drawn.shape == (H, 2 * W, 3)


@pytest.mark.parametrize('draw_gt,draw_pred', [(True, False), (False, True)])
def test_only_one_side_keeps_image_width(tmp_path, draw_gt, draw_pred):
    drawn = _draw(_visualizer(), _sample(), tmp_path, draw_gt=draw_gt, draw_pred=draw_pred)
    assert drawn.shape == (H, W, 3)


def test_box_edges_are_drawn(tmp_path):
    drawn = _draw(_visualizer(), _sample(), tmp_path)
    # left edge of the [10, 10, 50, 50] box at x=10, in the GT half and the prediction half
    assert (drawn[45, 10] != GREY).any()
    assert (drawn[45, W + 10] != GREY).any()


def test_masks_are_tinted_with_the_class_colour_and_background_is_unchanged(tmp_path):
    drawn = _draw(_visualizer(), _sample(), tmp_path)
    gt_fill, pred_fill = drawn[30, 30].astype(int), drawn[30, W + 30].astype(int)
    assert gt_fill[0] > gt_fill[1] + 100  # GT label 0: red
    assert pred_fill[2] > pred_fill[0] + 100  # prediction label 1: blue
    # far from every box and mask the image is untouched, in both halves
    np.testing.assert_array_equal(drawn[55:, 55:W], GREY)
    np.testing.assert_array_equal(drawn[55:, W + 55:], GREY)


def test_predictions_below_score_thr_are_not_drawn(tmp_path):
    # the 0.1 'cat' box is [62, 5, 76, 25]: its area in the prediction half stays grey
    drawn = _draw(_visualizer(), _sample(), tmp_path, pred_score_thr=0.3)
    np.testing.assert_array_equal(drawn[0:30, W + 58:2 * W], GREY)
    drawn = _draw(_visualizer(), _sample(), tmp_path, pred_score_thr=0.05)
    assert (drawn[15, W + 62] != GREY).any()  # left edge of the now-visible box


def test_polygon_gt_masks_and_mask_only_instances(tmp_path):
    sample = DetDataSample()
    square = np.array([20, 20, 40, 20, 40, 40, 20, 40], np.float64)
    sample.gt_instances = InstanceData(labels=torch.tensor([1]),
                                       masks=PolygonMasks([[square]], H, W))
    drawn = _draw(_visualizer(), sample, tmp_path, draw_pred=False)
    fill = drawn[22, 30].astype(int)  # inside the mask, above the centred label
    assert fill[2] > fill[0] + 100  # label 1: blue
    np.testing.assert_array_equal(drawn[50:, 50:], GREY)


def test_without_out_file_images_go_to_the_vis_backends(tmp_path):
    vis = _visualizer(vis_backends=[dict(type='LocalVisBackend')], save_dir=str(tmp_path))
    vis.add_datasample('val_img', _image(), _sample(), step=7)
    [saved] = glob.glob(str(tmp_path / '**' / 'val_img_7.png'), recursive=True)
    assert mmcv.imread(saved).shape == (H, 2 * W, 3)


def test_build_from_registry_with_colours():
    vis = VISUALIZERS.build(dict(type='DetLocalVisualizer', name=f'reg-{uuid.uuid4().hex}',
                                 bbox_color='green', line_width=2, alpha=0.5))
    assert isinstance(vis, DetLocalVisualizer)
    assert (vis.bbox_color, vis.line_width, vis.alpha) == ('green', 2, 0.5)
    assert vis.dataset_meta == {}


def test_bad_inputs_raise_clear_errors(tmp_path):
    vis = _visualizer()
    sample = _sample()
    sample.gt_instances.labels = torch.tensor([5])
    with pytest.raises(ValueError, match='label 5 is out of range for the 2 classes'):
        vis.add_datasample('img', _image(), sample, draw_pred=False)
    sample = _sample()
    sample.gt_instances.masks = BitmapMasks(np.zeros((1, 10, 10), np.uint8), 10, 10)
    with pytest.raises(ValueError, match=r'masks must have shape \[N, 60, 80\]'):
        vis.add_datasample('img', _image(), sample, draw_pred=False)
    with pytest.raises(ValueError, match='image must be an RGB array'):
        vis.add_datasample('img', np.zeros((H, W), np.uint8), _sample())
    with pytest.raises(ValueError, match='alpha must be in'):
        DetLocalVisualizer(name=f'bad-{uuid.uuid4().hex}', alpha=2)


def test_get_palette_forms():
    assert get_palette([(1, 2, 3), [4, 5, 6]], 2) == [(1, 2, 3), (4, 5, 6)]
    assert get_palette((9, 8, 7), 3) == [(9, 8, 7)] * 3
    assert get_palette('red', 2) == [(255, 0, 0)] * 2
    assert get_palette('green', 1) == [(0, 255, 0)]  # mmcv's green, not matplotlib's
    assert len(get_palette('coco', 80)) == 80


def test_random_palette_is_fixed_and_leaves_global_rng_alone():
    state = np.random.get_state()[1].copy()
    first = get_palette('random', 5)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    assert first == get_palette(None, 5)
    assert len(first) == 5 and all(0 <= c <= 255 for color in first for c in color)


def test_get_palette_bad_inputs():
    with pytest.raises(ValueError, match='palette has 1 colours but 2 classes'):
        get_palette([(1, 2, 3)], 2)
    with pytest.raises(ValueError, match="palette 'no-such-colour' is not a known palette"):
        get_palette('no-such-colour', 2)
    with pytest.raises(ValueError, match=r'palette\[0\] must be an RGB colour'):
        get_palette([(1, 2, 300)], 1)
    with pytest.raises(TypeError, match='num_classes must be an int'):
        get_palette('random', 2.0)
    with pytest.raises(TypeError, match='palette must be'):
        get_palette(3, 2)


def test_adaptive_scales():
    # 0.5 + (area - 800) / 29200, clipped to [0.5, 1.0]
    scales = _get_adaptive_scales(np.array([0., 800., 7100., 15400., 1e6]))
    np.testing.assert_allclose(scales, [0.5, 0.5, 0.5 + 6300 / 29200, 1.0, 1.0])


def test_jitter_color_is_reproducible_with_a_seeded_rng():
    a = jitter_color((100, 100, 100), np.random.RandomState(3))
    b = jitter_color((100, 100, 100), np.random.RandomState(3))
    assert a == b and a != (100, 100, 100)
    assert all(0 <= c <= 255 for c in jitter_color((255, 255, 0), np.random.RandomState(0)))
