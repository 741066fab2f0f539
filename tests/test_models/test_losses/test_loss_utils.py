"""weight_reduce_loss / weighted_loss reduction semantics."""
import pytest
import torch

from mmdet_lite.models.losses import reduce_loss, weight_reduce_loss, weighted_loss

LOSS = torch.tensor([1., 2., 3., 6.])


def test_reductions():
    assert torch.equal(reduce_loss(LOSS, 'none'), LOSS)
    assert reduce_loss(LOSS, 'sum').item() == 12.
    assert reduce_loss(LOSS, 'mean').item() == 3.


def test_weight_and_avg_factor():
    weight = torch.tensor([1., 0., 1., 0.5])
    assert weight_reduce_loss(LOSS, weight, 'sum').item() == 7.
    assert weight_reduce_loss(LOSS, weight, 'mean').item() == 7. / 4
    # avg_factor replaces the element count of the mean.
    torch.testing.assert_close(weight_reduce_loss(LOSS, weight, 'mean', avg_factor=2),
                               torch.tensor(3.5))
    torch.testing.assert_close(weight_reduce_loss(LOSS, weight, 'none', avg_factor=2),
                               torch.tensor([1., 0., 3., 3.]))


def test_bad_reduction_arguments_raise():
    with pytest.raises(ValueError, match='avg_factor can not be used with reduction="sum"'):
        weight_reduce_loss(LOSS, reduction='sum', avg_factor=2)
    with pytest.raises(ValueError, match='reduction must be one of'):
        reduce_loss(LOSS, 'max')


def test_empty_mean_is_zero_with_grad():
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = weight_reduce_loss(pred * 2, reduction='mean')
    assert loss.item() == 0. and loss.grad_fn is not None


def test_weighted_loss_decorator_adds_weight_and_reduction():

    @weighted_loss
    def abs_diff(pred, target, scale=1.):
        return (pred - target).abs() * scale

    pred, target = torch.tensor([0., 2., 5.]), torch.tensor([1., 1., 1.])
    assert abs_diff(pred, target).item() == 2.
    assert abs_diff(pred, target, scale=2., reduction='sum').item() == 12.
    weight = torch.tensor([1., 1., 0.])
    assert abs_diff(pred, target, weight, avg_factor=4).item() == pytest.approx(0.5)
    assert abs_diff.__name__ == 'abs_diff'
