"""CutOut and RandomErasing on the 20 x 30 (h x w) sample: image, boxes, masks, semantic map."""
import numpy as np
import pytest
from transform_helpers import H, W, make_image, make_results

from mmdet_lite.datasets.transforms import CutOut, RandomErasing
from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import HorizontalBoxes


def filled_region(img: np.ndarray, value) -> np.ndarray:
    """bool [H, W]: pixels equal to ``value`` in every channel."""
    return np.all(img == np.asarray(value), axis=-1)


# ----------------------------------------------------------------------------------- CutOut
@pytest.mark.parametrize('seed', range(5))
def test_cutout_hole_reaches_the_border(seed):
    # A hole larger than the image runs from its random corner to the bottom-right edge.
    np.random.seed(seed)
    img = make_image() + 1  # no pixel equals the fill value 0 ... except wrapped ones
    img[img == 0] = 1
    out = CutOut(n_holes=1, cutout_shape=(100, 100))(dict(img=img.copy()))['img']
    hole = filled_region(out, (0, 0, 0))
    ys, xs = np.nonzero(hole)
    y1, x1 = ys.min(), xs.min()
    expected = np.zeros((H, W), dtype=bool)
    expected[y1:, x1:] = True
    np.testing.assert_array_equal(hole, expected)
    np.testing.assert_array_equal(out[~hole], img[~hole])


def test_cutout_shape_and_ratio_sizes():
    img = np.full((H, W, 3), 7, dtype=np.uint8)
    np.random.seed(0)
    transform = CutOut(n_holes=1, cutout_ratio=(0.2, 0.25), fill_in=(9, 9, 9))
    for _ in range(20):
        hole = filled_region(transform(dict(img=img.copy()))['img'], (9, 9, 9))
        ys, xs = np.nonzero(hole)
        # int(0.2 * 30) = 6 wide and int(0.25 * 20) = 5 high, unless cut by the border
        width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        assert width == 6 or xs.max() == W - 1
        assert height == 5 or ys.max() == H - 1
        assert hole.sum() == width * height


def test_cutout_number_of_holes_range():
    img = np.full((200, 200, 3), 7, dtype=np.uint8)
    counts = set()
    for seed in range(30):
        np.random.seed(seed)
        out = CutOut(n_holes=(0, 2), cutout_shape=[(1, 1)], fill_in=(0, 0, 0))(
            dict(img=img.copy()))['img']
        counts.add(int(filled_region(out, (0, 0, 0)).sum()))
    assert counts <= {0, 1, 2} and {0, 2} <= counts


def test_cutout_keeps_boxes_and_box_type():
    results = make_results([[3, 2, 9, 8]])
    results['gt_bboxes'] = HorizontalBoxes(results['gt_bboxes'])
    out = CutOut(n_holes=2, cutout_shape=(4, 4))(results)
    assert isinstance(out['gt_bboxes'], HorizontalBoxes)
    np.testing.assert_array_equal(out['gt_bboxes'].numpy(), [[3, 2, 9, 8]])
    out = CutOut(n_holes=2, cutout_shape=(4, 4))(make_results([[3, 2, 9, 8]]))
    assert isinstance(out['gt_bboxes'], np.ndarray)


def test_cutout_repr():
    assert repr(CutOut(n_holes=(1, 3), cutout_shape=(4, 4))) == (
        'CutOut(n_holes=(1, 3), cutout_shape=[(4, 4)], fill_in=(0, 0, 0))')
    assert repr(TRANSFORMS.build(dict(type='CutOut', n_holes=2,
                                      cutout_ratio=[(0.1, 0.1), (0.2, 0.2)]))) == (
        'CutOut(n_holes=(2, 2), cutout_ratio=[(0.1, 0.1), (0.2, 0.2)], fill_in=(0, 0, 0))')


@pytest.mark.parametrize('kwargs', [
    dict(n_holes=1),  # neither shape nor ratio
    dict(n_holes=1, cutout_shape=(2, 2), cutout_ratio=(0.1, 0.1)),  # both
    dict(n_holes=1, cutout_shape=2),  # not a tuple / list
    dict(n_holes=(2, 1), cutout_shape=(2, 2)),  # min > max
    dict(n_holes=(1, 2, 3), cutout_shape=(2, 2)),
])
def test_cutout_invalid_args(kwargs):
    with pytest.raises(AssertionError):
        CutOut(**kwargs)


# ---------------------------------------------------------------------------- RandomErasing
BOXES = [[0, 0, 10, 10], [12, 2, 22, 12], [20, 10, 30, 20]]


def erase_with(patches, **kwargs):
    transform = RandomErasing(n_patches=1, ratio=0.3, **kwargs)
    transform._get_patches = lambda img_shape: np.array(patches, dtype=np.int64)
    return transform


@pytest.mark.parametrize('box_kind', ['numpy', 'hbox'])
def test_erasing_drops_mostly_covered_boxes(box_kind):
    results = make_results(BOXES, labels=[5, 6, 7], ignore=[False, True, False])
    results['gt_seg_map'] = np.ones((H, W), dtype=np.uint8)
    if box_kind == 'hbox':
        results['gt_bboxes'] = HorizontalBoxes(results['gt_bboxes'])
    # Patch A covers box 0 wholly; patch B covers 50 of box 1's 100 px and 4 of box 2's.
    patches = [[0, 0, 11, 11], [12, 2, 17, 12]]
    out = erase_with(patches, bbox_erased_thr=0.5)(results)

    boxes = out['gt_bboxes'].numpy() if box_kind == 'hbox' else out['gt_bboxes']
    assert isinstance(out['gt_bboxes'], HorizontalBoxes if box_kind == 'hbox' else np.ndarray)
    np.testing.assert_array_equal(boxes, [[20, 10, 30, 20]])
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [7])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False])
    assert len(out['gt_masks']) == 1

    erased = np.zeros((H, W), dtype=bool)
    erased[0:11, 0:11] = True
    erased[2:12, 12:17] = True
    assert np.all(out['img'][erased] == 128)
    np.testing.assert_array_equal(out['img'][~erased], make_image()[~erased])
    np.testing.assert_array_equal(out['gt_seg_map'], np.where(erased, 255, 1))
    # box 2's rectangle mask [10:20, 20:30] is untouched by these patches
    np.testing.assert_array_equal(out['gt_masks'].masks[0, 10:20, 20:30], 1)


def test_erasing_threshold_is_strict_and_masks_are_cut():
    results = make_results(BOXES)
    # 50 of box 1's 100 px: kept below thr 0.6, and its mask loses the patch.
    out = erase_with([[12, 2, 17, 12]], bbox_erased_thr=0.6, img_border_value=(1, 2, 3),
                     mask_border_value=0)(results)
    np.testing.assert_array_equal(out['gt_bboxes'], BOXES)
    mask = out['gt_masks'].masks[1]
    assert mask.sum() == 50 and mask[2:12, 12:17].sum() == 0
    np.testing.assert_array_equal(out['img'][5, 13], [1, 2, 3])

    out = erase_with([[12, 2, 17, 12]], bbox_erased_thr=0.5)(make_results(BOXES))
    np.testing.assert_array_equal(out['gt_bboxes'], [BOXES[0], BOXES[2]])


def test_erasing_overlap_of_patches_adds_up():
    # Two patches each covering 50 % of box 0 (the same half): summed coverage is 100 %.
    results = make_results(BOXES[:1], masks=None)
    out = erase_with([[0, 0, 5, 10], [0, 0, 5, 10]], bbox_erased_thr=0.9)(results)
    assert len(out['gt_bboxes']) == 0 and out['gt_bboxes'].shape == (0, 4)


@pytest.mark.parametrize('squared', [True, False])
def test_erasing_patch_draws(squared):
    transform = RandomErasing(n_patches=(1, 4), ratio=(0.1, 0.5), squared=squared)
    for seed in range(10):
        np.random.seed(seed)
        patches = transform._get_patches((H, W))
        np.random.seed(seed)
        n = np.random.randint(1, 5)
        assert patches.shape == (n, 4)
        for x1, y1, x2, y2 in patches:
            ratio_h = np.random.random() * 0.4 + 0.1
            ratio_w = ratio_h if squared else np.random.random() * 0.4 + 0.1
            expected_w, expected_h = int(W * ratio_w), int(H * ratio_h)
            assert (x2 - x1, y2 - y1) == (expected_w, expected_h)
            assert (x1, y1) == (np.random.randint(0, W - expected_w),
                                np.random.randint(0, H - expected_h))
            assert 0 <= x1 and x2 <= W and 0 <= y1 and y2 <= H


def test_erasing_end_to_end_keeps_instances_aligned():
    for seed in range(5):
        np.random.seed(seed)
        out = RandomErasing(n_patches=(1, 5), ratio=(0, 0.4))(make_results(BOXES))
        n = len(out['gt_bboxes'])
        assert len(out['gt_bboxes_labels']) == len(out['gt_ignore_flags']) == n
        assert len(out['gt_masks']) == n


def test_erasing_polygon_masks_unsupported():
    with pytest.raises(TypeError, match='BitmapMasks'):
        erase_with([[0, 0, 2, 2]])(make_results(BOXES, masks='polygon'))


def test_erasing_repr():
    assert repr(TRANSFORMS.build(dict(type='RandomErasing', n_patches=(1, 5),
                                      ratio=(0, 0.2)))) == (
        'RandomErasing(n_patches=(1, 5), ratio=(0, 0.2), squared=True, bbox_erased_thr=0.9, '
        'img_border_value=128, mask_border_value=0, seg_ignore_label=255)')
    assert repr(RandomErasing(n_patches=2, ratio=0.1)).startswith(
        'RandomErasing(n_patches=(2, 2), ratio=(0.1, 0.1),')


@pytest.mark.parametrize('kwargs', [
    dict(n_patches=(3, 1), ratio=0.1), dict(n_patches=(1, 2, 3), ratio=0.1),
    dict(n_patches=1, ratio=(0.5, 0.2)), dict(n_patches=1, ratio=(0.1, 1.5)),
    dict(n_patches=1, ratio=(-0.1, 0.2))
])
def test_erasing_invalid_args(kwargs):
    with pytest.raises(AssertionError):
        RandomErasing(**kwargs)
