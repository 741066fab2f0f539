"""DeltaXYWHBBoxCoder against torchvision's detection BoxCoder on seeded random boxes.

Mapping of mmdetection's conventions (the spec) onto torchvision's ``BoxCoder``:

- Both use width ``x2 - x1`` and centre ``x1 + w / 2`` with no ``+ 1``.
- ``target_stds`` s and ``target_means`` m: mmdetection's delta is ``(d - m) / s``;
  torchvision's is ``d * weight``. With m = 0, torchvision weights = ``1 / stds``
  (``stds (0.1, 0.1, 0.2, 0.2)`` is torchvision's Faster R-CNN ``(10, 10, 5, 5)``).
  With m != 0, mmdetection's delta = torchvision's delta - m / s.
- Argument order: ``encode(priors, gts)`` here is ``encode_single(gts, priors)`` there.
- Size clamp before ``exp``: mmdetection clamps dw, dh to ``[-c, c]`` with
  ``c = |log(wh_ratio_clip)|``; torchvision only clamps from above at ``bbox_xform_clip``.
  The defaults agree (``|log(16 / 1000)| == log(1000 / 16)``); they differ only for
  dw or dh below ``-c`` (a box shrunk more than 62.5 times), where mmdetection gives the
  size of ``-c``. With ``add_ctr_clamp=True`` (default False) mmdetection also clamps only
  from above, like torchvision, and limits the centre shift to ``ctr_clamp`` pixels.
- Clipping to the image (``max_shape``, ``clip_border=True``) is not part of torchvision's
  BoxCoder; its reference is ``torchvision.ops.clip_boxes_to_image``.
"""
import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import clip_boxes_to_image

from mmdet_lite.models.task_modules import DeltaXYWHBBoxCoder

STDS = (0.1, 0.1, 0.2, 0.2)
TV_WEIGHTS = tuple(1 / s for s in STDS)  # (10, 10, 5, 5)
CLIP = math.log(1000. / 16)


def random_boxes(n: int, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 200 - 50  # some off-image
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 120 + 1
    return torch.cat([xy, xy + wh], dim=1)


@pytest.fixture
def priors_and_gts():
    gen = torch.Generator().manual_seed(0)
    return random_boxes(200, gen), random_boxes(200, gen)


@pytest.mark.parametrize('stds', [STDS, (1., 1., 1., 1.), (0.05, 0.2, 0.5, 0.1)])
def test_encode_equals_torchvision_with_weights_one_over_stds(priors_and_gts, stds):
    priors, gts = priors_and_gts
    ours = DeltaXYWHBBoxCoder(target_stds=stds).encode(priors, gts)
    ref = BoxCoder(tuple(1 / s for s in stds)).encode_single(gts.float(), priors.float())
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_means_shift_the_torchvision_deltas(priors_and_gts):
    priors, gts = priors_and_gts
    means = (0.1, -0.2, 0.05, 0.3)
    ours = DeltaXYWHBBoxCoder(target_means=means, target_stds=STDS).encode(priors, gts)
    ref = BoxCoder(TV_WEIGHTS).encode_single(gts.float(), priors.float())
    torch.testing.assert_close(ours, ref - torch.tensor(means) / torch.tensor(STDS),
                               rtol=1e-5, atol=1e-5)
    # Decoding undoes it: torchvision sees d * s + m, scaled by its weights 1 / s.
    deltas = torch.randn(200, 4, generator=torch.Generator().manual_seed(1))
    decoded = DeltaXYWHBBoxCoder(target_means=means, target_stds=STDS).decode(
        priors.float(), deltas)
    tv_codes = (deltas * torch.tensor(STDS) + torch.tensor(means)) / torch.tensor(STDS)
    torch.testing.assert_close(decoded, BoxCoder(TV_WEIGHTS).decode_single(
        tv_codes, priors.float()), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('num_classes', [1, 3])
def test_decode_equals_torchvision_inside_the_clamp(priors_and_gts, num_classes):
    priors, _ = priors_and_gts
    priors = priors.float()
    gen = torch.Generator().manual_seed(2)
    # Normalized deltas whose dw, dh (= delta * 0.2) stay well inside [-CLIP, CLIP].
    deltas = torch.randn(200, 4 * num_classes, generator=gen) * 3
    ours = DeltaXYWHBBoxCoder(target_stds=STDS).decode(priors, deltas)
    ref = BoxCoder(TV_WEIGHTS).decode_single(deltas, priors)
    assert ours.shape == ref.shape == (200, 4 * num_classes)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)


def test_round_trip_through_torchvision(priors_and_gts):
    priors, gts = (b.float() for b in priors_and_gts)
    deltas = DeltaXYWHBBoxCoder(target_stds=STDS).encode(priors, gts)
    torch.testing.assert_close(BoxCoder(TV_WEIGHTS).decode_single(deltas, priors), gts,
                               rtol=1e-5, atol=1e-3)


def test_size_clamp_from_above_equals_torchvision_and_from_below_is_mmdetections():
    priors = torch.tensor([[0., 0., 10., 20.]]).expand(4, 4)
    # dw, dh (stds 1) of: far above the clamp, far below, inside, and mixed.
    deltas = torch.tensor([[0.5, -0.5, 9., 7.], [0., 0., -9., -7.], [0., 0., 1., -2.],
                           [0.1, 0.2, 8., -8.]])
    ours = DeltaXYWHBBoxCoder().decode(priors, deltas)
    tv = BoxCoder((1., 1., 1., 1.), bbox_xform_clip=CLIP).decode_single(deltas, priors)
    # From above the two agree (exp(CLIP) = 62.5 times the prior size at most).
    torch.testing.assert_close(ours[[0, 2]], tv[[0, 2]])
    torch.testing.assert_close(ours[0, 2] - ours[0, 0], torch.tensor(625.))
    # From below mmdetection clamps too: the result is torchvision's on clamped deltas.
    clamped = deltas.clone()
    clamped[:, 2:] = clamped[:, 2:].clamp(min=-CLIP)
    tv_clamped = BoxCoder((1., 1., 1., 1.), bbox_xform_clip=CLIP).decode_single(clamped, priors)
    torch.testing.assert_close(ours, tv_clamped)
    assert not torch.allclose(ours[1], tv[1])  # torchvision lets the box shrink further
    torch.testing.assert_close(ours[1, 2] - ours[1, 0], torch.tensor(10 / 62.5))
    # A custom wh_ratio_clip is torchvision's bbox_xform_clip = |log(wh_ratio_clip)|.
    ours_loose = DeltaXYWHBBoxCoder().decode(priors[:2], deltas[[0, 2]], wh_ratio_clip=1e-4)
    tv_loose = BoxCoder((1., 1., 1., 1.), bbox_xform_clip=math.log(1e4)).decode_single(
        deltas[[0, 2]], priors[:2])
    torch.testing.assert_close(ours_loose, tv_loose, rtol=1e-5, atol=1e-2)


def test_add_ctr_clamp_clamps_sizes_like_torchvision_and_limits_the_shift():
    gen = torch.Generator().manual_seed(3)
    priors = random_boxes(100, gen).float()
    deltas = torch.randn(100, 4, generator=gen) * 6  # many dw, dh beyond +-CLIP
    # With a centre clamp that never binds, add_ctr_clamp=True is torchvision exactly.
    unbound = DeltaXYWHBBoxCoder(add_ctr_clamp=True, ctr_clamp=10**6).decode(priors, deltas)
    ref = BoxCoder((1., 1., 1., 1.), bbox_xform_clip=CLIP).decode_single(deltas, priors)
    torch.testing.assert_close(unbound, ref, rtol=1e-5, atol=1e-3)
    # ctr_clamp=32 (the default): the centre moves at most 32 px in x and in y.
    clamped = DeltaXYWHBBoxCoder(add_ctr_clamp=True).decode(priors, deltas)
    shift = (clamped[:, :2] + clamped[:, 2:]) / 2 - (priors[:, :2] + priors[:, 2:]) / 2
    assert shift.abs().max() <= 32 + 1e-3
    assert (shift.abs() > 31.9).any()  # the clamp did bind for some boxes
    torch.testing.assert_close(clamped[:, 2:] - clamped[:, :2], ref[:, 2:] - ref[:, :2],
                               rtol=1e-5, atol=1e-3)  # sizes are untouched by ctr_clamp


def test_clip_border_equals_clip_boxes_to_image(priors_and_gts):
    priors, _ = priors_and_gts
    priors = priors.float()
    deltas = torch.randn(200, 8, generator=torch.Generator().manual_seed(4))
    h, w = 90, 130
    ours = DeltaXYWHBBoxCoder(target_stds=STDS).decode(priors, deltas, max_shape=(h, w, 3))
    ref = BoxCoder(TV_WEIGHTS).decode_single(deltas, priors)
    ref = clip_boxes_to_image(ref.reshape(-1, 4), (h, w)).reshape(200, 8)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)
    assert (ours[:, 0::2] == w).any() and (ours[:, 1::2] == 0).any()  # clipping happened
