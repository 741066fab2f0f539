"""FCNMaskHead.predict_by_feat(activate_map=...): mmdetection 3.3 skips the sigmoid when
the maps are already activated (activate_map=True) and applies it otherwise."""
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.roi_heads import FCNMaskHead

META = dict(img_shape=(40, 40), ori_shape=(40, 40), scale_factor=(1.0, 1.0))


def predict(preds, thr, **kwargs):
    head = FCNMaskHead(num_convs=0, in_channels=4, num_classes=2)
    results = InstanceData(bboxes=torch.tensor([[8., 8., 32., 32.]]),
                           labels=torch.tensor([1]), scores=torch.ones(1))
    return head.predict_by_feat((preds, ), [results], [META],
                                ConfigDict(mask_thr_binary=thr), **kwargs)[0].masks


def test_default_applies_the_sigmoid_to_logits():
    preds = torch.full((1, 2, 28, 28), 0.3)  # sigmoid(0.3) = 0.574 >= 0.5
    preds[0, 0] = -5.0  # the other class's channel must not matter
    masks = predict(preds, 0.5)
    assert masks.dtype == torch.bool and masks[0, 10:30, 10:30].all()
    assert not masks[0, :5].any()
    assert torch.equal(masks, predict(preds, 0.5, activate_map=False))


def test_activated_maps_are_used_as_they_are():
    probs = torch.full((1, 2, 28, 28), 0.3)  # already probabilities: 0.3 < 0.5
    assert not predict(probs, 0.5, activate_map=True).any()
    soft = predict(probs, -1, activate_map=True)
    # Soft masks are uint8 probabilities * 255, as mmdetection stores them.
    assert soft.dtype == torch.uint8
    assert soft[0, 20, 20].item() == int(0.3 * 255)
    assert predict(probs, -1)[0, 20, 20].item() == int(torch.sigmoid(torch.tensor(0.3)) * 255)
