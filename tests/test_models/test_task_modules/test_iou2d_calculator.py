"""BboxOverlaps2D: IoU / IoF, score columns and fp16 mode."""
import pytest
import torch

from mmdet_lite.registry import TASK_UTILS

A = torch.tensor([[0., 0., 10., 10.]])
B = torch.tensor([[5., 0., 15., 10.], [0., 0., 5., 5.]])


def test_iou_and_iof():
    calc = TASK_UTILS.build(dict(type='BboxOverlaps2D'))
    torch.testing.assert_close(calc(A, B), torch.tensor([[50 / 150, 25 / 100]]))
    # IoF divides by the area of the first set's box.
    torch.testing.assert_close(calc(A, B, mode='iof'), torch.tensor([[0.5, 0.25]]))
    torch.testing.assert_close(calc(B, B, is_aligned=True), torch.tensor([1., 1.]))


def test_score_column_is_dropped_and_fp16_matches():
    calc = TASK_UTILS.build(dict(type='BboxOverlaps2D'))
    scored = torch.cat([B, torch.tensor([[0.9], [0.1]])], dim=1)
    torch.testing.assert_close(calc(A, scored), calc(A, B))
    half = TASK_UTILS.build(dict(type='BboxOverlaps2D', scale=8., dtype='fp16'))
    result = half(A, B)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, calc(A, B), atol=1e-3, rtol=1e-3)


def test_bad_box_width_raises():
    with pytest.raises(ValueError, match='4 or 5 values'):
        TASK_UTILS.build(dict(type='BboxOverlaps2D'))(A, torch.zeros(2, 3))
