"""Double-Head R-CNN's RoI head and box head: layers and defaults as mmdetection's, the
forward against a plain functional reference, the enlarged regression RoIs, errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import init_weights_quietly
from helpers_state_dict import shapes_of
from helpers_two_stage_extra_keys import double_conv_fc_bbox_head
from mmengine.structures import InstanceData

from mmdet_lite.models.roi_heads import DoubleConvFCBBoxHead, DoubleHeadRoIHead
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules


def make_head(**kwargs) -> DoubleConvFCBBoxHead:
    args = dict(num_convs=2, num_fcs=2, in_channels=4, conv_out_channels=8,
                fc_out_channels=6, roi_feat_size=7, num_classes=3)
    args.update(kwargs)
    head = DoubleConvFCBBoxHead(**args)
    init_weights_quietly(head)
    return head


def randomize_norms(module: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode BN is not identity."""
    generator = torch.Generator().manual_seed(5)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator) * 0.1)


def bn(x, p: dict, prefix: str):
    return F.batch_norm(x, p[f'{prefix}.running_mean'], p[f'{prefix}.running_var'],
                        p[f'{prefix}.weight'], p[f'{prefix}.bias'], training=False, eps=1e-5)


def reference_forward(p: dict, x_cls, x_reg, num_convs: int, num_fcs: int):
    """mmdetection's DoubleConvFCBBoxHead written out with torch.nn.functional."""
    # BasicResBlock: 3x3 conv-BN-ReLU, 1x1 conv-BN; 1x1 conv-BN shortcut; sum, ReLU.
    main = F.relu(bn(F.conv2d(x_reg, p['res_block.conv1.conv.weight'], padding=1), p,
                     'res_block.conv1.bn'))
    main = bn(F.conv2d(main, p['res_block.conv2.conv.weight']), p, 'res_block.conv2.bn')
    short = bn(F.conv2d(x_reg, p['res_block.conv_identity.conv.weight']), p,
               'res_block.conv_identity.bn')
    x = F.relu(main + short)
    for i in range(num_convs):  # Bottlenecks with identity shortcuts
        b = f'conv_branch.{i}'
        y = F.relu(bn(F.conv2d(x, p[f'{b}.conv1.weight']), p, f'{b}.bn1'))
        y = F.relu(bn(F.conv2d(y, p[f'{b}.conv2.weight'], padding=1), p, f'{b}.bn2'))
        y = bn(F.conv2d(y, p[f'{b}.conv3.weight']), p, f'{b}.bn3')
        x = F.relu(y + x)
    bbox_pred = F.linear(x.mean((2, 3)), p['fc_reg.weight'], p['fc_reg.bias'])
    f = x_cls.flatten(1)
    for i in range(num_fcs):
        f = F.relu(F.linear(f, p[f'fc_branch.{i}.weight'], p[f'fc_branch.{i}.bias']))
    cls_score = F.linear(f, p['fc_cls.weight'], p['fc_cls.bias'])
    return cls_score, bbox_pred


def test_coco_head_keys_and_shapes():
    head = DoubleConvFCBBoxHead(num_convs=4, num_fcs=2, in_channels=256,
                                conv_out_channels=1024, fc_out_channels=1024, roi_feat_size=7,
                                num_classes=80)
    assert len(double_conv_fc_bbox_head('h')) == 98
    assert {f'h.{k}': v for k, v in shapes_of(head).items()} == double_conv_fc_bbox_head('h')


def test_defaults_are_mmdetections():
    head = DoubleConvFCBBoxHead(num_convs=1, num_fcs=1, in_channels=8, num_classes=2)
    assert head.conv_out_channels == 1024 and head.fc_out_channels == 1024
    assert head.with_avg_pool and head.norm_cfg == dict(type='BN') and head.conv_cfg is None
    assert head.init_cfg == dict(type='Normal', override=[
        dict(type='Normal', name='fc_cls', std=0.01),
        dict(type='Normal', name='fc_reg', std=0.001),
        dict(type='Xavier', name='fc_branch', distribution='uniform')])
    # Class-agnostic regression: 4 outputs from the conv branch.
    agnostic = make_head(reg_class_agnostic=True)
    assert agnostic.fc_reg.weight.shape == (4, 8)


def test_forward_matches_a_functional_reference():
    head = make_head().eval()
    randomize_norms(head)
    x_cls, x_reg = torch.randn(5, 4, 7, 7), torch.randn(5, 4, 7, 7)
    with torch.no_grad():
        cls_score, bbox_pred = head(x_cls, x_reg)
        expected = reference_forward(dict(head.state_dict()), x_cls, x_reg, 2, 2)
    assert cls_score.shape == (5, 4) and bbox_pred.shape == (5, 12)
    torch.testing.assert_close(cls_score, expected[0])
    torch.testing.assert_close(bbox_pred, expected[1])


def test_res_block_keeps_bn_whatever_norm_cfg_says():
    # mmdetection builds the BasicResBlock without passing conv_cfg / norm_cfg.
    head = make_head(norm_cfg=dict(type='GN', num_groups=2))
    assert isinstance(head.res_block.conv1.bn, torch.nn.BatchNorm2d)
    assert isinstance(head.conv_branch[0].gn1, torch.nn.GroupNorm)  # mmcv names GN 'gn'


@pytest.mark.parametrize('kwargs', [dict(num_convs=0), dict(num_fcs=0),
                                    dict(with_avg_pool=False)])
def test_bad_arguments_raise_assertion_errors(kwargs):
    with pytest.raises(AssertionError):
        make_head(**kwargs)


def make_roi_head(scale: float = 1.3) -> DoubleHeadRoIHead:
    register_all_modules()
    roi_head = MODELS.build(dict(
        type='DoubleHeadRoIHead', reg_roi_scale_factor=scale,
        bbox_roi_extractor=dict(type='SingleRoIExtractor',
                                roi_layer=dict(type='RoIAlign', output_size=7,
                                               sampling_ratio=0),
                                out_channels=4, featmap_strides=[4, 8]),
        bbox_head=dict(type='DoubleConvFCBBoxHead', num_convs=1, num_fcs=1, in_channels=4,
                       conv_out_channels=8, fc_out_channels=6, roi_feat_size=7,
                       num_classes=3),
        test_cfg=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=10)))
    init_weights_quietly(roi_head)
    return roi_head.eval()


def test_regression_features_come_from_enlarged_rois(monkeypatch):
    roi_head = make_roi_head(1.3)
    assert roi_head.reg_roi_scale_factor == 1.3
    feats = (torch.randn(1, 4, 64, 64), torch.randn(1, 4, 32, 32))
    # A 100x100 RoI maps to level 0 (100 / 56 < 2); enlarged to 130x130 it would map to
    # level 1, but the level comes from the RoI as given.
    rois = torch.tensor([[0., 60., 60., 160., 160.], [0., 10., 10., 30., 30.]])
    seen = {}

    def capture(x_cls, x_reg):
        seen.update(x_cls=x_cls, x_reg=x_reg)
        return torch.zeros(2, 4), torch.zeros(2, 12)

    monkeypatch.setattr(roi_head.bbox_head, 'forward', capture)
    with torch.no_grad():
        out = roi_head._bbox_forward(feats, rois)
        # Hand-enlarged around the centres: (110, 110) +- 65 and (20, 20) +- 13.
        enlarged = torch.tensor([[0., 45., 45., 175., 175.], [0., 7., 7., 33., 33.]])
        expected_reg = roi_head.bbox_roi_extractor.roi_layers[0](feats[0], enlarged)
        expected_cls = roi_head.bbox_roi_extractor.roi_layers[0](feats[0], rois)
    torch.testing.assert_close(seen['x_reg'], expected_reg)
    torch.testing.assert_close(seen['x_cls'], expected_cls)
    assert out['bbox_feats'] is seen['x_cls']
    assert not math.isclose(seen['x_reg'].abs().sum(), seen['x_cls'].abs().sum())


def test_predict_gives_detections():
    roi_head = make_roi_head()
    feats = (torch.randn(1, 4, 16, 16), torch.randn(1, 4, 8, 8))
    from mmdet_lite.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                         scale_factor=(1.0, 1.0)))
    proposals = InstanceData(bboxes=torch.tensor([[4., 4., 30., 30.], [20., 10., 60., 50.]]))
    with torch.no_grad():
        result = roi_head.predict(feats, [proposals], [sample])[0]
    assert result.bboxes.shape[1] == 4 and 0 < len(result) <= 6
    assert result.labels.dtype == torch.long and torch.all(result.labels < 3)
