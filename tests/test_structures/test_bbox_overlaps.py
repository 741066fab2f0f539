"""bbox_overlaps on hand-computed boxes: iou / iof / giou, aligned, batched, empty."""
import pytest
import torch

from mmdet_lite.structures.bbox import bbox_overlaps

A = torch.tensor([[0., 0., 10., 10.]])  # area 100
B = torch.tensor([[5., 0., 15., 10.],  # overlap 50 with A, union 150
                  [20., 20., 30., 30.]])  # disjoint, enclosing box with A is 30x30


def test_iou_pairwise():
    ious = bbox_overlaps(A, B)
    assert ious.shape == (1, 2)
    torch.testing.assert_close(ious, torch.tensor([[1 / 3, 0.]]))


def test_iof_divides_by_first_box_area():
    torch.testing.assert_close(bbox_overlaps(A, B, mode='iof'), torch.tensor([[0.5, 0.]]))
    # the other way round, the "foreground" is B[0] (also area 100)
    torch.testing.assert_close(bbox_overlaps(B, A, mode='iof'), torch.tensor([[0.5], [0.]]))


def test_giou_subtracts_empty_enclosing_fraction():
    # A vs B[0]: enclosing box [0,0,15,10] == union, so giou == iou
    # A vs B[1]: iou 0, enclosing 900, union 200 -> -700/900
    torch.testing.assert_close(
        bbox_overlaps(A, B, mode='giou'), torch.tensor([[1 / 3, -7 / 9]]))


def test_identical_boxes_give_one():
    boxes = torch.tensor([[1., 2., 3., 5.], [0., 0., 7., 7.]])
    torch.testing.assert_close(bbox_overlaps(boxes, boxes).diagonal(), torch.ones(2))


def test_aligned_compares_row_by_row():
    b1 = torch.cat([A, A])
    for mode, expected in (('iou', [1 / 3, 0.]), ('iof', [0.5, 0.]), ('giou', [1 / 3, -7 / 9])):
        out = bbox_overlaps(b1, B, mode=mode, is_aligned=True)
        assert out.shape == (2, )
        torch.testing.assert_close(out, torch.tensor(expected))


def test_batched_and_broadcast_batch_dims():
    b1 = torch.stack([A, A + 5])  # [2, 1, 4]
    b2 = torch.stack([B, B])  # [2, 2, 4]
    out = bbox_overlaps(b1, b2)
    assert out.shape == (2, 1, 2)
    torch.testing.assert_close(out[0], torch.tensor([[1 / 3, 0.]]))
    # A + 5 = [5,5,15,15] vs [5,0,15,10]: overlap 50, union 150
    torch.testing.assert_close(out[1, 0, 0], torch.tensor(1 / 3))

    broadcast = bbox_overlaps(A[None], torch.stack([B, B, B]))  # [1,1,4] x [3,2,4]
    assert broadcast.shape == (3, 1, 2)
    unbatched = bbox_overlaps(A, torch.stack([B, B, B]))  # [1,4] x [3,2,4]
    torch.testing.assert_close(unbatched, broadcast)


def test_empty_inputs():
    empty = torch.zeros(0, 4)
    assert bbox_overlaps(empty, B).shape == (0, 2)
    assert bbox_overlaps(A, empty).shape == (1, 0)
    assert bbox_overlaps(empty, empty, is_aligned=True).shape == (0, )
    assert bbox_overlaps(torch.zeros(2, 0, 4), torch.zeros(2, 3, 4)).shape == (2, 0, 3)
    assert bbox_overlaps(torch.zeros(0), B, mode='giou').shape == (0, 2)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match='mode'):
        bbox_overlaps(A, B, mode='dice')
    with pytest.raises(ValueError, match='bboxes2'):
        bbox_overlaps(A, torch.zeros(2, 3))
    with pytest.raises(ValueError, match='is_aligned'):
        bbox_overlaps(A, B, is_aligned=True)
    with pytest.raises(TypeError, match='bboxes1'):
        bbox_overlaps([[0, 0, 1, 1]], B)
    with pytest.raises(ValueError, match='broadcast'):
        bbox_overlaps(torch.zeros(2, 1, 4), torch.zeros(3, 2, 4))
