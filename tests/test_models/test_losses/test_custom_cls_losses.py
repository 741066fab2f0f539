"""CrossEntropyCustomLoss and FocalCustomLoss: the custom classifier-layout API (V3Det)."""
import pytest
import torch
import torch.nn.functional as F

from mmdet_lite.models.losses import CrossEntropyCustomLoss, FocalCustomLoss, FocalLoss
from mmdet_lite.registry import MODELS

SCORES = torch.tensor([[2., 0.5, -1., 0.3], [0.1, 1.5, 0.3, 2.], [-1., 0.5, 0.8, 0.]])
LABELS = torch.tensor([0, 3, 1])  # 3 == num_classes: background


def test_cross_entropy_custom_softmax_layout():
    loss = MODELS.build(dict(type='CrossEntropyCustomLoss', num_classes=3))
    assert loss.custom_cls_channels and loss.custom_activation and loss.custom_accuracy
    assert loss.get_cls_channels(3) == 4
    torch.testing.assert_close(loss.get_activation(SCORES), F.softmax(SCORES, -1))
    # Row 0 (label 0, argmax 0) is right; row 2 (label 1, argmax 2) is wrong.
    assert loss.get_accuracy(SCORES, LABELS)['acc_classes'].item() == pytest.approx(50.)
    torch.testing.assert_close(loss(SCORES, LABELS), F.cross_entropy(SCORES, LABELS))
    with pytest.raises(AssertionError):
        loss.get_cls_channels(4)
    with pytest.raises(AssertionError):
        CrossEntropyCustomLoss()


def test_cross_entropy_custom_sigmoid_layout():
    loss = CrossEntropyCustomLoss(num_classes=3, use_sigmoid=True)
    assert loss.get_cls_channels(3) == 3
    probs = SCORES[:, :3].sigmoid()
    background = (1 - probs.sum(1, keepdim=True)).clamp(0, 1)
    torch.testing.assert_close(loss.get_activation(SCORES[:, :3]),
                               torch.cat([probs, background], 1))


def test_focal_custom_loss_equals_focal_loss():
    loss = MODELS.build(dict(type='FocalCustomLoss', num_classes=4))
    assert loss.get_cls_channels(4) == 4
    labels = torch.tensor([0, 4, 2])
    weight = torch.tensor([1., 2., 0.5])
    torch.testing.assert_close(loss(SCORES, labels, weight, avg_factor=2.),
                               FocalLoss()(SCORES, labels, weight, avg_factor=2.))
    torch.testing.assert_close(loss.get_activation(SCORES), SCORES.sigmoid())
    # Foreground rows 0 and 2: argmax 0 and 2, both right; row 1 (background) is left out.
    assert loss.get_accuracy(SCORES, labels)['acc_classes'].item() == pytest.approx(100.)
    with pytest.raises(AssertionError, match='reduction_override'):
        loss(SCORES, labels, reduction_override='max')
    with pytest.raises(AssertionError):
        FocalCustomLoss()
    with pytest.raises(AssertionError):
        FocalCustomLoss(num_classes=4, use_sigmoid=False)
