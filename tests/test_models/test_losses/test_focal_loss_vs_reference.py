"""FocalLoss against torchvision.ops.sigmoid_focal_loss on seeded random logits.

Mapping of mmdetection's conventions (the spec) onto torchvision's function:

- Targets: mmdetection takes class labels [N] in 0..C, where C (``num_classes``) means
  background; torchvision takes binary targets [N, C]. Label ``l < C`` is the one-hot row
  with a 1 in column ``l``; label C is an all-zero row. ``F.one_hot(labels, C + 1)[:, :C]``.
- ``weight`` [N] multiplies every class of sample i (``[N, 1]`` broadcast); [N, C] is
  element-wise.
- Reduction ``'mean'`` without ``avg_factor`` is the mean over all N * C entries
  (torchvision's ``'mean'``); with ``avg_factor`` it is ``sum / (avg_factor + eps)``,
  eps = float32 eps, i.e. torchvision's ``'sum'`` divided by the number of positives.
- ``loss_weight`` multiplies the result.
"""
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_focal

from mmdet_lite.models.losses import FocalLoss

NUM_CLASSES = 5
F32_EPS = torch.finfo(torch.float32).eps


def random_case(n=300, seed=0, scale=3.):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, NUM_CLASSES, generator=gen) * scale
    labels = torch.randint(0, NUM_CLASSES + 1, (n, ), generator=gen)  # 5 = background
    labels[:n // 2] = NUM_CLASSES  # mostly background, as on a dense head
    one_hot = F.one_hot(labels, NUM_CLASSES + 1)[:, :NUM_CLASSES].float()
    return logits, labels, one_hot


@pytest.mark.parametrize('gamma, alpha', [(2.0, 0.25), (1.5, 0.4), (0.0, 0.5), (3.0, 0.9)])
def test_elementwise_loss_equals_torchvision(gamma, alpha):
    logits, labels, one_hot = random_case()
    ours = FocalLoss(gamma=gamma, alpha=alpha, reduction='none')(logits, labels)
    # The reference runs in float64: in float32 torchvision's own BCE loses up to 0.5% on
    # entries of ~1e-5 (gamma 0), while ours (softplus) stays within ~1e-7 relative.
    ref = tv_focal(logits.double(), one_hot.double(), alpha=alpha, gamma=gamma,
                   reduction='none')
    assert ours.shape == ref.shape == (300, NUM_CLASSES)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-7)
    # One-hot targets take the other code path; same answer.
    ours_one_hot = FocalLoss(gamma=gamma, alpha=alpha, reduction='none')(logits, one_hot)
    torch.testing.assert_close(ours_one_hot.double(), ref, rtol=1e-5, atol=1e-6)


def test_mean_and_sum_reductions_equal_torchvision():
    logits, labels, one_hot = random_case(seed=1)
    torch.testing.assert_close(FocalLoss()(logits, labels),
                               tv_focal(logits, one_hot, reduction='mean'))
    torch.testing.assert_close(FocalLoss(reduction='sum')(logits, labels),
                               tv_focal(logits, one_hot, reduction='sum'))


def test_avg_factor_weight_and_loss_weight_map_to_torchvision_sum():
    logits, labels, one_hot = random_case(seed=2)
    num_pos = int((labels < NUM_CLASSES).sum())
    weight = torch.rand(len(labels), generator=torch.Generator().manual_seed(3))
    ref = tv_focal(logits, one_hot, reduction='none')
    ours = FocalLoss(loss_weight=2.5)(logits, labels, weight, avg_factor=num_pos)
    expected = 2.5 * (ref * weight[:, None]).sum() / (num_pos + F32_EPS)
    torch.testing.assert_close(ours, expected)
    # An element-wise weight [N, C] multiplies entry by entry.
    weight_nc = torch.rand(len(labels), NUM_CLASSES, generator=torch.Generator().manual_seed(4))
    ours = FocalLoss()(logits, labels, weight_nc, avg_factor=num_pos)
    torch.testing.assert_close(ours, (ref * weight_nc).sum() / (num_pos + F32_EPS))


def test_gradients_equal_torchvision():
    logits, labels, one_hot = random_case(seed=5)
    ours_in = logits.clone().requires_grad_()
    ref_in = logits.clone().requires_grad_()
    FocalLoss()(ours_in, labels, avg_factor=17.).backward()
    (tv_focal(ref_in, one_hot, reduction='sum') / (17. + F32_EPS)).backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-5, atol=1e-8)
    assert ours_in.grad.abs().sum() > 0


def test_saturated_logits_stay_finite_and_equal_torchvision():
    # |logit| = 60: sigmoid is exactly 0 or 1 in float32, log(p) must not be -inf.
    logits = torch.tensor([[60., -60., 0.], [-60., 60., 20.]])
    labels = torch.tensor([0, 0])  # row 0 right and confident, row 1 confidently wrong
    one_hot = F.one_hot(labels, 4)[:, :3].float()
    ours = FocalLoss(reduction='none')(logits, labels)
    ref = tv_focal(logits, one_hot, reduction='none')
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref)
    assert ours[1, 0].item() == pytest.approx(0.25 * 60, rel=1e-5)  # alpha * -log(sigmoid(-60))


def test_activated_probabilities_equal_torchvision_on_their_logits():
    logits, labels, one_hot = random_case(seed=6, scale=2.)
    ours = FocalLoss(activated=True, reduction='none')(logits.sigmoid(), labels)
    torch.testing.assert_close(ours, tv_focal(logits, one_hot, reduction='none'),
                               rtol=1e-4, atol=1e-6)
