"""AnchorFreeHead: arguments and defaults, tower layout and keys, forward, legacy checkpoints."""
import inspect

import pytest
import torch
from helpers_fcos_keys import conv2d
from helpers_state_dict import shapes_of

from mmdet_lite.models.dense_heads import AnchorFreeHead, BaseDenseHead
from mmdet_lite.models.layers.dcn import DeformConv2dPack, ModulatedDeformConv2dPack
from mmdet_lite.models.task_modules.coders import DistancePointBBoxCoder
from mmdet_lite.models.task_modules.prior_generators import MlvlPointGenerator
from mmdet_lite.registry import MODELS


class PlainAnchorFreeHead(AnchorFreeHead):
    """The smallest concrete subclass: AnchorFreeHead leaves the training targets abstract."""

    def loss_by_feat(self, *args, **kwargs):
        return {}

    def get_targets(self, points, batch_gt_instances):
        return None


def test_is_registered_and_abstract():
    assert MODELS.get('AnchorFreeHead') is AnchorFreeHead
    assert issubclass(AnchorFreeHead, BaseDenseHead)
    with pytest.raises(TypeError, match='abstract'):
        AnchorFreeHead(num_classes=3, in_channels=8)


def test_signature_defaults_are_mmdetections():
    params = inspect.signature(AnchorFreeHead.__init__).parameters
    assert list(params) == [
        'self', 'num_classes', 'in_channels', 'feat_channels', 'stacked_convs', 'strides',
        'dcn_on_last_conv', 'conv_bias', 'loss_cls', 'loss_bbox', 'bbox_coder', 'conv_cfg',
        'norm_cfg', 'train_cfg', 'test_cfg', 'init_cfg']
    defaults = {name: p.default for name, p in params.items()}
    assert defaults['feat_channels'] == 256 and defaults['stacked_convs'] == 4
    assert tuple(defaults['strides']) == (4, 8, 16, 32, 64)
    assert defaults['dcn_on_last_conv'] is False and defaults['conv_bias'] == 'auto'
    assert defaults['loss_cls'] == dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                                        alpha=0.25, loss_weight=1.0)
    assert defaults['loss_bbox'] == dict(type='IoULoss', loss_weight=1.0)
    assert defaults['bbox_coder'] == dict(type='DistancePointBBoxCoder')
    assert defaults['conv_cfg'] is None and defaults['norm_cfg'] is None
    assert defaults['init_cfg'] == dict(
        type='Normal', layer='Conv2d', std=0.01,
        override=dict(type='Normal', name='conv_cls', std=0.01, bias_prob=0.01))


def test_attributes_priors_and_coder():
    head = PlainAnchorFreeHead(num_classes=3, in_channels=8, feat_channels=16,
                               strides=[8, 16])
    assert head.cls_out_channels == 3 and head.use_sigmoid_cls
    assert isinstance(head.prior_generator, MlvlPointGenerator)
    assert head.prior_generator.strides == [(8, 8), (16, 16)]
    assert head.num_base_priors == 1
    assert isinstance(head.bbox_coder, DistancePointBBoxCoder)
    # A softmax classifier needs a background column.
    softmax = PlainAnchorFreeHead(num_classes=3, in_channels=8, feat_channels=16,
                                  loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False))
    assert softmax.cls_out_channels == 4 and softmax.conv_cls.out_channels == 4


def test_state_dict_without_norm_has_biased_tower_convs():
    head = PlainAnchorFreeHead(num_classes=3, in_channels=8, feat_channels=16,
                               stacked_convs=2)
    expected = {}
    for tower in ('cls_convs', 'reg_convs'):
        expected.update(conv2d(f'{tower}.0.conv', 8, 16, 3))
        expected.update(conv2d(f'{tower}.1.conv', 16, 16, 3))
    expected.update(conv2d('conv_cls', 16, 3, 3))
    expected.update(conv2d('conv_reg', 16, 4, 3))
    assert shapes_of(head) == expected


@pytest.mark.parametrize('conv_bias, has_bias', [('auto', False), (True, True),
                                                 (False, False)])
def test_conv_bias_with_a_norm(conv_bias, has_bias):
    head = PlainAnchorFreeHead(num_classes=3, in_channels=8, feat_channels=16,
                               stacked_convs=1, conv_bias=conv_bias,
                               norm_cfg=dict(type='GN', num_groups=4))
    keys = set(head.state_dict())
    assert {'cls_convs.0.gn.weight', 'cls_convs.0.gn.bias'} <= keys
    assert ('cls_convs.0.conv.bias' in keys) is has_bias
    assert ('reg_convs.0.conv.bias' in keys) is has_bias


def test_invalid_conv_bias_is_an_assertion_error():
    with pytest.raises(AssertionError, match='conv_bias'):
        PlainAnchorFreeHead(num_classes=3, in_channels=8, conv_bias='yes')


def test_dcn_on_last_conv_makes_the_last_tower_conv_deformable():
    head = PlainAnchorFreeHead(num_classes=3, in_channels=8, feat_channels=8,
                               stacked_convs=2, dcn_on_last_conv=True)
    for tower in (head.cls_convs, head.reg_convs):
        assert isinstance(tower[0].conv, torch.nn.Conv2d)
        assert not isinstance(tower[0].conv, ModulatedDeformConv2dPack)
        assert isinstance(tower[1].conv, ModulatedDeformConv2dPack)


def test_init_weights_zeroes_the_offsets_of_deformable_convs():
    # DCN (v1) has no init_weights of its own, so the head's Normal init of every Conv2d
    # reaches its offset conv; the head zeroes it afterwards, as mmdetection's dense heads.
    head = PlainAnchorFreeHead(num_classes=3, in_channels=8, feat_channels=8,
                               stacked_convs=1, conv_cfg=dict(type='DCN'),
                               norm_cfg=dict(type='GN', num_groups=4))  # DCN has no bias
    assert isinstance(head.cls_convs[0].conv, DeformConv2dPack)
    head.init_weights()
    for tower in (head.cls_convs, head.reg_convs):
        offset = tower[0].conv.conv_offset
        assert torch.count_nonzero(offset.weight) == 0
        assert torch.count_nonzero(offset.bias) == 0
        assert torch.count_nonzero(tower[0].conv.weight) > 0


def test_init_gives_every_class_a_prior_of_one_percent():
    head = PlainAnchorFreeHead(num_classes=3, in_channels=8, feat_channels=8)
    head.init_weights()
    assert torch.allclose(head.conv_cls.bias.sigmoid(), torch.full((3, ), 0.01))
    assert torch.count_nonzero(head.conv_reg.bias) == 0
    assert head.conv_reg.weight.std() < 0.02


def test_forward_shapes_and_tower_features():
    head = PlainAnchorFreeHead(num_classes=3, in_channels=8, feat_channels=16,
                               stacked_convs=2, strides=[8, 16])
    feats = (torch.rand(2, 8, 8, 8), torch.rand(2, 8, 4, 4))
    cls_scores, bbox_preds = head(feats)
    assert [tuple(s.shape) for s in cls_scores] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, 8, 8), (2, 4, 4, 4)]

    cls_score, bbox_pred, cls_feat, reg_feat = head.forward_single(feats[0])
    # The predictors sit on the tower outputs.
    expected_cls_feat = head.cls_convs[1](head.cls_convs[0](feats[0]))
    expected_reg_feat = head.reg_convs[1](head.reg_convs[0](feats[0]))
    assert torch.allclose(cls_feat, expected_cls_feat)
    assert torch.allclose(reg_feat, expected_reg_feat)
    assert torch.allclose(cls_score, head.conv_cls(expected_cls_feat))
    assert torch.allclose(bbox_pred, head.conv_reg(expected_reg_feat))


def test_unversioned_checkpoint_predictor_names_are_renamed():
    head = PlainAnchorFreeHead(num_classes=3, in_channels=8, feat_channels=8,
                               stacked_convs=1)
    current = {k: torch.rand_like(v) for k, v in head.state_dict().items()}
    # An old checkpoint named the predictors after the model (e.g. FCOS v1: fcos_cls).
    legacy = {k.replace('conv_cls', 'fcos_cls').replace('conv_reg', 'fcos_reg'): v
              for k, v in current.items()}
    assert 'fcos_cls.weight' in legacy and 'conv_cls.weight' not in legacy
    head.load_state_dict(legacy, strict=True)  # a plain dict carries no version metadata
    assert torch.equal(head.conv_cls.weight, current['conv_cls.weight'])
    assert torch.equal(head.conv_reg.bias, current['conv_reg.bias'])
    assert torch.equal(head.cls_convs[0].conv.weight, current['cls_convs.0.conv.weight'])

    # A versioned state dict (what state_dict() returns) is loaded as is.
    versioned = head.state_dict()
    assert versioned._metadata['']['version'] == 1
    head.load_state_dict(versioned, strict=True)
