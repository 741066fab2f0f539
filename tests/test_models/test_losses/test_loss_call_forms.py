"""Call forms shared by every loss, as mmdetection's tests use them, and its error types."""
import warnings

import pytest
import torch

from mmdet_lite.models.losses import (GHMC, GHMR, Accuracy, BalancedL1Loss, BoundedIoULoss,
                                      CIoULoss, CrossEntropyLoss, DiceLoss, DIoULoss,
                                      DistributionFocalLoss, EIoULoss, FocalLoss,
                                      GaussianFocalLoss, GIoULoss, IoULoss,
                                      KnowledgeDistillationKLDivLoss, L1Loss, L2Loss,
                                      LossArgumentError, MSELoss, QualityFocalLoss, SeesawLoss,
                                      SIoULoss, SmoothL1Loss, VarifocalLoss, accuracy,
                                      mask_cross_entropy)
from mmdet_lite.registry import MODELS

ALL_LOSSES = [
    BalancedL1Loss, BoundedIoULoss, CIoULoss, CrossEntropyLoss, DIoULoss, EIoULoss, SIoULoss,
    FocalLoss, DistributionFocalLoss, MSELoss, SeesawLoss, GaussianFocalLoss, GIoULoss,
    QualityFocalLoss, IoULoss, L1Loss, VarifocalLoss, GHMR, GHMC, SmoothL1Loss,
    KnowledgeDistillationKLDivLoss, DiceLoss, L2Loss
]
REGRESSION = [IoULoss, BoundedIoULoss, GIoULoss, DIoULoss, CIoULoss, EIoULoss, SIoULoss, MSELoss,
              L1Loss, SmoothL1Loss, BalancedL1Loss]


@pytest.mark.parametrize('loss_cls', ALL_LOSSES)
def test_registered_under_the_mmdet_name(loss_cls):
    assert MODELS.get(loss_cls.__name__) is loss_cls


@pytest.mark.parametrize('loss_cls', ALL_LOSSES)
def test_bad_reduction_override_raises_before_reading_inputs(loss_cls):
    # mmdetection's test passes a 1-tuple target: the override must be rejected first.
    with pytest.raises(AssertionError, match='reduction_override'):
        loss_cls()(torch.rand(10, 4), (torch.rand(10, 4), ), None, reduction_override=True)


@pytest.mark.parametrize('loss_cls', REGRESSION)
@pytest.mark.parametrize('n', [10, 0])
def test_regression_call_forms(loss_cls, n):
    gen = torch.Generator().manual_seed(n)
    xy = torch.rand(n, 2, generator=gen) * 5
    pred = torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=gen)], 1)
    target = pred + 0.2 * torch.rand(n, 4, generator=gen)
    weight = torch.rand(n, 4, generator=gen)
    loss = loss_cls()
    mean = loss(pred, target)
    assert mean.ndim == 0 and torch.isfinite(mean)
    summed = loss(pred, target, reduction_override='sum')
    none = loss(pred, target, reduction_override='none')
    torch.testing.assert_close(summed, none.sum())
    if n:
        torch.testing.assert_close(mean, none.mean())
        torch.testing.assert_close(loss(pred, target, avg_factor=2.),
                                   none.sum() / (2. + torch.finfo(torch.float32).eps))
        assert torch.isfinite(loss(pred, target, weight))
    else:
        assert mean.item() == 0. and loss(pred, target, weight).item() == 0.
    with pytest.raises(ValueError, match='avg_factor can not be used with reduction="sum"'):
        loss(pred, target, avg_factor=10, reduction_override='sum')
    for reduction_override in [None, 'none', 'mean']:
        assert isinstance(loss(pred, target, avg_factor=10,
                               reduction_override=reduction_override), torch.Tensor)


@pytest.mark.parametrize('loss_cls', [CrossEntropyLoss, FocalLoss])
def test_classification_avg_factor_with_sum_raises(loss_cls):
    pred, target = torch.rand(10, 5), torch.randint(0, 5, (10, ))
    with pytest.raises(ValueError, match='avg_factor'):
        loss_cls()(pred, target, avg_factor=10, reduction_override='sum')
    ref = loss_cls()(pred, target, reduction_override='sum')
    torch.testing.assert_close(loss_cls()(pred, target, None, 10, 'mean'),
                               ref / (10 + torch.finfo(torch.float32).eps))


def test_focal_loss_on_dense_one_hot_maps():
    # mmdetection's test: [B, C, H, W] logits with [B, C, H, W] one-hot targets.
    pred = torch.rand(2, 3, 4, 4)
    target = torch.nn.functional.one_hot(torch.randint(0, 3, (2 * 4 * 4, )),
                                         3).reshape(2, 4, 4, 3).permute(0, 3, 1, 2)
    flat_pred = pred.permute(0, 2, 3, 1).reshape(-1, 3)
    flat_target = target.permute(0, 2, 3, 1).reshape(-1, 3)
    torch.testing.assert_close(FocalLoss()(pred, target, reduction_override='sum'),
                               FocalLoss()(flat_pred, flat_target, reduction_override='sum'))
    with pytest.raises(AssertionError):  # [B] weights can not be aligned with [B, C, H, W]
        FocalLoss()(pred, target, torch.ones(2))


def test_errors_are_assertion_errors_as_in_mmdet():
    assert issubclass(LossArgumentError, ValueError)
    assert issubclass(LossArgumentError, AssertionError)
    with pytest.raises(AssertionError):
        CrossEntropyLoss(use_sigmoid=True, use_mask=True)
    with pytest.raises(AssertionError):
        FocalLoss(use_sigmoid=False)
    with pytest.raises(AssertionError):
        SmoothL1Loss(beta=0.)(torch.rand(2, 4), torch.rand(2, 4))
    with pytest.raises(AssertionError):
        L1Loss()(torch.rand(2, 4), torch.rand(3, 4))
    with pytest.raises(AssertionError):
        mask_cross_entropy(torch.rand(1, 2, 3, 3), torch.rand(1, 3, 3), torch.tensor([0]),
                           reduction='sum')
    with pytest.raises(AssertionError):
        mask_cross_entropy(torch.rand(1, 2, 3, 3), torch.rand(1, 3, 3), torch.tensor([0]),
                           ignore_index=255)
    pred, target = torch.rand(4, 3), torch.tensor([0, 1, 2, 1])
    with pytest.raises(AssertionError):
        accuracy(pred, target, topk=[1])
    with pytest.raises(AssertionError):
        accuracy(pred, target, topk=4)
    with pytest.raises(AssertionError):
        accuracy(pred[None], target)
    assert Accuracy().topk == (1, ) and Accuracy().thresh is None


def test_cross_entropy_warns_about_avg_non_ignore():
    with pytest.warns(UserWarning, match='avg_non_ignore'):
        CrossEntropyLoss(ignore_index=255)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        CrossEntropyLoss(ignore_index=255, avg_non_ignore=True)
        CrossEntropyLoss(ignore_index=255, reduction='sum')
        CrossEntropyLoss()
    assert repr(CrossEntropyLoss(avg_non_ignore=True)) == 'CrossEntropyLoss(avg_non_ignore=True)'


@pytest.mark.parametrize('use_sigmoid', [True, False])
@pytest.mark.parametrize('reduction', ['sum', 'mean', None])
@pytest.mark.parametrize('avg_non_ignore', [True, False])
def test_cross_entropy_ignore_index_equals_dropping_the_samples(use_sigmoid, reduction,
                                                                avg_non_ignore):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        loss = CrossEntropyLoss(use_sigmoid=use_sigmoid, ignore_index=255,
                                avg_non_ignore=avg_non_ignore)
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(10, 5, generator=gen)
    target = torch.randint(0, 5, (10, ), generator=gen)
    target[[1, 6]] = 255
    with_ignore = loss(pred, target, reduction_override=reduction)
    torch.testing.assert_close(loss(pred, target, ignore_index=255,
                                    reduction_override=reduction), with_ignore)
    kept = target != 255
    dropped = loss(pred[kept], target[kept], reduction_override=reduction)
    if avg_non_ignore or reduction == 'sum':
        torch.testing.assert_close(dropped, with_ignore)
    else:  # the mean still divides by all 10 samples (times C for sigmoid)
        torch.testing.assert_close(dropped * 8 / 10, with_ignore)
    all_ignored = loss(pred, torch.full((10, ), 255), reduction_override=reduction)
    assert all_ignored.item() == 0.
