"""RFP and ASPP: mmdetection's keys and shapes, recursion by recomputation, init, errors.

The RFP backbone here is a small test module with ``rfp_forward``; DetectoRS_ResNet is not
part of mmdet_lite.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmdet_lite.models.necks import FPN, RFP
from mmdet_lite.models.necks.rfp import ASPP
from mmdet_lite.registry import MODELS

IN = [4, 8, 16, 32]


@MODELS.register_module(force=True)
class RFPTestBackbone(BaseModule):
    """Strided convs; each stage also adds a 1x1 conv of the fed-back feature."""

    def __init__(self, rfp_channels: int = 12):
        super().__init__()
        self.stem = nn.Conv2d(3, IN[0], 3, stride=4, padding=1)
        self.stages = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1)
                                    for a, b in zip(IN[:-1], IN[1:]))
        self.rfp_convs = nn.ModuleList(nn.Conv2d(rfp_channels, c, 1) for c in IN[1:])
        self.init_calls = 0

    def init_weights(self):
        self.init_calls += 1

    def forward(self, img):
        x = self.stem(img)
        outs = [x]
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return tuple(outs)

    def rfp_forward(self, img, rfp_feats):
        x = self.stem(img)
        outs = [x]
        for i, stage in enumerate(self.stages):
            x = stage(x) + self.rfp_convs[i](rfp_feats[i + 1])
            outs.append(x)
        return tuple(outs)


def build(steps, **kwargs):
    return RFP(rfp_steps=steps, rfp_backbone=dict(type='RFPTestBackbone'),
               aspp_out_channels=3, in_channels=IN, out_channels=12, num_outs=4, **kwargs)


def test_aspp_keys_shapes_and_forward():
    aspp = ASPP(6, 2)
    assert {k: tuple(v.shape) for k, v in aspp.state_dict().items()} == {
        'aspp.0.weight': (2, 6, 1, 1), 'aspp.0.bias': (2,),
        'aspp.1.weight': (2, 6, 3, 3), 'aspp.1.bias': (2,),
        'aspp.2.weight': (2, 6, 3, 3), 'aspp.2.bias': (2,),
        'aspp.3.weight': (2, 6, 1, 1), 'aspp.3.bias': (2,)}
    assert aspp.aspp[2].dilation == (6, 6) and aspp.aspp[2].padding == (6, 6)
    assert aspp.init_cfg == dict(type='Kaiming', layer='Conv2d')
    x = torch.rand(2, 6, 5, 7)
    out = aspp(x)
    assert out.shape == (2, 8, 5, 7)
    torch.testing.assert_close(out[:, 2:4], F.relu(aspp.aspp[1](x)))
    pooled = F.relu(aspp.aspp[3](x.mean(dim=(2, 3), keepdim=True)))
    torch.testing.assert_close(out[:, 6:], pooled.expand(2, 2, 5, 7))
    with pytest.raises(AssertionError, match='must end with 1'):
        ASPP(6, 2, dilations=(1, 3, 6))


def test_state_dict_keys_and_shapes():
    neck = build(2)
    shapes = {k: tuple(v.shape) for k, v in neck.state_dict().items()}
    fpn = FPN(IN, 12, num_outs=4)
    expected = {k: tuple(v.shape) for k, v in fpn.state_dict().items()}
    expected.update({f'rfp_modules.0.{k}': tuple(v.shape)
                     for k, v in RFPTestBackbone().state_dict().items()})
    expected.update({f'rfp_aspp.{k}': tuple(v.shape)
                     for k, v in ASPP(12, 3).state_dict().items()})
    expected.update({'rfp_weight.weight': (1, 12, 1, 1), 'rfp_weight.bias': (1,)})
    assert shapes == expected
    assert len(build(3).rfp_modules) == 2 and len(build(1).rfp_modules) == 0


def test_one_step_is_fpn():
    neck = build(1).eval()
    fpn = FPN(IN, 12, num_outs=4).eval()
    fpn.load_state_dict(neck.state_dict(), strict=False)
    img = torch.rand(1, 3, 64, 64)
    feats = RFPTestBackbone()(img)
    outs = neck([img, *feats])
    assert isinstance(outs, tuple)
    for a, b in zip(outs, fpn(feats)):
        torch.testing.assert_close(a, b)


def test_two_steps_by_recomputation_after_init():
    neck = build(2)
    neck.init_weights()
    assert neck.rfp_modules[0].init_calls == 1
    assert torch.count_nonzero(neck.rfp_weight.weight) == 0  # sigmoid(0): an even blend
    neck.eval()
    img = torch.rand(2, 3, 64, 64)
    feats = RFPTestBackbone()(img)
    outs = neck([img, *feats])
    assert isinstance(outs, list)  # as mmdetection returns after a recursion step
    assert [tuple(o.shape) for o in outs] == [(2, 12, s, s) for s in (16, 8, 4, 2)]
    first = FPN.forward(neck, feats)
    rfp_feats = [first[0]] + [neck.rfp_aspp(x) for x in first[1:]]
    second = FPN.forward(neck, neck.rfp_modules[0].rfp_forward(img, rfp_feats))
    for out, new, old in zip(outs, second, first):
        torch.testing.assert_close(out, 0.5 * new + 0.5 * old)


def test_errors():
    with pytest.raises(AssertionError, match='init_cfg must be None'):
        build(2, init_cfg=dict(type='Xavier'))
    with pytest.raises(AssertionError, match=r'image plus 4 backbone maps \(5 tensors\)'):
        build(2)([torch.rand(1, 4, 16, 16)] * 4)
