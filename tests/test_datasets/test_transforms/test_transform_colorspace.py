"""Colour ops of AutoAugment: pixel values at fixed levels, randomness, args and reprs."""
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps
from transform_helpers import make_results

from mmdet_lite.datasets.transforms import (AutoContrast, Brightness, Color, ColorTransform,
                                            Contrast, Equalize, Invert, Posterize, Sharpness,
                                            Solarize, SolarizeAdd)
from mmdet_lite.registry import TRANSFORMS

ALL_OPS = (ColorTransform, Color, Brightness, Contrast, Sharpness, Solarize, SolarizeAdd,
           Posterize, Equalize, AutoContrast, Invert)


def all_values_image() -> np.ndarray:
    """uint8 16 x 16 x 3 holding every value 0..255 in each channel (in different places)."""
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    return np.stack([values, values.T, 255 - values], axis=-1)


def random_image(seed: int = 1) -> np.ndarray:
    img = np.random.RandomState(seed).randint(0, 256, (16, 20, 3)).astype(np.uint8)
    img[2:6, 3:9] = (10, 200, 40)  # a saturated patch, so colour ops have work to do
    return img


def apply(transform, img: np.ndarray) -> np.ndarray:
    out = transform(dict(img=img.copy()))['img']
    assert out.dtype == img.dtype and out.shape == img.shape
    return out


def pil_reference(img: np.ndarray, op) -> np.ndarray:
    """``op`` applied by PIL to the RGB version of the BGR ``img``, back to BGR."""
    return np.array(op(Image.fromarray(img[..., ::-1])))[..., ::-1]


def test_invert_is_255_minus_x():
    img = all_values_image()
    np.testing.assert_array_equal(apply(Invert(), img), 255 - img)


@pytest.mark.parametrize('level, bits', [(0, 0), (2, 1), (5, 2), (7, 3), (10, 4)])
def test_posterize_keeps_ceil_mag_high_bits(level, bits):
    # max_mag 4.0: level 2 -> 0.8 -> ceil 1 bit, level 5 -> 2 bits, level 7 -> 2.8 -> 3 bits.
    img = all_values_image()
    keep = (0xFF << (8 - bits)) & 0xFF
    np.testing.assert_array_equal(apply(Posterize(level=level), img), img & keep)


def test_posterize_hand_values():
    img = np.array([[[255, 200, 129]]], dtype=np.uint8)
    # level 5 -> 2 bits: 255 -> 192, 200 -> 192, 129 -> 128
    np.testing.assert_array_equal(apply(Posterize(level=5), img), [[[192, 192, 128]]])


@pytest.mark.parametrize('level, threshold', [(5, 128.0), (0, 0.0), (10, 256.0), (3, 76.8)])
def test_solarize_inverts_from_threshold(level, threshold):
    img = all_values_image()
    expected = np.where(img < threshold, img, 255 - img)
    np.testing.assert_array_equal(apply(Solarize(level=level), img), expected)


def test_solarize_hand_values():
    img = np.array([[[127, 128, 200]]], dtype=np.uint8)
    np.testing.assert_array_equal(apply(Solarize(level=5), img), [[[127, 127, 55]]])


def test_solarize_add_adds_below_128_and_saturates():
    # level 5 of [0, 110] -> 55
    img = np.array([[[0, 72, 73, 127, 128, 255]]], dtype=np.uint8).reshape(1, 2, 3)
    expected = np.array([[[55, 127, 128], [182, 128, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(apply(SolarizeAdd(level=5), img), expected)
    # level 10 -> 110: 127 + 110 = 237
    np.testing.assert_array_equal(apply(SolarizeAdd(level=10), np.full((1, 1, 3), 127, np.uint8)),
                                  np.full((1, 1, 3), 237, np.uint8))


def test_brightness_scales_values():
    img = np.array([[[0, 100, 200]]], dtype=np.uint8)
    # level 5 of [0.1, 1.9] -> 1.0 (identity); level 0 -> 0.1; level 10 -> 1.9 (saturates)
    np.testing.assert_array_equal(apply(Brightness(level=5), img), img)
    np.testing.assert_array_equal(apply(Brightness(level=0), img), [[[0, 10, 20]]])
    np.testing.assert_array_equal(apply(Brightness(level=10), img), [[[0, 190, 255]]])


def test_color_zero_gives_grey_and_one_identity():
    img = random_image()
    np.testing.assert_array_equal(apply(Color(level=5), img), img)
    grey = apply(Color(level=0, min_mag=0.0), img)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    np.testing.assert_array_equal(grey[..., 1], grey[..., 2])
    # ITU-R 601 luma of B, G, R = 10, 200, 40: 0.299 * 40 + 0.587 * 200 + 0.114 * 10 = 130.5
    assert abs(int(grey[3, 4, 0]) - 130.5) <= 1


def test_contrast_zero_gives_mean_grey():
    img = np.zeros((2, 2, 3), dtype=np.uint8)
    img[0, 0] = 255  # a white pixel among black: mean grey level 255 / 4
    out = apply(Contrast(level=0, min_mag=0.0), img)
    assert np.all(np.abs(out.astype(int) - 255 / 4) <= 1)


@pytest.mark.parametrize('op_cls, enhancer', [(Color, ImageEnhance.Color),
                                              (Brightness, ImageEnhance.Brightness),
                                              (Contrast, ImageEnhance.Contrast)])
@pytest.mark.parametrize('level', [0, 3, 7, 10])
def test_enhance_ops_match_pil(op_cls, enhancer, level):
    img = random_image()
    mag = round(level / 10 * 1.8 + 0.1, 1)
    expected = pil_reference(img, lambda pil: enhancer(pil).enhance(mag))
    np.testing.assert_allclose(apply(op_cls(level=level), img), expected, atol=1)


@pytest.mark.parametrize('level', [0, 3, 10])
def test_sharpness_matches_pil_inside_the_border(level):
    # PIL leaves the one-pixel border as is; mmcv filters it too, so compare the inside.
    img = random_image()
    mag = round(level / 10 * 1.8 + 0.1, 1)
    expected = pil_reference(img, lambda pil: ImageEnhance.Sharpness(pil).enhance(mag))
    np.testing.assert_allclose(apply(Sharpness(level=level), img)[1:-1, 1:-1],
                               expected[1:-1, 1:-1], atol=1)


def test_sharpness_hand_value():
    img = np.zeros((3, 3, 3), dtype=np.uint8)
    img[1, 1] = 130
    # smoothed centre: 130 * 5 / 13 = 50; factor 1.9: 1.9 * 130 - 0.9 * 50 = 202
    assert abs(int(apply(Sharpness(level=10), img)[1, 1, 0]) - 202) <= 1


def test_equalize_and_autocontrast_match_pil():
    img = random_image()
    np.testing.assert_array_equal(apply(Equalize(), img), pil_reference(img, ImageOps.equalize))
    np.testing.assert_array_equal(apply(AutoContrast(), img),
                                  pil_reference(img, ImageOps.autocontrast))


def test_autocontrast_stretches_channel_range():
    img = np.array([[[50, 10, 0]], [[150, 20, 255]]], dtype=np.uint8)
    # each channel: (x - min) * 255 / (max - min)
    np.testing.assert_array_equal(apply(AutoContrast(), img), [[[0, 0, 0]], [[255, 255, 255]]])


def test_prob_zero_leaves_image_and_annotations():
    results = make_results([[3, 2, 9, 8]])
    img = results['img'].copy()
    out = Invert(prob=0.0)(results)
    np.testing.assert_array_equal(out['img'], img)
    np.testing.assert_array_equal(out['gt_bboxes'], [[3, 2, 9, 8]])


def test_annotations_untouched():
    results = make_results([[3, 2, 9, 8], [10, 5, 30, 20]])
    boxes, masks = results['gt_bboxes'].copy(), results['gt_masks'].masks.copy()
    out = Invert()(results)
    np.testing.assert_array_equal(out['gt_bboxes'], boxes)
    np.testing.assert_array_equal(out['gt_masks'].masks, masks)


def test_random_level_draws_uniform_magnitude():
    # level None: mag = round(U[0,1) * (max - min) + min, 1), drawn after the prob draw.
    np.random.seed(3)
    _ = np.random.rand()
    expected_mag = round(np.random.rand() * 110.0, 1)
    np.random.seed(3)
    img = np.full((1, 1, 3), 10, dtype=np.uint8)
    out = apply(SolarizeAdd(), img)
    np.testing.assert_array_equal(out, np.minimum(10 + expected_mag, 255).astype(np.uint8))


def test_default_magnitude_ranges():
    assert (ColorTransform().min_mag, ColorTransform().max_mag) == (0.1, 1.9)
    assert (Solarize().min_mag, Solarize().max_mag) == (0.0, 256.0)
    assert (SolarizeAdd().min_mag, SolarizeAdd().max_mag) == (0.0, 110.0)
    assert (Posterize().min_mag, Posterize().max_mag) == (0.0, 4.0)


@pytest.mark.parametrize('op_cls', ALL_OPS)
def test_repr_and_registry(op_cls):
    op = TRANSFORMS.build(dict(type=op_cls.__name__, prob=0.5, level=3))
    assert isinstance(op, op_cls)
    assert repr(op) == (f'{op_cls.__name__}(prob=0.5, level=3, '
                        f'min_mag={op.min_mag}, max_mag={op.max_mag})')


@pytest.mark.parametrize('kwargs', [
    dict(prob=1.5), dict(prob=-0.1), dict(level=11), dict(level=-1), dict(level=2.0),
    dict(min_mag=1), dict(max_mag=2), dict(min_mag=1.5, max_mag=1.0)
])
def test_invalid_common_args_raise_assertion_error(kwargs):
    with pytest.raises(AssertionError):
        ColorTransform(**kwargs)


@pytest.mark.parametrize('op_cls, kwargs', [
    (Color, dict(max_mag=2.1)), (Brightness, dict(min_mag=-0.1)), (Contrast, dict(max_mag=3.0)),
    (Sharpness, dict(max_mag=2.5)), (Solarize, dict(max_mag=257.0)),
    (SolarizeAdd, dict(max_mag=111.0)), (Posterize, dict(max_mag=9.0))
])
def test_op_specific_magnitude_bounds(op_cls, kwargs):
    with pytest.raises(AssertionError, match='mag'):
        op_cls(**kwargs)
