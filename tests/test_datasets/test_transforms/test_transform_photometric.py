"""PhotoMetricDistortion and YOLOXHSVRandomAug: draws pinned, checked against colorsys / hand."""
import colorsys

import numpy as np
import pytest
from transform_helpers import make_results

from mmdet_lite.datasets.transforms import PhotoMetricDistortion, YOLOXHSVRandomAug
from mmdet_lite.registry import TRANSFORMS


def pinned(transform, **draws):
    """Replace the transform's draws by fixed values (all flags off unless given)."""
    values = dict(mode=0, brightness=0, contrast=0, saturation_flag=0, hue_flag=0, swap=0,
                  delta=0.0, alpha=1.0, saturation=1.0, hue=0.0,
                  permutation=np.array([0, 1, 2]))
    values.update(draws)
    flags = (values['mode'], values['brightness'], values['contrast'],
             values['saturation_flag'], values['hue_flag'], values['swap'], values['delta'],
             values['alpha'], values['saturation'], values['hue'], values['permutation'])
    transform._random_flags = lambda: flags
    return transform


def reference_distortion(img, mode, delta, alpha, saturation, hue, permutation):
    """Pixel-by-pixel with colorsys (H in degrees, S in [0, 1], V in pixel units)."""
    out = np.empty(img.shape, dtype=np.float64)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            b, g, r = img[y, x].astype(np.float64) + delta
            if mode == 1:
                b, g, r = b * alpha, g * alpha, r * alpha
            h, s, v = colorsys.rgb_to_hsv(r, g, b)
            h = (h * 360 + hue) % 360
            r, g, b = colorsys.hsv_to_rgb(h / 360, s * saturation, v)
            if mode == 0:
                b, g, r = b * alpha, g * alpha, r * alpha
            out[y, x] = (b, g, r)
    return out[..., permutation]


def moderate_image() -> np.ndarray:
    """Values in [60, 180]: saturation stays below 1 after the factors used here."""
    return np.random.RandomState(2).randint(60, 181, (6, 7, 3)).astype(np.uint8)


@pytest.mark.parametrize('mode', [0, 1])
def test_all_distortions_match_colorsys(mode):
    img = moderate_image()
    draws = dict(mode=mode, brightness=1, contrast=1, saturation_flag=1, hue_flag=1, swap=1,
                 delta=10.0, alpha=0.8, saturation=1.3, hue=-30.0,
                 permutation=np.array([2, 0, 1]))
    out = pinned(PhotoMetricDistortion(), **draws)(dict(img=img.copy()))['img']
    assert out.dtype == np.float32
    expected = reference_distortion(img, mode, 10.0, 0.8, 1.3, -30.0, [2, 0, 1])
    np.testing.assert_allclose(out, expected, atol=0.05)


def test_flags_off_keeps_the_image_as_float():
    img = moderate_image()
    out = pinned(PhotoMetricDistortion(), delta=20.0, alpha=1.4)(dict(img=img))['img']
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, img, atol=1e-3)


def test_brightness_and_contrast_on_grey_by_hand():
    # Grey (S = 0) is untouched by saturation and hue: out = (x + delta) * alpha.
    img = np.full((2, 2, 3), 100, dtype=np.uint8)
    out = pinned(PhotoMetricDistortion(), brightness=1, contrast=1, saturation_flag=1,
                 hue_flag=1, delta=12.0, alpha=1.5, saturation=1.4, hue=17.0)(
                     dict(img=img))['img']
    np.testing.assert_allclose(out, np.full((2, 2, 3), 168.0), atol=1e-3)


def test_channel_swap_by_hand():
    img = np.array([[[10, 20, 30]]], dtype=np.uint8)
    out = pinned(PhotoMetricDistortion(), swap=1, permutation=np.array([2, 0, 1]))(
        dict(img=img))['img']
    np.testing.assert_allclose(out, [[[30, 10, 20]]], atol=1e-3)


def test_hue_shift_wraps_past_360():
    # Pure red (H = 0) shifted by -30 degrees lands at 330: magenta-red, R = 255, G = 0,
    # B = 255 * (360 - 330) / 60 = 127.5.
    img = np.array([[[0, 0, 255]]], dtype=np.uint8)
    out = pinned(PhotoMetricDistortion(), hue_flag=1, hue=-30.0)(dict(img=img))['img']
    np.testing.assert_allclose(out, [[[127.5, 0, 255]]], atol=1e-2)


def test_random_draws_order_matches_spec():
    transform = PhotoMetricDistortion(brightness_delta=20, contrast_range=(0.7, 1.2),
                                      saturation_range=(0.6, 1.1), hue_delta=9)
    np.random.seed(11)
    flags = transform._random_flags()
    np.random.seed(11)
    expected = [np.random.randint(2) for _ in range(6)] + [
        np.random.uniform(-20, 20), np.random.uniform(0.7, 1.2),
        np.random.uniform(0.6, 1.1), np.random.uniform(-9, 9)
    ]
    permutation = np.random.permutation(3)
    assert list(flags[:10]) == expected
    np.testing.assert_array_equal(flags[10], permutation)


def test_seeded_runs_are_reproducible_and_leave_annotations():
    results = make_results([[3, 2, 9, 8]])
    np.random.seed(5)
    first = PhotoMetricDistortion()(dict(img=results['img'].copy()))['img']
    np.random.seed(5)
    out = PhotoMetricDistortion()(results)
    np.testing.assert_array_equal(out['img'], first)
    np.testing.assert_array_equal(out['gt_bboxes'], [[3, 2, 9, 8]])


def test_photometric_repr_and_missing_img():
    transform = TRANSFORMS.build(dict(type='PhotoMetricDistortion', brightness_delta=16,
                                      contrast_range=[0.6, 1.4]))
    assert repr(transform) == ('PhotoMetricDistortion(brightness_delta=16, '
                               'contrast_range=(0.6, 1.4), saturation_range=(0.5, 1.5), '
                               'hue_delta=18)')
    with pytest.raises(AssertionError, match='img'):
        transform(dict())


# ----------------------------------------------------------------------------- YOLOX HSV
def hsv_aug(gains):
    transform = YOLOXHSVRandomAug()
    transform._get_hsv_gains = lambda: np.array(gains, dtype=np.int16)
    return transform


def test_value_gain_on_grey_by_hand():
    img = np.full((2, 3, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(hsv_aug([0, 0, 30])(dict(img=img))['img'], 130)
    np.testing.assert_array_equal(hsv_aug([0, 0, -120])(dict(img=img))['img'], 0)


def test_saturation_gain_on_grey_by_hand():
    # Grey has H = 0 (red) and S = 0; S = 30 gives R = V = 100, G = B = 100 * (1 - 30 / 255).
    img = np.full((1, 1, 3), 100, dtype=np.uint8)
    out = hsv_aug([0, 30, 0])(dict(img=img))['img'].astype(int)
    np.testing.assert_allclose(out, [[[88.2, 88.2, 100]]], atol=1)


@pytest.mark.parametrize('hue_gain, expected', [(5, [0, 42.5, 255]), (-5, [42.5, 0, 255])])
def test_hue_gain_wraps_modulo_180(hue_gain, expected):
    # Red is H = 0; +5 -> 10 degrees (G = 255 / 6); -5 -> 175 = 350 degrees (B = 255 / 6).
    img = np.array([[[0, 0, 255]]], dtype=np.uint8)
    out = hsv_aug([hue_gain, 0, 0])(dict(img=img))['img'].astype(int)
    np.testing.assert_allclose(out, [[expected]], atol=1)


def test_zero_gains_keep_image_up_to_hsv_rounding():
    img = np.random.RandomState(0).randint(0, 256, (5, 6, 3)).astype(np.uint8)
    out = hsv_aug([0, 0, 0])(dict(img=img.copy()))['img']
    assert out.dtype == np.uint8
    np.testing.assert_allclose(out.astype(int), img.astype(int), atol=4)


def test_hsv_gain_draws():
    transform = YOLOXHSVRandomAug(hue_delta=7, saturation_delta=40, value_delta=50)
    np.random.seed(4)
    gains = transform._get_hsv_gains()
    np.random.seed(4)
    expected = np.random.uniform(-1, 1, 3) * [7, 40, 50] * np.random.randint(0, 2, 3)
    assert gains.dtype == np.int16
    np.testing.assert_array_equal(gains, expected.astype(np.int16))


def test_yolox_repr():
    assert repr(TRANSFORMS.build(dict(type='YOLOXHSVRandomAug', hue_delta=3))) == (
        'YOLOXHSVRandomAug(hue_delta=3, saturation_delta=30, value_delta=30)')
