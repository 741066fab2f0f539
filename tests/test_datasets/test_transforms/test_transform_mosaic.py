"""Mosaic and CachedMosaic on hand-made 20 x 30 (h x w) images with known boxes.

With ``img_scale=(30, 20)`` each image keeps its size (ratio 1) and the canvas is 40 x 60.
``center_ratio_range=(r, r)`` pins the center at (int(30 r), int(20 r)).

Center (15, 10): each image's inner corner sits on the center, so the shifts are
  top-left (-15, -10), top-right (15, -10), bottom-left (-15, 10), bottom-right (15, 10).
"""
import numpy as np
import pytest
from geom_helpers import BOX_KINDS, boxes_array, use_box_kind
from transform_helpers import H, W, assert_masks_match_boxes, make_image, make_results

from mmdet_lite.datasets.transforms import CachedMosaic, Mosaic
from mmdet_lite.registry import TRANSFORMS

BOXES = [[16, 11, 28, 19], [2, 1, 10, 8]]
SHIFTS = [(-15, -10), (15, -10), (-15, 10), (15, 10)]


def four_images(masks=None):
    """Four samples: image k is make_image() + 40 k, labels 10 k and 10 k + 1."""
    samples = []
    for k in range(4):
        results = make_results(BOXES, labels=[10 * k, 10 * k + 1], ignore=[k == 2, False],
                               masks=masks)
        results['img'] = results['img'] + np.uint8(40 * k)
        results['img_id'] = k
        samples.append(results)
    return samples


def mosaic_input(masks=None, kind='numpy'):
    first, *others = four_images(masks)
    first['mix_results'] = [use_box_kind(o, kind) for o in others]
    return use_box_kind(first, kind)


def expected_boxes(clip=True):
    """Each image's boxes shifted; clipped to the 40 x 60 canvas; empty ones dropped."""
    boxes, labels = [], []
    for k, (dx, dy) in enumerate(SHIFTS):
        for j, (x1, y1, x2, y2) in enumerate(BOXES):
            box = np.array([x1 + dx, y1 + dy, x2 + dx, y2 + dy], dtype=np.float64)
            clipped = box.copy()
            clipped[0::2] = clipped[0::2].clip(0, 60)
            clipped[1::2] = clipped[1::2].clip(0, 40)
            if clipped[2] > clipped[0] and clipped[3] > clipped[1]:
                boxes.append(clipped if clip else box)
                labels.append(10 * k + j)
    return np.array(boxes), labels


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_pinned_center_places_the_four_images_and_their_boxes(box_kind):
    results = Mosaic(img_scale=(W, H), center_ratio_range=(0.5, 0.5))(
        mosaic_input(kind=box_kind))
    boxes, labels = expected_boxes()
    # by hand: top-left [16,11,28,19] -> [1,1,13,9]; [2,1,10,8] -> [-13,-9,-5,-2], dropped
    np.testing.assert_allclose(boxes[:2], [[1, 1, 13, 9], [31, 1, 43, 9]])
    np.testing.assert_allclose(boxes_array(results, box_kind), boxes)
    np.testing.assert_array_equal(results['gt_bboxes_labels'], labels)
    np.testing.assert_array_equal(results['gt_ignore_flags'], [lab == 20 for lab in labels])
    assert labels == [0, 10, 20, 30, 31]

    img = results['img']
    assert img.shape == (2 * H, 2 * W, 3) and results['img_shape'] == (2 * H, 2 * W)
    source = make_image()
    np.testing.assert_array_equal(img[0:10, 0:15], source[10:20, 15:30])        # top-left
    np.testing.assert_array_equal(img[0:10, 15:45], source[10:20, 0:30] + 40)   # top-right
    np.testing.assert_array_equal(img[10:30, 0:15], source[0:20, 15:30] + 80)   # bottom-left
    np.testing.assert_array_equal(img[10:30, 15:45], source[:, :] + 120)        # bottom-right
    assert (img[30:, :] == 114).all() and (img[:, 45:] == 114).all()


def test_center_on_the_canvas_middle_keeps_every_box():
    results = Mosaic(img_scale=(W, H), center_ratio_range=(1.0, 1.0))(mosaic_input())
    offsets = [(0, 0), (30, 0), (0, 20), (30, 20)]
    expected = [[x1 + dx, y1 + dy, x2 + dx, y2 + dy]
                for dx, dy in offsets for x1, y1, x2, y2 in BOXES]
    np.testing.assert_allclose(results['gt_bboxes'], expected)
    np.testing.assert_array_equal(results['img'][20:, 30:], make_image() + 120)


def test_images_are_resized_to_fit_img_scale():
    # 10 x 15 images fit (30, 20) at ratio 2: boxes double before the shift.
    first, *others = four_images()
    for sample in [first, *others]:
        sample['img'] = sample['img'][::2, ::2].copy()
        sample['gt_bboxes'] = sample['gt_bboxes'] / 2
    first['mix_results'] = others
    results = Mosaic(img_scale=(W, H), center_ratio_range=(1.0, 1.0))(first)
    np.testing.assert_allclose(results['gt_bboxes'][:2], BOXES)
    assert results['img'].shape == (2 * H, 2 * W, 3)


def test_masks_follow_their_boxes():
    results = Mosaic(img_scale=(W, H), center_ratio_range=(0.5, 0.5))(mosaic_input('bitmap'))
    assert_masks_match_boxes(results, atol=0)
    assert results["gt_masks"].masks.shape == (5, 2 * H, 2 * W)


def test_without_clipping_boxes_keep_their_outside_part():
    results = Mosaic(img_scale=(W, H), center_ratio_range=(0.5, 0.5),
                     bbox_clip_border=False)(mosaic_input())
    boxes, _ = expected_boxes(clip=False)
    np.testing.assert_allclose(results['gt_bboxes'], boxes)
    assert results['gt_bboxes'][0].tolist() == [1, 1, 13, 9]


def test_seeded_center_matches_the_replayed_draws():
    for seed in range(3):
        np.random.seed(seed)
        rng = np.random.RandomState(seed)
        rng.uniform(0, 1)  # the prob draw
        cx, cy = int(rng.uniform(0.5, 1.5) * W), int(rng.uniform(0.5, 1.5) * H)
        results = Mosaic(img_scale=(W, H))(mosaic_input())
        # the bottom-right image starts at the center
        np.testing.assert_array_equal(results['img'][cy:cy + 5, cx:cx + 5],
                                      make_image()[:5, :5] + 120)


def test_prob_zero_leaves_the_sample_and_missing_mix_results_raise():
    results = Mosaic(prob=0.)(make_results(BOXES, masks=None))
    np.testing.assert_array_equal(results['img'], make_image())
    with pytest.raises(AssertionError, match="mix_results"):
        Mosaic()(make_results(BOXES, masks=None))
    with pytest.raises(AssertionError, match='img_scale'):
        Mosaic(img_scale=[640, 640])
    with pytest.raises(AssertionError, match='prob'):
        Mosaic(prob=1.5)


def test_get_indexes_draws_three_indices_of_the_dataset():
    mosaic = Mosaic()  # held: mmcv's cache_randomness keeps a weak reference
    np.random.seed(3)
    indexes = mosaic.get_indexes(list(range(7)))
    assert indexes == list(np.random.RandomState(3).randint(0, 7, size=3))


def test_reprs_follow_mmdetection():
    assert repr(Mosaic()) == ('Mosaic(img_scale=(640, 640), center_ratio_range=(0.5, 1.5), '
                              'pad_val=114.0, prob=1.0)')
    assert repr(TRANSFORMS.build(dict(type='CachedMosaic', max_cached_images=10,
                                      random_pop=False))) == (
        'CachedMosaic(img_scale=(640, 640), center_ratio_range=(0.5, 1.5), pad_val=114.0, '
        'prob=1.0, max_cached_images=10, random_pop=False)')


# ------------------------------------------------------------------ CachedMosaic

def test_cached_mosaic_waits_for_five_cached_samples_then_mixes():
    mosaic = CachedMosaic(img_scale=(W, H), center_ratio_range=(1.0, 1.0),
                          max_cached_images=4 + 2, random_pop=False)
    samples = four_images() + four_images()
    for k, sample in enumerate(samples[:4]):
        out = mosaic(sample)
        assert out['img'].shape == (H, W, 3), k  # unchanged while the cache has <= 4
    np.random.seed(0)
    rng = np.random.RandomState(0)
    rng.uniform(0, 1)  # the prob draw comes first
    indices = [rng.randint(0, 4) for _ in range(3)]
    out = mosaic(samples[4])
    assert out['img'].shape == (2 * H, 2 * W, 3)
    # The other quadrants come from the cache (never the newest, index 4).
    offsets = [(30, 0), (0, 20), (30, 20)]
    for (dx, dy), index in zip(offsets, indices):
        np.testing.assert_array_equal(out['img'][dy:dy + H, dx:dx + W],
                                      samples[index]['img'])
    # the cached copies were not modified
    assert all(c['img'].shape == (H, W, 3) for c in mosaic.results_cache)


def test_cached_mosaic_fifo_eviction_keeps_the_latest():
    mosaic = CachedMosaic(img_scale=(W, H), max_cached_images=4, random_pop=False, prob=0.)
    for k in range(7):
        sample = make_results(BOXES, masks=None)
        sample['img_id'] = k
        mosaic(sample)
    assert [c['img_id'] for c in mosaic.results_cache] == [3, 4, 5, 6]


def test_cached_mosaic_random_eviction_never_drops_the_newest():
    # A full cache of 4 stays at 4 entries, so the call returns before any other draw:
    # the only draw per call is the evicted index, in [0, 4).
    mosaic = CachedMosaic(img_scale=(W, H), max_cached_images=4, random_pop=True)
    np.random.seed(5)
    rng = np.random.RandomState(5)
    expected = []
    for k in range(9):
        sample = make_results(BOXES, masks=None)
        sample['img_id'] = k
        mosaic(sample)
        expected.append(k)
        if len(expected) > 4:
            expected.pop(rng.randint(0, len(expected) - 1))
        assert [c['img_id'] for c in mosaic.results_cache] == expected
    assert expected[-1] == 8 and expected != [5, 6, 7, 8]


def test_cached_mosaic_needs_four_cache_slots():
    with pytest.raises(AssertionError, match='max_cached_images'):
        CachedMosaic(max_cached_images=3)


def test_cached_mosaic_get_indexes_excludes_the_newest():
    mosaic = CachedMosaic()
    np.random.seed(0)
    drawn = {i for _ in range(50) for i in mosaic.get_indexes(list(range(5)))}
    assert drawn == {0, 1, 2, 3}


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_cached_mosaic_keeps_the_box_kind_and_masks(box_kind):
    mosaic = CachedMosaic(img_scale=(W, H), center_ratio_range=(0.5, 0.5),
                          max_cached_images=5)
    for sample in four_images('bitmap'):
        mosaic(use_box_kind(sample, box_kind))
    out = mosaic(use_box_kind(four_images('bitmap')[0], box_kind))
    assert out['img'].shape == (2 * H, 2 * W, 3)
    boxes_array(out, box_kind)
    if box_kind == 'numpy':
        assert_masks_match_boxes(out, atol=0)
