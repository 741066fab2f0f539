"""Multi-scale resizes and RandomChoice reach mmdet_lite's mask-aware Resize and RandomCrop,
with the default scope set (as in a Runner) and without one."""
import mmcv.transforms
import numpy as np
import pytest
from mmengine import DefaultScope
from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS
from transform_helpers import (BOX_KINDS, assert_homography_maps_boxes,
                               assert_masks_match_boxes, boxes_as_array, make_results,
                               with_box_kind)

from mmdet_lite.datasets.transforms import (RandomChoice, RandomChoiceResize, RandomCrop,
                                            RandomResize, Resize)
from mmdet_lite.registry import TRANSFORMS

BOXES = [[3, 4, 9, 16], [10, 0, 30, 20]]


@pytest.fixture
def no_default_scope(monkeypatch):
    """Simulate a process where no default scope was ever set."""
    monkeypatch.setattr(DefaultScope, 'get_current_instance', classmethod(lambda cls: None))


def test_random_choice_resize_with_default_scope_resizes_boxes_and_masks():
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        # Built from mmengine's root registry, as a Runner does with default_scope set.
        transform = ROOT_TRANSFORMS.build(
            dict(type='RandomChoiceResize', scales=[(60, 50)], keep_ratio=True))
        assert isinstance(transform, RandomChoiceResize)
        assert type(transform.resize) is Resize
        results = transform(make_results(BOXES))
    assert results['img_shape'] == (40, 60)
    assert results['scale_idx'] == 0
    np.testing.assert_allclose(results['gt_bboxes'], [[6, 8, 18, 32], [20, 0, 60, 40]])
    assert_masks_match_boxes(results)


def test_mmcv_random_resize_picks_our_resize_under_default_scope():
    # mmcv's own class looks 'Resize' up through the default scope.
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        transform = mmcv.transforms.RandomResize(scale=(30, 20), ratio_range=(2.0, 2.0))
    assert type(transform.resize) is Resize


def test_random_resize_without_default_scope(no_default_scope):
    transform = TRANSFORMS.build(
        dict(type='RandomResize', scale=(30, 20), ratio_range=(2.0, 2.0), keep_ratio=True))
    assert type(transform.resize) is Resize
    results = transform(make_results(BOXES, masks='polygon'))
    assert results['img_shape'] == (40, 60)
    assert results['scale'] == (60, 40)
    np.testing.assert_allclose(results['gt_bboxes'], [[6, 8, 18, 32], [20, 0, 60, 40]])
    assert_masks_match_boxes(results)


def test_random_resize_samples_between_two_scales():
    transform = RandomResize(scale=[(40, 10), (50, 16)], keep_ratio=False)
    for _ in range(5):
        results = transform(make_results(BOXES, masks=None))
        h, w = results['img_shape']
        assert 40 <= w <= 50 and 10 <= h <= 16
        w_sf, h_sf = results['scale_factor']
        np.testing.assert_allclose(results['gt_bboxes'][0], [3 * w_sf, 4 * h_sf, 9 * w_sf,
                                                             16 * h_sf], rtol=1e-5)


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_random_resizes_record_homography_through_inner_resize(kind):
    for transform in (RandomResize(scale=[(40, 10), (50, 16)]),
                      RandomChoiceResize(scales=[(60, 10), (15, 40)], keep_ratio=True)):
        results = transform(with_box_kind(make_results(BOXES), kind))
        w_sf, h_sf = results['scale_factor']
        np.testing.assert_allclose(results['homography_matrix'],
                                   [[w_sf, 0, 0], [0, h_sf, 0], [0, 0, 1]], rtol=1e-6)
        assert_homography_maps_boxes(BOXES, results, kind)
        assert_masks_match_boxes(results)
        boxes_as_array(results, kind)


def test_random_choice_resize_picks_from_candidates():
    transform = RandomChoiceResize(scales=[(60, 10), (15, 40)])
    shapes = {transform(make_results(BOXES, masks=None))['img_shape'] for _ in range(20)}
    assert shapes == {(10, 60), (40, 15)}


def test_random_choice_builds_our_transforms_without_default_scope(no_default_scope):
    # RandomCrop exists only in mmdet_lite's registry, not in mmengine's root.
    transform = TRANSFORMS.build(dict(
        type='RandomChoice',
        transforms=[[dict(type='RandomCrop', crop_size=(5, 5))],
                    [dict(type='RandomChoiceResize', scales=[(60, 10)]),
                     dict(type='RandomCrop', crop_size=(60, 10))]],
        prob=[0.0, 1.0]))
    assert isinstance(transform.transforms[0].transforms[0], RandomCrop)
    results = transform(make_results(BOXES))
    assert results['img_shape'] == (10, 60)
    np.testing.assert_allclose(results['gt_bboxes'], [[6, 2, 18, 8], [20, 0, 60, 10]])
    assert_masks_match_boxes(results)


def test_bad_arguments():
    # mmcv asserts these (when sampling); ours already at build time.
    with pytest.raises(AssertionError, match='ratio_range'):
        RandomResize(scale=(30, 20))
    with pytest.raises(AssertionError, match='ratio_range'):
        RandomResize(scale=(30, 20), ratio_range=(2.0, 1.0))
    with pytest.raises(TypeError, match='scale'):
        RandomResize(scale='big', ratio_range=(1.0, 2.0))
    with pytest.raises(TypeError, match='scales'):
        RandomChoiceResize(scales=[(1, 2, 3)])
    with pytest.raises(ValueError, match='prob'):
        RandomChoice(transforms=[[], []], prob=[0.5])
    with pytest.raises(KeyError, match='Resizee'):
        RandomChoiceResize(scales=[(10, 10)], resize_type='Resizee')


def test_repr():
    assert repr(RandomResize(scale=(30, 20), ratio_range=(0.5, 2.0), keep_ratio=True)) == (
        "RandomResize(scale=(30, 20), ratio_range=(0.5, 2.0), "
        "resize_cfg={'type': 'Resize', 'keep_ratio': True})")
    assert repr(RandomChoiceResize(scales=[(60, 10)])) == (
        "RandomChoiceResize(scales=[(60, 10)], resize_cfg={'type': 'Resize'})")
    assert repr(RandomChoice([[Resize(scale=(5, 5))]])).startswith('RandomChoice(transforms=')
