"""bbox_overlaps with broadcastable batch dimensions, against torchvision per batch element;
its argument errors are AssertionErrors like mmdetection's asserts."""
import pytest
import torch
from torchvision.ops import box_iou, generalized_box_iou

from mmdet_lite.structures.bbox import bbox_overlaps


def _boxes(*shape, seed):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(*shape, 2, generator=gen) * 20
    wh = torch.rand(*shape, 2, generator=gen) * 10 + 1
    return torch.cat([xy, xy + wh], dim=-1)


@pytest.mark.parametrize('mode,reference', [('iou', box_iou), ('giou', generalized_box_iou)])
def test_batch_dims_broadcast_like_torch(mode, reference):
    a = _boxes(2, 1, 3, seed=0)  # batch (2, 1)
    b = _boxes(4, 5, seed=1)  # batch (4,) -> broadcast to (2, 4)
    out = bbox_overlaps(a, b, mode=mode)
    assert out.shape == (2, 4, 3, 5)
    for i in range(2):
        for j in range(4):
            torch.testing.assert_close(out[i, j], reference(a[i, 0], b[j]))


def test_unbatched_boxes_against_a_batch():
    a = _boxes(3, seed=2)
    b = _boxes(2, 5, seed=3)
    out = bbox_overlaps(a, b, mode='iof')
    assert out.shape == (2, 3, 5)
    for j in range(2):
        lt = torch.max(a[:, None, :2], b[j][None, :, :2])
        rb = torch.min(a[:, None, 2:], b[j][None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        area_a = (a[:, 2:] - a[:, :2]).prod(-1)
        torch.testing.assert_close(out[j], inter / area_a[:, None])


def test_aligned_with_broadcast_batch_dims():
    a = _boxes(2, 1, 3, seed=4)
    b = _boxes(1, 4, 3, seed=5)
    out = bbox_overlaps(a, b, is_aligned=True)
    assert out.shape == (2, 4, 3)
    for i in range(2):
        for j in range(4):
            torch.testing.assert_close(out[i, j], box_iou(a[i, 0], b[0, j]).diagonal())


def test_empty_sets_keep_the_broadcast_batch_shape():
    assert bbox_overlaps(torch.zeros(2, 1, 0, 4), _boxes(4, 5, seed=6)).shape == (2, 4, 0, 5)
    assert bbox_overlaps(torch.zeros(0, 4), _boxes(3, 5, seed=7)).shape == (3, 0, 5)


@pytest.mark.parametrize('args,kwargs,match', [
    ((torch.zeros(2, 3, 4), torch.zeros(3, 3, 4)), {}, 'do not broadcast'),
    ((torch.zeros(3, 4), torch.zeros(2, 4)), dict(is_aligned=True), 'is_aligned'),
    ((torch.zeros(3, 4), torch.zeros(2, 4)), dict(mode='diou'), 'mode'),
    ((torch.zeros(3, 5), torch.zeros(2, 4)), {}, 'bboxes1'),
])
def test_bad_arguments_are_assertion_errors(args, kwargs, match):
    with pytest.raises(AssertionError, match=match):
        bbox_overlaps(*args, **kwargs)
