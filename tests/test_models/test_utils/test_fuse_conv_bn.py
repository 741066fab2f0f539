"""fuse_conv_bn: eval-mode BatchNorm folded into the conv before it, same outputs.

A hand-computed 1-channel case pins the formula; the pattern cases say which conv/BN pairs
fold and which must not; ResNet-18 and a tiny Faster R-CNN check that whole models compute
the same function afterwards.
"""
import copy

import pytest
import torch
from helpers_tools import TINY_CONFIG
from mmcv.cnn import ConvModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.backbones import ResNet
from mmdet_lite.models.layers.normed_predictor import NormedConv2d
from mmdet_lite.models.utils import fuse_conv_bn


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial statistics and affine parameters in every BN (fresh ones are identity)."""
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


def _num_bn(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def _conv_bn(bias: bool) -> nn.Sequential:
    """1 -> 1 channel 1x1 conv (w = 2, b = 1) and BN (mean 3, var 4, gamma .5, beta .25)."""
    conv = nn.Conv2d(1, 1, 1, bias=bias)
    bn = nn.BatchNorm2d(1, eps=0.0)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        if bias:
            conv.bias.fill_(1.0)
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(4.0)
        bn.weight.fill_(0.5)
        bn.bias.fill_(0.25)
    return nn.Sequential(conv, bn).eval()


def test_one_channel_conv_bn_folds_to_the_hand_computed_weight_and_bias():
    # scale = 0.5 / sqrt(4) = 0.25; w' = 2 * 0.25; b' = (1 - 3) * 0.25 + 0.25
    fused = fuse_conv_bn(_conv_bn(bias=True))
    assert isinstance(fused[1], nn.Identity)
    assert fused[0].weight.item() == 0.5
    assert fused[0].bias.item() == -0.25
    x = torch.tensor([[[[1.0, -2.0], [0.5, 4.0]]]])
    assert torch.equal(fused(x), 0.5 * x - 0.25)


def test_conv_without_bias_gets_one():
    # b' = (0 - 3) * 0.25 + 0.25
    model = _conv_bn(bias=False)
    assert model[0].bias is None
    fused = fuse_conv_bn(model)
    assert fused[0].bias.item() == -0.5
    assert set(fused.state_dict()) == {'0.weight', '0.bias'}


def test_grouped_conv_with_eps_matches_unfused():
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False),
                          nn.BatchNorm2d(6), nn.ReLU())
    model = _randomize_bn(model).eval()
    x = torch.randn(2, 4, 8, 8)
    expected = model(x)
    fuse_conv_bn(model)
    assert _num_bn(model) == 0
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('case', ['relu_in_between', 'training_mode', 'normed_conv',
                                  'no_running_stats', 'norm_before_conv'])
def test_pairs_that_must_not_fold_are_left_alone(case):
    if case == 'relu_in_between':  # the BN sees relu(conv(x)), not conv(x)
        model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    elif case == 'training_mode':  # normalizes with the batch's statistics
        model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    elif case == 'normed_conv':  # its forward rescales the weight, a folded BN would be lost
        model = nn.Sequential(NormedConv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    elif case == 'no_running_stats':  # uses batch statistics even in eval mode
        model = nn.Sequential(nn.Conv2d(3, 4, 1),
                              nn.BatchNorm2d(4, track_running_stats=False)).eval()
    else:  # ConvModule with the norm first normalizes the conv's input
        model = ConvModule(4, 4, 1, norm_cfg=dict(type='BN'), order=('norm', 'conv', 'act'))
        model.eval()
    keys = set(model.state_dict())
    fuse_conv_bn(model)
    assert _num_bn(model) == 1
    assert set(model.state_dict()) == keys


@pytest.mark.parametrize('efficient', [False, True])
def test_conv_module_norm_folds_into_its_conv(efficient):
    model = ConvModule(3, 4, 3, padding=1, norm_cfg=dict(type='BN'),
                       efficient_conv_bn_eval=efficient)
    model = _randomize_bn(model).eval()
    x = torch.randn(1, 3, 8, 8)
    expected = model(x)
    fuse_conv_bn(model)
    assert isinstance(model.norm, nn.Identity) and isinstance(model.bn, nn.Identity)
    assert model.conv.bias is not None
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_frozen_batch_norm_folds():
    from torchvision.ops.misc import FrozenBatchNorm2d
    frozen = FrozenBatchNorm2d(4)
    frozen.running_mean.uniform_(-1, 1)
    frozen.running_var.uniform_(0.5, 2)
    frozen.weight.uniform_(0.5, 1.5)
    frozen.bias.uniform_(-0.5, 0.5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), frozen)
    x = torch.randn(1, 3, 6, 6)
    expected = model(x)
    fuse_conv_bn(model)
    assert isinstance(model[1], nn.Identity)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_resnet18_fused_gives_the_same_features_without_batch_norm():
    model = _randomize_bn(ResNet(depth=18, base_channels=8)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_conv_bn(copy.deepcopy(model))
        outputs = fused(x)
    assert _num_bn(model) == 20 and _num_bn(fused) == 0
    assert not any('running_mean' in key for key in fused.state_dict())
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_tiny_faster_rcnn_fused_gives_the_same_raw_outputs_and_detections():
    from mmdet_lite.apis import init_detector
    from mmdet_lite.structures import DetDataSample
    model = _randomize_bn(init_detector(TINY_CONFIG)).eval()
    model.roi_head.test_cfg.score_thr = 0.0  # random weights: keep every detection to compare
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert _num_bn(fused.backbone) == 0
    images = torch.randn(1, 3, 64, 64)  # normalized, as the data preprocessor hands them
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                         scale_factor=(1.0, 1.0), batch_input_shape=(64, 64)))
    with torch.no_grad():
        raw, raw_fused = (m(images, [sample], mode='tensor') for m in (model, fused))
        det, det_fused = (m.predict(images, [sample])[0].pred_instances for m in (model, fused))
    for out, ref in zip(torch.utils._pytree.tree_leaves(raw_fused),
                        torch.utils._pytree.tree_leaves(raw)):
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert len(det) > 0
    torch.testing.assert_close(det_fused.bboxes, det.bboxes, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(det_fused.scores, det.scores, atol=1e-5, rtol=1e-5)
    assert torch.equal(det_fused.labels, det.labels)
