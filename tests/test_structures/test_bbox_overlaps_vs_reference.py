"""bbox_overlaps against torchvision's box_iou / generalized_box_iou on seeded random boxes.

Conventions (mmdetection 3.x, which is the spec):

- Widths are ``x2 - x1`` with no ``+ 1`` (mmdetection 2.x's legacy ``+ 1`` is gone), the
  same as torchvision: boxes that only touch have IoU 0.
- The union (and, for GIoU, the enclosing area) is clamped to at least ``eps = 1e-6``. For
  boxes of ordinary size this changes nothing; for a union below ``eps`` mmdetection gives
  ``overlap / eps`` (0 for two empty boxes) where torchvision gives ``overlap / union``
  (NaN for two empty boxes).
- ``is_aligned=True`` is the diagonal of the pairwise matrix.
"""
import pytest
import torch
from torchvision.ops import box_iou, generalized_box_iou

from mmdet_lite.structures.bbox import bbox_overlaps

EPS = 1e-6


def random_boxes(n: int, generator: torch.Generator, dtype=torch.float32,
                 max_xy: float = 100., max_wh: float = 60.) -> torch.Tensor:
    """[n, 4] boxes with positive width and height, many of them overlapping."""
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * max_xy
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * max_wh + 0.5
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


@pytest.fixture
def boxes():
    gen = torch.Generator().manual_seed(1234)
    b1, b2 = random_boxes(37, gen), random_boxes(53, gen)
    # Add exact duplicates and integer-pixel boxes that only touch (IoU 0 without +1).
    b1 = torch.cat([b1, b2[:5], torch.tensor([[0., 0., 10., 10.]])])
    b2 = torch.cat([b2, torch.tensor([[10., 0., 20., 10.]])])
    return b1, b2


@pytest.mark.parametrize('dtype, tol', [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_pairwise_iou_equals_torchvision(boxes, dtype, tol):
    b1, b2 = (b.to(dtype) for b in boxes)
    ours = bbox_overlaps(b1, b2, mode='iou')
    ref = box_iou(b1, b2)
    assert ours.shape == ref.shape == (len(b1), len(b2))
    torch.testing.assert_close(ours, ref, rtol=tol, atol=tol)
    assert (ref > 0).float().mean() > 0.1  # the random set really overlaps
    assert ours[-1, -1] == 0  # [0, 0, 10, 10] vs [10, 0, 20, 10]: touching only
    torch.testing.assert_close(ours[-6:-1, :5].diagonal(), torch.ones(5, dtype=dtype))


@pytest.mark.parametrize('dtype, tol', [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_pairwise_giou_equals_torchvision(boxes, dtype, tol):
    b1, b2 = (b.to(dtype) for b in boxes)
    ours = bbox_overlaps(b1, b2, mode='giou')
    ref = generalized_box_iou(b1, b2)
    torch.testing.assert_close(ours, ref, rtol=tol, atol=tol)
    assert ref.min() < -0.3  # far-apart pairs: the enclosing term matters


@pytest.mark.parametrize('mode, reference', [('iou', box_iou), ('giou', generalized_box_iou)])
def test_aligned_is_the_diagonal_of_torchvision(mode, reference):
    gen = torch.Generator().manual_seed(7)
    b1, b2 = random_boxes(64, gen), random_boxes(64, gen)
    ours = bbox_overlaps(b1, b2, mode=mode, is_aligned=True)
    assert ours.shape == (64, )
    torch.testing.assert_close(ours, reference(b1, b2).diagonal(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('mode, reference', [('iou', box_iou), ('giou', generalized_box_iou)])
@pytest.mark.parametrize('is_aligned', [False, True])
def test_batched_equals_torchvision_per_batch(mode, reference, is_aligned):
    gen = torch.Generator().manual_seed(11)
    b1 = torch.stack([random_boxes(9, gen) for _ in range(3)])  # [3, 9, 4]
    b2 = torch.stack([random_boxes(9, gen) for _ in range(3)])
    ours = bbox_overlaps(b1, b2, mode=mode, is_aligned=is_aligned)
    for i in range(3):
        ref = reference(b1[i], b2[i])
        torch.testing.assert_close(ours[i], ref.diagonal() if is_aligned else ref,
                                   rtol=1e-6, atol=1e-6)


def test_iof_is_intersection_over_the_first_box_area(boxes):
    # torchvision has no IoF; its pieces do: intersection = IoU * union, and
    # union = area1 + area2 - intersection, so intersection = IoU * (a1 + a2) / (1 + IoU).
    b1, b2 = (b.double() for b in boxes)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = box_iou(b1, b2)
    inter = iou * (area(b1)[:, None] + area(b2)[None]) / (1 + iou)
    torch.testing.assert_close(bbox_overlaps(b1, b2, mode='iof'), inter / area(b1)[:, None])


def test_eps_convention_differs_from_torchvision_only_for_tiny_unions():
    # mmdetection clamps the union to eps: two empty boxes give 0, not torchvision's NaN.
    empty = torch.tensor([[5., 5., 5., 5.]])
    assert torch.isnan(box_iou(empty, empty)).all()
    assert bbox_overlaps(empty, empty).item() == 0
    assert bbox_overlaps(empty, empty, mode='giou').item() == 0
    # Identical boxes of area 1e-8 (< eps): overlap / eps = 0.01 instead of 1.
    tiny = torch.tensor([[0., 0., 1e-4, 1e-4]], dtype=torch.float64)
    assert box_iou(tiny, tiny).item() == pytest.approx(1.0)
    assert bbox_overlaps(tiny, tiny).item() == pytest.approx(1e-8 / EPS)
    # A custom eps moves the threshold: with eps 1e-10 the tiny boxes behave normally.
    assert bbox_overlaps(tiny, tiny, eps=1e-10).item() == pytest.approx(1.0)
