"""MixUp and CachedMixUp on hand-made 20 x 30 (h x w) images.

With ``img_scale=(30, 20)``, ``ratio_range=(1, 1)`` and ``flip_ratio=1`` (a flip needs
U(0, 1) > 1: never) the other image lands unscaled and unshifted on the sample: pixels are
floor(0.5 a + 0.5 b), boxes are the sample's followed by the other's.
"""
import numpy as np
import pytest
from geom_helpers import BOX_KINDS, boxes_array, use_box_kind
from transform_helpers import H, W, assert_masks_match_boxes, make_image, make_results

from mmdet_lite.datasets.transforms import CachedMixUp, MixUp

BOXES = [[4, 10, 12, 20], [20, 2, 28, 9]]
OTHER_BOXES = [[1, 1, 6, 5], [10, 12, 29, 19]]


def sample(boxes=BOXES, labels=(0, 1), img=None, masks=None, img_id=0):
    results = make_results(boxes, labels=list(labels), masks=masks)
    if img is not None:
        results['img'] = img
    results['img_id'] = img_id
    return results


def other(masks=None):
    return sample(OTHER_BOXES, labels=(5, 6), img=(255 - make_image()).astype(np.uint8),
                  masks=masks, img_id=1)


def fixed(**kwargs) -> MixUp:
    return MixUp(img_scale=(W, H), ratio_range=(1., 1.), flip_ratio=1., **kwargs)


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_pixels_are_averaged_and_boxes_concatenated(box_kind):
    results = use_box_kind(sample(), box_kind)
    results['mix_results'] = [use_box_kind(other(), box_kind)]
    results = fixed()(results)
    a = make_image().astype(np.float64)
    b = 255 - a
    np.testing.assert_array_equal(results['img'], np.floor(0.5 * a + 0.5 * b).astype(np.uint8))
    assert results['img'].dtype == np.uint8 and results['img_shape'] == (H, W)
    np.testing.assert_allclose(boxes_array(results, box_kind), BOXES + OTHER_BOXES)
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [0, 1, 5, 6])
    assert results['gt_ignore_flags'].tolist() == [False] * 4


def test_mixing_ratio_is_one_half_on_constant_images():
    results = sample(img=np.full((H, W, 3), 100, np.uint8))
    results['mix_results'] = [sample(OTHER_BOXES, img=np.full((H, W, 3), 51, np.uint8))]
    assert (fixed()(results)['img'] == 75).all()  # 0.5 * 100 + 0.5 * 51 = 75.5 -> 75


def test_flip_mirrors_the_other_image_and_its_boxes():
    results = sample()
    results['mix_results'] = [other()]
    np.random.seed(0)
    results = MixUp(img_scale=(W, H), ratio_range=(1., 1.), flip_ratio=0.)(results)
    flipped = [[W - x2, y1, W - x1, y2] for x1, y1, x2, y2 in OTHER_BOXES]
    np.testing.assert_allclose(results['gt_bboxes'], BOXES + flipped)
    a = make_image().astype(np.float32)
    b = (255 - make_image())[:, ::-1].astype(np.float32)
    np.testing.assert_array_equal(results['img'], (0.5 * a + 0.5 * b).astype(np.uint8))


@pytest.mark.parametrize('seed', range(4))
def test_seeded_scale_flip_and_crop_match_the_replayed_draws(seed):
    # The other image (20 x 30) fits (60, 40) at ratio 2, then the jitter j; the canvas
    # (int(40 j), int(60 j)) is cropped to 20 x 30 at a random offset.
    results = sample(masks='bitmap')
    results['mix_results'] = [other(masks='bitmap')]
    np.random.seed(seed)
    out = MixUp(img_scale=(60, 40), ratio_range=(0.8, 1.6), flip_ratio=0.5)(results)

    rng = np.random.RandomState(seed)
    jit = rng.uniform(0.8, 1.6)
    flip = rng.uniform(0, 1) > 0.5
    canvas_h, canvas_w = int(40 * jit), int(60 * jit)
    y_off = rng.randint(0, canvas_h - H) if canvas_h > H else 0
    x_off = rng.randint(0, canvas_w - W) if canvas_w > W else 0
    boxes = np.array(OTHER_BOXES, dtype=np.float64) * 2 * jit
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, canvas_w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, canvas_h)
    if flip:
        boxes[:, [0, 2]] = canvas_w - boxes[:, [2, 0]]
    boxes -= [x_off, y_off, x_off, y_off]
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, W)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, H)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    np.testing.assert_allclose(out['gt_bboxes'], np.concatenate([BOXES, boxes[keep]]),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 1] +
                                  [lab for lab, k in zip([5, 6], keep) if k])
    # masks moved with their boxes (to a pixel: the bitmaps are resized)
    assert_masks_match_boxes(out, atol=1.5)


def test_other_image_without_boxes_changes_nothing():
    results = sample()
    results['mix_results'] = [sample([], labels=())]
    out = fixed()(results)
    np.testing.assert_array_equal(out['img'], make_image())
    np.testing.assert_allclose(out['gt_bboxes'], BOXES)


def test_mix_results_are_required_and_single():
    with pytest.raises(AssertionError, match='mix_results'):
        fixed()(sample())
    results = sample()
    results['mix_results'] = [other(), other()]
    with pytest.raises(AssertionError, match='2 images'):
        fixed()(results)
    with pytest.raises(AssertionError, match='img_scale'):
        MixUp(img_scale=[640, 640])


def test_get_indexes_skips_images_without_boxes():
    dataset = [dict(gt_bboxes=np.zeros((0, 4)))] * 5 + [dict(gt_bboxes=np.ones((1, 4)))]
    mixup = MixUp(max_iters=15)  # held: mmcv's cache_randomness keeps a weak reference
    np.random.seed(1)
    index = mixup.get_indexes(dataset)
    rng = np.random.RandomState(1)
    draws = [rng.randint(0, 6) for _ in range(15)]
    expected = next((d for d in draws if d == 5), draws[-1])
    assert index == expected


def test_reprs_follow_mmdetection():
    assert repr(MixUp()) == ('MixUp(dynamic_scale=(640, 640), ratio_range=(0.5, 1.5), '
                             'flip_ratio=0.5, pad_val=114.0, max_iters=15, '
                             'bbox_clip_border=True)')
    assert repr(CachedMixUp(max_cached_images=10, random_pop=False, prob=0.5)) == (
        'CachedMixUp(dynamic_scale=(640, 640), ratio_range=(0.5, 1.5), flip_ratio=0.5, '
        'pad_val=114.0, max_iters=15, bbox_clip_border=True, max_cached_images=10, '
        'random_pop=False, prob=0.5)')


# ------------------------------------------------------------------ CachedMixUp

def cached(**kwargs) -> CachedMixUp:
    return CachedMixUp(img_scale=(W, H), ratio_range=(1., 1.), flip_ratio=1., **kwargs)


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_cached_mixup_mixes_the_second_sample_with_the_first(box_kind):
    mixup = cached()
    first = mixup(use_box_kind(other(masks='bitmap'), box_kind))
    np.testing.assert_array_equal(first['img'], 255 - make_image())  # alone: unchanged
    out = mixup(use_box_kind(sample(masks='bitmap'), box_kind))
    a, b = make_image().astype(np.float32), (255 - make_image()).astype(np.float32)
    np.testing.assert_array_equal(out['img'], (0.5 * a + 0.5 * b).astype(np.uint8))
    np.testing.assert_allclose(boxes_array(out, box_kind), BOXES + OTHER_BOXES)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 1, 5, 6])
    if box_kind == 'numpy':
        assert_masks_match_boxes(out, atol=0)
    # the cache holds unmixed copies
    np.testing.assert_array_equal(mixup.results_cache[1]['img'], make_image())


def test_cached_mixup_fifo_and_random_eviction():
    mixup = cached(max_cached_images=3, random_pop=False, prob=0.)
    for k in range(6):
        mixup(sample(img_id=k))
    assert [c['img_id'] for c in mixup.results_cache] == [3, 4, 5]

    mixup = cached(max_cached_images=3, random_pop=True, prob=0.)
    np.random.seed(2)
    rng = np.random.RandomState(2)
    expected = []
    for k in range(8):
        mixup(sample(img_id=k))
        expected.append(k)
        if len(expected) > 3:
            expected.pop(rng.randint(0, len(expected) - 1))
        if len(expected) > 1:
            rng.uniform(0, 1)  # the prob draw (prob=0: no mixing)
        assert [c['img_id'] for c in mixup.results_cache] == expected


def test_cached_mixup_prob_and_cache_size_checks():
    mixup = cached(prob=0.)
    mixup(other())
    out = mixup(sample())
    np.testing.assert_array_equal(out['img'], make_image())
    with pytest.raises(AssertionError, match='max_cached_images'):
        CachedMixUp(max_cached_images=1)
    with pytest.raises(AssertionError, match='prob'):
        CachedMixUp(prob=-0.1)


def test_cached_mixup_get_indexes_excludes_the_newest():
    mixup = CachedMixUp()
    cache = [dict(gt_bboxes=np.ones((1, 4)))] * 4
    np.random.seed(0)
    assert {mixup.get_indexes(cache) for _ in range(40)} == {0, 1, 2}
