"""IoU-family losses: hand values, torchvision references, reductions, weights, gradients."""
import math
import warnings

import pytest
import torch
from torchvision.ops import (box_iou, complete_box_iou_loss, distance_box_iou_loss,
                             generalized_box_iou_loss)

from mmdet_lite.models.losses import (BoundedIoULoss, CIoULoss, DIoULoss, EIoULoss, GIoULoss,
                                      IoULoss, SIoULoss, iou_loss)
from mmdet_lite.registry import MODELS

IOU_FAMILY = [IoULoss, BoundedIoULoss, GIoULoss, DIoULoss, CIoULoss, EIoULoss, SIoULoss]

# 1) overlap: inter 1, union 7.  2) disjoint, side by side.  3) identical.
PRED = torch.tensor([[0., 0., 2., 2.], [0., 0., 1., 1.], [0., 0., 4., 4.]])
TARGET = torch.tensor([[1., 1., 3., 3.], [2., 0., 3., 1.], [0., 0., 4., 4.]])


def _random_pairs(n=6, seed=0, dtype=torch.float64, jitter=2.):
    """Overlapping box pairs in general position (no ties in min/max)."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen, dtype=dtype) * 10
    wh = torch.rand(n, 2, generator=gen, dtype=dtype) * 8 + 2
    pred = torch.cat([xy, xy + wh], 1)
    target = pred + (torch.rand(n, 4, generator=gen, dtype=dtype) - 0.5) * jitter
    return pred, target


@pytest.mark.parametrize('loss_cls', IOU_FAMILY)
def test_registered_with_mmdet_defaults(loss_cls):
    loss = MODELS.build(dict(type=loss_cls.__name__))
    assert type(loss) is loss_cls
    assert loss.reduction == 'mean' and loss.loss_weight == 1.0
    assert loss.eps == (1e-3 if loss_cls is BoundedIoULoss else 1e-6)
    assert repr(loss) == f'{loss_cls.__name__}()'
    assert list(loss.state_dict()) == []


def test_constructor_specific_defaults():
    assert IoULoss().mode == 'log' and IoULoss().linear is False
    assert BoundedIoULoss().beta == 0.2
    assert EIoULoss().smooth_point == 0.1
    assert SIoULoss().neg_gamma is False


@pytest.mark.parametrize('mode, expected', [
    ('log', [math.log(7.), -math.log(1e-6), 0.]),
    ('linear', [6 / 7, 1 - 1e-6, 0.]),
    ('square', [1 - 1 / 49, 1 - 1e-12, 0.]),
])
def test_iou_loss_modes(mode, expected):
    loss = IoULoss(mode=mode, reduction='none')(PRED, TARGET)
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert IoULoss(mode=mode)(PRED, TARGET).item() == pytest.approx(sum(expected) / 3, rel=1e-5)


def test_iou_loss_deprecated_linear_and_bad_mode():
    with pytest.warns(UserWarning, match='linear=True'):
        loss = IoULoss(linear=True)
    assert loss.mode == 'linear' and loss.linear is True
    torch.testing.assert_close(loss(PRED, TARGET, reduction_override='none'),
                               torch.tensor([6 / 7, 1 - 1e-6, 0.]))
    with pytest.warns(UserWarning, match='linear=True'):
        direct = iou_loss(PRED, TARGET, linear=True, reduction='none')
    torch.testing.assert_close(direct, torch.tensor([6 / 7, 1 - 1e-6, 0.]))
    with pytest.raises(AssertionError, match='mode'):
        IoULoss(mode='cubic')


def test_giou_and_diou_hand_values():
    giou = [1 - (1 / 7 - 2 / 9), 1 + 1 / 3, 0.]
    torch.testing.assert_close(GIoULoss(reduction='none')(PRED, TARGET), torch.tensor(giou))
    # DIoU: centre distance^2 / enclosing diagonal^2 = 2 / 18 and 4 / 10.
    diou = [1 - 1 / 7 + 2 / 18, 1 + 4 / 10, 0.]
    torch.testing.assert_close(DIoULoss(reduction='none')(PRED, TARGET), torch.tensor(diou))
    # CIoU adds no aspect term where IoU <= 0.5 (and the boxes are squares anyway).
    torch.testing.assert_close(CIoULoss(reduction='none')(PRED, TARGET), torch.tensor(diou))


def test_ciou_aspect_term_above_half_iou():
    pred, target = torch.tensor([[0., 0., 4., 2.]]), torch.tensor([[0., 0., 4., 3.]])
    iou = 8 / 12
    v = 4 / math.pi**2 * (math.atan(4 / 3) - math.atan(4 / 2))**2
    alpha = v / (1 - iou + v)
    expected = 1 - (iou - 0.25 / 25 - alpha * v)
    assert CIoULoss()(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_against_torchvision_on_random_pairs():
    pred, target = _random_pairs(n=50, jitter=1.)
    ious = torch.diag(box_iou(pred, target))
    assert (ious > 0.5).all()  # torchvision's CIoU has no IoU > 0.5 gate
    for ours, ref in [(GIoULoss, generalized_box_iou_loss), (DIoULoss, distance_box_iou_loss),
                      (CIoULoss, complete_box_iou_loss)]:
        torch.testing.assert_close(ours(reduction='none')(pred, target),
                                   ref(pred, target, eps=1e-7), rtol=1e-5, atol=1e-6)


def test_bounded_iou_hand_values():
    pred, target = torch.tensor([[0., 0., 2., 2.]]), torch.tensor([[1., 1., 3., 3.]])
    # Centre shift 1 on a side of 2: bound 1 - 0 = 1 each; sizes equal up to eps.
    size_term = 1 - 2 / (2 + 1e-3)
    terms = [1., 1., size_term, size_term]
    expected = [t - 0.1 if t >= 0.2 else 0.5 * t * t / 0.2 for t in terms]
    loss = BoundedIoULoss(reduction='none')(pred, target)
    assert loss.shape == (1, 4)
    torch.testing.assert_close(loss, torch.tensor([expected]))
    # Weights are element-wise [N, 4] here, not averaged per box.
    weight = torch.tensor([[1., 0., 0., 0.]])
    assert BoundedIoULoss(reduction='sum')(pred, target, weight).item() == pytest.approx(0.9)


def test_eiou_hand_values():
    # Disjoint pair 2: the extended intersection is (1 - 2) * 1 = -1, union 1 + 1 + 1 = 3.
    expected = [6 / 7 - 0.05, (1 + 1 / 3) - 0.05, 0.]
    torch.testing.assert_close(EIoULoss(reduction='none')(PRED, TARGET), torch.tensor(expected))
    # Quadratic part: 1 - 95 / 100 = 0.05 < smooth_point 0.1 -> 0.5 * 0.05**2 / 0.1.
    pred, target = torch.tensor([[0., 0., 10., 10.]]), torch.tensor([[0., 0., 10., 9.5]])
    assert EIoULoss()(pred, target).item() == pytest.approx(0.0125, rel=1e-4)
    assert EIoULoss(smooth_point=0.01)(pred, target).item() == pytest.approx(0.045, rel=1e-4)


def _siou_reference(pred, target, neg_gamma=False):
    """SIoU from the paper's definitions, in plain math (eps-free; no degenerate boxes)."""
    (px1, py1, px2, py2), (tx1, ty1, tx2, ty2) = pred, target
    inter = max(0, min(px2, tx2) - max(px1, tx1)) * max(0, min(py2, ty2) - max(py1, ty1))
    pw, ph, tw, th = px2 - px1, py2 - py1, tx2 - tx1, ty2 - ty1
    iou = inter / (pw * ph + tw * th - inter)
    dx, dy = (tx1 + tx2 - px1 - px2) / 2, (ty1 + ty2 - py1 - py2) / 2
    angle = math.atan2(abs(dy), abs(dx))
    angle = min(angle, math.pi / 2 - angle)  # to the nearer axis
    angle_cost = math.sin(2 * angle)
    cw, ch = max(px2, tx2) - min(px1, tx1), max(py2, ty2) - min(py1, ty1)
    gamma = angle_cost - 2 if neg_gamma else 2 - angle_cost
    dist = 2 - math.exp(gamma * (dx / cw)**2) - math.exp(gamma * (dy / ch)**2)
    shape = ((1 - math.exp(-abs(pw - tw) / max(pw, tw)))**4 +
             (1 - math.exp(-abs(ph - th) / max(ph, th)))**4)
    return 1 - max(-1., min(1., iou - 0.5 * (dist + shape)))


@pytest.mark.parametrize('neg_gamma', [False, True])
def test_siou_against_paper_formula(neg_gamma):
    pred = torch.tensor([[0., 0., 2., 2.], [0., 0., 2., 2.], [1., 2., 6., 5.]])
    target = torch.tensor([[1., 0., 3., 2.], [1., 2., 3., 4.], [2., 1., 5., 7.]])
    loss = SIoULoss(neg_gamma=neg_gamma, reduction='none')(pred, target)
    expected = [_siou_reference(p.tolist(), t.tolist(), neg_gamma) for p, t in zip(pred, target)]
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-5, atol=1e-5)
    # Pair 1 by hand: IoU 1/3, angle cost 0, rho_x = (1/3)^2.
    gamma = -2. if neg_gamma else 2.
    assert loss[0].item() == pytest.approx(
        1 - (1 / 3 - 0.5 * (1 - math.exp(gamma / 9))), rel=1e-5)


@pytest.mark.parametrize('loss_cls', [IoULoss, GIoULoss, DIoULoss, CIoULoss, EIoULoss, SIoULoss])
def test_reductions_weights_avg_factor_and_loss_weight(loss_cls):
    pred, target = _random_pairs(n=4)
    per_box = loss_cls(reduction='none')(pred, target)
    assert per_box.shape == (4, )
    weight = torch.tensor([1., 0., 2., 0.5], dtype=torch.float64)
    weighted = (per_box * weight).sum()
    loss = loss_cls()
    torch.testing.assert_close(loss(pred, target), per_box.mean())
    torch.testing.assert_close(loss(pred, target, reduction_override='sum'), per_box.sum())
    torch.testing.assert_close(loss(pred, target, weight), weighted / 4)
    torch.testing.assert_close(loss(pred, target, weight, avg_factor=2.),
                               weighted / (2. + torch.finfo(torch.float32).eps))
    # [N, 4] weights are averaged to one per box.
    torch.testing.assert_close(loss(pred, target, weight[:, None].expand(4, 4) * 1.),
                               weighted / 4)
    # Positional reduction_override (pred, target, weight, avg_factor, reduction_override).
    torch.testing.assert_close(loss(pred, target, weight, None, 'none'), per_box * weight)
    torch.testing.assert_close(loss_cls(loss_weight=3.)(pred, target, reduction_override='sum'),
                               3 * per_box.sum())
    with pytest.raises(ValueError, match='avg_factor can not be used with reduction="sum"'):
        loss(pred, target, avg_factor=2., reduction_override='sum')
    with pytest.raises(AssertionError, match='weight must be'):
        loss(pred, target, torch.ones(4, 2, dtype=torch.float64))


@pytest.mark.parametrize('loss_cls', IOU_FAMILY)
def test_zero_weight_and_empty_input(loss_cls):
    pred = PRED.clone().requires_grad_()
    loss = loss_cls()(pred, TARGET, torch.zeros(3))
    assert loss.item() == 0. and loss.grad_fn is not None
    loss.backward()
    empty = torch.zeros(0, 4, requires_grad=True)
    for kwargs in [dict(), dict(reduction_override='sum'), dict(avg_factor=1.)]:
        loss = loss_cls()(empty, torch.zeros(0, 4), **kwargs)
        assert loss.item() == 0. and loss.grad_fn is not None
    assert loss_cls(reduction='none')(empty, torch.zeros(0, 4)).numel() == 0


def test_iou_loss_zero_weight_with_reduction_none_keeps_the_shape():
    # IoULoss alone skips the zero shortcut for 'none' (as mmdetection).
    assert IoULoss(reduction='none')(PRED, TARGET, torch.zeros(3)).shape == (3, )
    assert GIoULoss(reduction='none')(PRED, TARGET, torch.zeros(3)).shape == ()


@pytest.mark.parametrize('loss_cls', IOU_FAMILY)
def test_bad_reduction_override_is_an_assertion_error(loss_cls):
    # As mmdetection's test: the target is a 1-tuple; the override is checked first.
    with pytest.raises(AssertionError, match='reduction_override'):
        loss_cls()(torch.rand(10, 4), (torch.rand(10, 4), ), None, reduction_override=True)


@pytest.mark.parametrize('loss_cls', [IoULoss, GIoULoss])
def test_half_precision_is_computed_in_float32(loss_cls):
    # Boxes of ~300 px: areas overflow float16 (max 65504) unless upcast.
    pred = torch.tensor([[0., 0., 300., 300.]])
    target = torch.tensor([[0., 0., 300., 250.]])
    loss = loss_cls(reduction='none')(pred.half(), target.half())
    assert loss.dtype == torch.float16
    torch.testing.assert_close(loss.float(), loss_cls(reduction='none')(pred, target),
                               rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('cfg', [
    dict(type='IoULoss'), dict(type='IoULoss', mode='linear'), dict(type='IoULoss', mode='square'),
    dict(type='GIoULoss'), dict(type='DIoULoss'), dict(type='EIoULoss'), dict(type='SIoULoss'),
    dict(type='SIoULoss', neg_gamma=True), dict(type='BoundedIoULoss'),
])
def test_gradcheck(cfg):
    pred, target = _random_pairs(n=3, seed=1)
    loss = MODELS.build(cfg)
    assert torch.autograd.gradcheck(lambda p: loss(p, target, reduction_override='none'),
                                    (pred.requires_grad_(), ))


def test_ciou_gradcheck_below_the_alpha_gate():
    # alpha is a constant (no gradient); below IoU 0.5 it is 0 and the loss is smooth.
    pred = torch.tensor([[0., 0., 2., 3.], [1., 1., 4., 3.]], dtype=torch.float64)
    target = torch.tensor([[1., 1., 4., 3.5], [2., 0., 6., 5.]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: CIoULoss(reduction='none')(p, target),
                                    (pred.requires_grad_(), ))


def test_bounded_iou_target_gets_no_gradient():
    pred, target = _random_pairs(n=3)
    target.requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        BoundedIoULoss()(pred.requires_grad_(), target).backward()
    assert target.grad is None and pred.grad.abs().sum() > 0
