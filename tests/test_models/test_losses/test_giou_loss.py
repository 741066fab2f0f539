"""GIoULoss hand values."""
import pytest
import torch

from mmdet_lite.models.losses import GIoULoss
from mmdet_lite.registry import MODELS

PRED = torch.tensor([[0., 0., 2., 2.], [0., 0., 1., 1.], [0., 0., 4., 4.]])
TARGET = torch.tensor([[1., 1., 3., 3.], [2., 0., 3., 1.], [0., 0., 4., 4.]])
# 1) inter 1, union 7, enclosing 9: GIoU = 1/7 - 2/9.  2) disjoint: 0 - 1/3.  3) identical: 1.
LOSSES = [1 - (1 / 7 - 2 / 9), 1 + 1 / 3, 0.]


def test_hand_values_and_reductions():
    loss = MODELS.build(dict(type='GIoULoss'))
    torch.testing.assert_close(loss(PRED, TARGET, reduction_override='none'),
                               torch.tensor(LOSSES))
    assert loss(PRED, TARGET).item() == pytest.approx(sum(LOSSES) / 3, rel=1e-5)
    assert loss(PRED, TARGET, avg_factor=2).item() == pytest.approx(sum(LOSSES) / 2, rel=1e-5)
    assert GIoULoss(loss_weight=2., reduction='sum')(PRED, TARGET).item() == pytest.approx(
        2 * sum(LOSSES), rel=1e-5)


def test_weights_per_box_and_per_coordinate():
    loss = GIoULoss(reduction='sum')
    assert loss(PRED, TARGET, torch.tensor([1., 0., 1.])).item() == pytest.approx(
        LOSSES[0], rel=1e-5)
    # [N, 4] weights are averaged to one weight per box.
    weight = torch.tensor([[1., 1., 0., 0.], [0., 0., 0., 0.], [1., 1., 1., 1.]])
    assert loss(PRED, TARGET, weight).item() == pytest.approx(0.5 * LOSSES[0], rel=1e-5)


def test_zero_weight_and_empty_input_give_zero_with_grad():
    pred = PRED.clone().requires_grad_()
    loss = GIoULoss()(pred, TARGET, torch.zeros(3))
    assert loss.item() == 0. and loss.grad_fn is not None
    empty = torch.zeros(0, 4, requires_grad=True)
    loss = GIoULoss()(empty, torch.zeros(0, 4))
    assert loss.item() == 0. and loss.grad_fn is not None


def test_shape_mismatch_raises():
    # mmdetection asserts in bbox_overlaps: an AssertionError (ours is a ValueError too).
    with pytest.raises(AssertionError, match='same number of boxes'):
        GIoULoss()(PRED, TARGET[:2])
    with pytest.raises(ValueError):
        GIoULoss()(PRED, TARGET[:2])
