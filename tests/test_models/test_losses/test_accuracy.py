"""accuracy() and Accuracy."""
import pytest
import torch

from mmdet_lite.models.losses import Accuracy, accuracy

PRED = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
TARGET = torch.tensor([1, 1, 2])


def test_top1_and_topk():
    assert accuracy(PRED, TARGET).item() == pytest.approx(200 / 3)
    top1, top2 = accuracy(PRED, TARGET, topk=(1, 2))
    assert top1.item() == pytest.approx(200 / 3) and top2.item() == pytest.approx(100.)
    assert Accuracy(topk=2)(PRED, TARGET).item() == pytest.approx(100.)


def test_thresh_requires_confident_hits():
    # Row 2 is a top-1 hit but scores 0.5 <= 0.6.
    assert accuracy(PRED, TARGET, thresh=0.6).item() == pytest.approx(100 / 3)


def test_empty_and_bad_inputs():
    assert accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).item() == 0.
    assert [a.item() for a in accuracy(torch.zeros(0, 3), torch.zeros(0), topk=(1, 2))] == [0, 0]
    with pytest.raises(TypeError, match='topk'):
        accuracy(PRED, TARGET, topk=[1])
    with pytest.raises(ValueError, match='exceeds the number of classes'):
        accuracy(PRED, TARGET, topk=4)
