"""ConditionalDETR: mmdetection 3.3's state_dict layout and config, losses, predictions,
reference points and padding independence on a tiny model."""
import copy
from pathlib import Path

import pytest
import torch
from helpers import build_detector, make_batch, make_det_sample
from helpers_conditional_dab_keys import conditional_detr_r50_keys
from mmengine.config import Config

from mmdet_lite.models.detectors import DETR, ConditionalDETR
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIG = Path(__file__).resolve().parents[3] / 'configs' / 'conditional_detr' / \
    'conditional-detr_r50_8xb2-50e_coco.py'


def tiny_cfg(num_queries=10, num_layers=(1, 3), num_feats=16):
    attn = dict(embed_dims=32, num_heads=4, attn_drop=0.)
    ffn = dict(embed_dims=32, feedforward_channels=64, ffn_drop=0.)
    return copy.deepcopy(dict(
        type='ConditionalDETR',
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
        decoder=dict(num_layers=num_layers[1],
                     layer_cfg=dict(self_attn_cfg=dict(attn, cross_attn=False),
                                    cross_attn_cfg=dict(attn, cross_attn=True), ffn_cfg=ffn)),
        positional_encoding=dict(num_feats=num_feats, normalize=True),
        bbox_head=dict(type='ConditionalDETRHead', num_classes=3, embed_dims=32,
                       loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                                     alpha=0.25, loss_weight=2.0)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2.0),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=num_queries)))


def two_images():
    return [make_det_sample([[4, 4, 30, 40], [40, 10, 60, 30]], [0, 2], img_shape=(64, 96)),
            make_det_sample([[10, 10, 50, 50]], [1], img_shape=(128, 128))]


def test_state_dict_matches_mmdetection():
    cfg = Config.fromfile(str(CONFIG))
    register_all_modules()
    model = MODELS.build(cfg.model)
    assert isinstance(model, ConditionalDETR) and isinstance(model, DETR)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = conditional_detr_r50_keys()
    assert len(expected) == 617
    assert sorted(set(actual) - set(expected)) == []
    assert sorted(set(expected) - set(actual)) == []
    assert actual == expected


def test_config_values():
    cfg = Config.fromfile(str(CONFIG))
    model = cfg.model
    assert model.num_queries == 300
    assert model.decoder.layer_cfg.self_attn_cfg == dict(
        embed_dims=256, num_heads=8, attn_drop=0.1, cross_attn=False)
    assert model.decoder.layer_cfg.cross_attn_cfg == dict(
        embed_dims=256, num_heads=8, attn_drop=0.1, cross_attn=True)
    assert model.decoder.layer_cfg.ffn_cfg.ffn_drop == 0.1  # DETR's, inherited
    assert model.encoder.layer_cfg.self_attn_cfg.dropout == 0.1
    assert model.bbox_head == dict(
        type='ConditionalDETRHead', num_classes=80, embed_dims=256,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=2.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0))
    assert model.train_cfg.assigner.match_costs[0] == dict(type='FocalLossCost', weight=2.0)
    assert cfg.train_cfg.max_epochs == 50
    assert cfg.param_scheduler == [dict(type='MultiStepLR', end=50, milestones=[40])]
    assert 'init_cfg' not in model.backbone  # nothing to download


def test_loss_names_and_gradients():
    model = build_detector(tiny_cfg())
    data = model.data_preprocessor(make_batch(two_images()), True)
    losses = model(**data, mode='loss')
    names = ('loss_cls', 'loss_bbox', 'loss_iou')
    assert list(losses) == list(names) + [f'd{i}.{n}' for i in range(2) for n in names]
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for param in (model.query_embedding.weight, model.decoder.ref_point_head.layers[0].weight,
                  model.decoder.query_scale.layers[0].weight,
                  model.decoder.layers[1].cross_attn.qpos_sine_proj.weight):
        assert param.grad is not None and torch.count_nonzero(param.grad) > 0


def test_references_come_from_the_query_embeddings():
    model = build_detector(tiny_cfg()).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(2, 3, 64, 64))
        head_inputs = model.forward_transformer(feats)
    assert set(head_inputs) == {'hidden_states', 'references'}
    assert head_inputs['hidden_states'].shape == (3, 2, 10, 32)
    expected = model.decoder.ref_point_head(model.query_embedding.weight).sigmoid()
    torch.testing.assert_close(head_inputs['references'], expected.expand(2, -1, -1))


def test_predict_contract_and_tensor_mode():
    model = build_detector(tiny_cfg()).eval()
    sample = make_det_sample([[4, 4, 30, 40]], [0], img_shape=(64, 96), ori_shape=(32, 48),
                             scale_factor=(2.0, 2.0))
    data = model.data_preprocessor(make_batch([sample]), False)
    with torch.no_grad():
        pred = model(**data, mode='predict')[0].pred_instances
        cls_scores, bbox_preds = model(data['inputs'], data['data_samples'], mode='tensor')
    assert pred.bboxes.shape == (10, 4) and pred.scores.shape == (10, )
    assert pred.labels.dtype == torch.long and ((pred.labels >= 0) & (pred.labels < 3)).all()
    assert (pred.bboxes >= 0).all()
    assert (pred.bboxes[:, 0::2] <= 48).all() and (pred.bboxes[:, 1::2] <= 32).all()
    assert torch.all(pred.scores[:-1] >= pred.scores[1:])
    # Sigmoid scores of the best (query, class) pairs of the last layer.
    torch.testing.assert_close(pred.scores, cls_scores[-1, 0].sigmoid().flatten().topk(10)[0])
    assert cls_scores.shape == (3, 1, 10, 3) and bbox_preds.shape == (3, 1, 10, 4)


def test_prediction_does_not_depend_on_batch_padding():
    model = build_detector(tiny_cfg()).eval()
    pair = make_batch(two_images())
    alone = dict(inputs=pair['inputs'][:1], data_samples=two_images()[:1])
    with torch.no_grad():
        raw_alone = model(**model.data_preprocessor(alone, False), mode='tensor')
        raw_pair = model(**model.data_preprocessor(pair, False), mode='tensor')
    for single, batched in zip(raw_alone, raw_pair):
        torch.testing.assert_close(batched[:, :1], single, atol=1e-4, rtol=0)


def test_bad_positional_encoding_is_an_assertion_error():
    with pytest.raises(AssertionError, match=r'num_feats \(8\) must be half'):
        build_detector(tiny_cfg(num_feats=8))
