"""DABDETR: mmdetection 3.3's state_dict layout and config, anchor queries, patterns,
random reference points, losses and predictions on a tiny model."""
import copy
from pathlib import Path

import pytest
import torch
from helpers import build_detector, make_batch, make_det_sample
from helpers_conditional_dab_keys import dab_detr_r50_keys
from mmengine.config import Config

from mmdet_lite.models.detectors import DABDETR, DETR
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIG = Path(__file__).resolve().parents[3] / 'configs' / 'dab_detr' / \
    'dab-detr_r50_8xb2-50e_coco.py'


def tiny_cfg(num_queries=10, num_layers=(1, 3), **kwargs):
    attn = dict(embed_dims=32, num_heads=4, attn_drop=0., proj_drop=0.)
    ffn = dict(embed_dims=32, feedforward_channels=64, ffn_drop=0., act_cfg=dict(type='PReLU'))
    cfg = dict(
        type='DABDETR',
        num_queries=num_queries,
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=1),
        backbone=dict(type='ResNet', depth=18, base_channels=8, out_indices=(3, ),
                      frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=True),
        neck=dict(type='ChannelMapper', in_channels=[64], kernel_size=1, out_channels=32,
                  act_cfg=None, norm_cfg=None, num_outs=1),
        encoder=dict(num_layers=num_layers[0],
                     layer_cfg=dict(self_attn_cfg=dict(embed_dims=32, num_heads=4),
                                    ffn_cfg=ffn)),
        decoder=dict(num_layers=num_layers[1], query_dim=4,
                     layer_cfg=dict(self_attn_cfg=dict(attn, cross_attn=False),
                                    cross_attn_cfg=dict(attn, cross_attn=True), ffn_cfg=ffn)),
        positional_encoding=dict(num_feats=16, temperature=20, normalize=True),
        bbox_head=dict(type='DABDETRHead', num_classes=3, embed_dims=32,
                       loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                                     alpha=0.25, loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2., eps=1e-8),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=num_queries))
    cfg.update(kwargs)
    return copy.deepcopy(cfg)


def two_images():
    return [make_det_sample([[4, 4, 30, 40], [40, 10, 60, 30]], [0, 2], img_shape=(64, 96)),
            make_det_sample([[10, 10, 50, 50]], [1], img_shape=(128, 128))]


def test_state_dict_matches_mmdetection():
    cfg = Config.fromfile(str(CONFIG))
    register_all_modules()
    model = MODELS.build(cfg.model)
    assert isinstance(model, DABDETR) and isinstance(model, DETR)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = dab_detr_r50_keys()
    assert len(expected) == 637
    assert sorted(set(actual) - set(expected)) == []
    assert sorted(set(expected) - set(actual)) == []
    assert actual == expected


def test_config_values():
    cfg = Config.fromfile(str(CONFIG))
    model = cfg.model
    assert (model.num_queries, model.with_random_refpoints, model.num_patterns) == \
        (300, False, 0)
    assert model.positional_encoding == dict(num_feats=128, temperature=20, normalize=True)
    assert (model.decoder.query_dim, model.decoder.query_scale_type,
            model.decoder.with_modulated_hw_attn) == (4, 'cond_elewise', True)
    assert model.decoder.layer_cfg.ffn_cfg.act_cfg == dict(type='PReLU')
    assert model.bbox_head.loss_cls.loss_weight == 1.0
    assert model.train_cfg.assigner.match_costs[0] == dict(type='FocalLossCost', weight=2.,
                                                           eps=1e-8)
    assert model.test_cfg.max_per_img == 300
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
    assert cfg.train_cfg.max_epochs == 50 and cfg.param_scheduler[0].milestones == [40]
    assert 'init_cfg' not in model.backbone  # nothing to download


def test_decoder_refines_with_the_heads_box_branch():
    model = build_detector(tiny_cfg())
    seen = {}
    model.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True)
    with torch.no_grad():
        head_inputs = model.forward_transformer(model.extract_feat(torch.randn(2, 3, 64, 64)))
    assert seen['reg_branches'] is model.bbox_head.fc_reg
    assert seen['query'].shape == (2, 10, 32) and torch.count_nonzero(seen['query']) == 0
    torch.testing.assert_close(seen['query_pos'],
                               model.query_embedding.weight.expand(2, -1, -1))
    assert head_inputs['hidden_states'].shape == (3, 2, 10, 32)
    assert head_inputs['references'].shape == (3, 2, 10, 4)
    # The head's last box layer starts at zero: every layer keeps the initial anchors.
    anchors = model.query_embedding.weight.sigmoid().expand(3, 2, -1, -1)
    torch.testing.assert_close(head_inputs['references'], anchors, atol=1e-5, rtol=0)


def test_patterns_pair_every_pattern_with_every_anchor():
    model = build_detector(tiny_cfg(num_queries=4, num_patterns=3))
    assert model.patterns.weight.shape == (3, 32)
    decoder_inputs, head_inputs = model.pre_decoder(torch.randn(2, 5, 32))
    assert head_inputs == {}
    query, query_pos = decoder_inputs['query'], decoder_inputs['query_pos']
    assert query.shape == (2, 12, 32) and query_pos.shape == (2, 12, 4)
    for i in range(12):
        torch.testing.assert_close(query[:, i], model.patterns.weight[i // 4].expand(2, -1))
        torch.testing.assert_close(query_pos[:, i],
                                   model.query_embedding.weight[i % 4].expand(2, -1))
    data = model.data_preprocessor(make_batch(two_images()), False)
    with torch.no_grad():
        cls_scores, bbox_preds = model(data['inputs'], data['data_samples'], mode='tensor')
    assert cls_scores.shape == (3, 2, 12, 3) and bbox_preds.shape == (3, 2, 12, 4)


def test_random_refpoints():
    model = build_detector(tiny_cfg(num_queries=200, with_random_refpoints=True))
    weight = model.query_embedding.weight
    # (w, h) uniform in [0, 1]; the centres stored as logits of uniform values.
    assert ((weight[:, 2:] >= 0) & (weight[:, 2:] <= 1)).all()
    assert (weight[:, :2] < 0).any() and (weight[:, :2] > 1).any()
    centres = weight[:, :2].sigmoid()
    assert 0.3 < centres.mean().item() < 0.7 and centres.min() < 0.1 and centres.max() > 0.9
    assert weight.requires_grad  # as mmdetection: nothing is frozen


def test_loss_gradients_reach_the_anchors():
    model = build_detector(tiny_cfg())
    data = model.data_preprocessor(make_batch(two_images()), True)
    losses = model(**data, mode='loss')
    names = ('loss_cls', 'loss_bbox', 'loss_iou')
    assert list(losses) == list(names) + [f'd{i}.{n}' for i in range(2) for n in names]
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for param in (model.query_embedding.weight, model.encoder.query_scale.layers[0].weight,
                  model.decoder.ref_anchor_head.layers[0].weight,
                  model.bbox_head.fc_reg.layers[-1].weight):
        assert param.grad is not None and torch.count_nonzero(param.grad) > 0


def test_predict_contract():
    model = build_detector(tiny_cfg()).eval()
    sample = make_det_sample([[4, 4, 30, 40]], [0], img_shape=(64, 96), ori_shape=(32, 48),
                             scale_factor=(2.0, 2.0))
    data = model.data_preprocessor(make_batch([sample]), False)
    with torch.no_grad():
        pred = model(**data, mode='predict')[0].pred_instances
    assert pred.bboxes.shape == (10, 4) and pred.scores.shape == (10, )
    assert pred.labels.dtype == torch.long and ((pred.labels >= 0) & (pred.labels < 3)).all()
    assert (pred.bboxes >= 0).all()
    assert (pred.bboxes[:, 0::2] <= 48).all() and (pred.bboxes[:, 1::2] <= 32).all()
    assert torch.all(pred.scores[:-1] >= pred.scores[1:])


def test_bad_arguments():
    with pytest.raises(AssertionError, match='num_patterns must be an int'):
        build_detector(tiny_cfg(num_patterns=1.5))
    cfg = tiny_cfg()
    cfg['positional_encoding'] = dict(num_feats=8, temperature=20, normalize=True)
    with pytest.raises(AssertionError, match=r'num_feats \(8\) must be half'):
        build_detector(cfg)
