"""DeformableDETR: mmdetection's state_dict for the three COCO configs, the three variants'
losses and predictions, two-stage proposals by hand, references, init, bad configs."""
import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import build_detector, make_batch, make_det_sample
from helpers_detr_keys import (ffn, layer_norm, linear, ms_deform_attn, multihead_attn,
                               resnet50)
from mmengine.config import Config

from mmdet_lite.models.detectors import DeformableDETR
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
COCO_CONFIGS = {
    'deformable-detr_r50_16xb2-50e_coco.py': (False, False),
    'deformable-detr-refine_r50_16xb2-50e_coco.py': (True, False),
    'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py': (True, True),
}
VARIANTS = [(False, False), (True, False), (True, True)]  # (with_box_refine, as_two_stage)


def deformable_detr_r50_expected_keys(as_two_stage: bool) -> dict:
    """mmdetection 3.3 Deformable DETR R-50 (4 levels, 6+6 layers, 300 queries, 80 classes).

    Box refinement changes no key: the shared head branches are listed once per layer.
    """
    keys = resnet50()
    # ChannelMapper: 1x1 ConvModules with GN (no conv bias) and a stride-2 3x3 extra level.
    for i, in_ch in enumerate((512, 1024, 2048)):
        keys[f'neck.convs.{i}.conv.weight'] = (256, in_ch, 1, 1)
        keys.update(layer_norm(f'neck.convs.{i}.gn', 256))  # GN: weight and bias [C]
    keys['neck.extra_convs.0.conv.weight'] = (256, 2048, 3, 3)
    keys.update(layer_norm('neck.extra_convs.0.gn', 256))
    for i in range(6):
        p = f'encoder.layers.{i}'
        keys.update({**ms_deform_attn(f'{p}.self_attn'), **ffn(f'{p}.ffn'),
                     **layer_norm(f'{p}.norms.0', 256), **layer_norm(f'{p}.norms.1', 256)})
    for i in range(6):
        p = f'decoder.layers.{i}'
        keys.update({**multihead_attn(f'{p}.self_attn'), **ms_deform_attn(f'{p}.cross_attn'),
                     **ffn(f'{p}.ffn'), **{k: v for n in range(3)
                                           for k, v in layer_norm(f'{p}.norms.{n}',
                                                                  256).items()}})
    keys['level_embed'] = (4, 256)
    if as_two_stage:
        keys.update({**linear('memory_trans_fc', 256, 256),
                     **layer_norm('memory_trans_norm', 256),
                     **linear('pos_trans_fc', 512, 512), **layer_norm('pos_trans_norm', 512)})
    else:
        keys['query_embedding.weight'] = (300, 512)
        keys.update(linear('reference_points_fc', 2, 256))
    for i in range(7 if as_two_stage else 6):  # + the encoder-proposal branches
        keys.update(linear(f'bbox_head.cls_branches.{i}', 80, 256))  # sigmoid: no bg
        keys.update({**linear(f'bbox_head.reg_branches.{i}.0', 256, 256),
                     **linear(f'bbox_head.reg_branches.{i}.2', 256, 256),
                     **linear(f'bbox_head.reg_branches.{i}.4', 4, 256)})
    return keys


def tiny_cfg(with_box_refine=False, as_two_stage=False, num_queries=10):
    """Deformable DETR's structure (2 levels: C4, C5) with tiny widths."""
    msda = dict(embed_dims=32, num_heads=4, num_levels=2, num_points=2, dropout=0.,
                batch_first=True)
    ffn_cfg = dict(embed_dims=32, feedforward_channels=64, ffn_drop=0.)
    return copy.deepcopy(dict(
        type='DeformableDETR', num_queries=num_queries, num_feature_levels=2,
        with_box_refine=with_box_refine, as_two_stage=as_two_stage,
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=1),
        backbone=dict(type='ResNet', depth=18, base_channels=8, out_indices=(2, 3),
                      frozen_stages=-1, norm_cfg=dict(type='BN'), norm_eval=True),
        neck=dict(type='ChannelMapper', in_channels=[32, 64], kernel_size=1, out_channels=32,
                  act_cfg=None, norm_cfg=dict(type='GN', num_groups=8), num_outs=2),
        encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=msda, ffn_cfg=ffn_cfg)),
        decoder=dict(num_layers=3, return_intermediate=True, post_norm_cfg=None,
                     layer_cfg=dict(self_attn_cfg=dict(embed_dims=32, num_heads=4,
                                                       dropout=0., batch_first=True),
                                    cross_attn_cfg=msda, ffn_cfg=ffn_cfg)),
        positional_encoding=dict(num_feats=16, normalize=True, offset=-0.5),
        bbox_head=dict(type='DeformableDETRHead', num_classes=3, embed_dims=32,
                       sync_cls_avg_factor=True,
                       loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                                     alpha=0.25, loss_weight=2.0)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2.0),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=7)))


def two_images():
    return [make_det_sample([[4, 4, 30, 40], [40, 10, 60, 30]], [0, 2], img_shape=(64, 96)),
            make_det_sample([[10, 10, 50, 50]], [1], img_shape=(128, 128))]


@pytest.mark.parametrize('name', sorted(COCO_CONFIGS))
def test_state_dict_matches_mmdetection(name):
    cfg = Config.fromfile(str(CONFIGS / 'deformable_detr' / name))
    with_box_refine, as_two_stage = COCO_CONFIGS[name]
    assert (cfg.model.with_box_refine, cfg.model.as_two_stage) == COCO_CONFIGS[name]
    register_all_modules()
    model = MODELS.build(cfg.model)  # no init_weights: only names and shapes matter
    assert isinstance(model, DeformableDETR)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = deformable_detr_r50_expected_keys(as_two_stage)
    assert len(expected) == (623 if as_two_stage else 610)
    assert sorted(set(actual) - set(expected)) == []
    assert sorted(set(expected) - set(actual)) == []
    assert actual == expected
    # Without refinement every layer's branch is the same module (mmdetection's sharing).
    head = model.bbox_head
    shared = head.cls_branches[0] is head.cls_branches[5]
    assert shared == (not with_box_refine)
    assert (head.reg_branches[0] is head.reg_branches[5]) == (not with_box_refine)


def test_coco_config_training_recipe():
    cfg = Config.fromfile(
        str(CONFIGS / 'deformable_detr' / 'deformable-detr_r50_16xb2-50e_coco.py'))
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, weight_decay=1e-4)
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys == dict(
        backbone=dict(lr_mult=0.1), sampling_offsets=dict(lr_mult=0.1),
        reference_points=dict(lr_mult=0.1))
    assert cfg.train_cfg.max_epochs == 50 and cfg.param_scheduler[0].milestones == [40]
    # Images without objects are kept (min_size comes from the dataset base, as in mmdet).
    assert cfg.train_dataloader.dataset.filter_cfg.filter_empty_gt is False
    assert cfg.auto_scale_lr.base_batch_size == 32
    assert cfg.model.positional_encoding == dict(num_feats=128, normalize=True, offset=-0.5)
    assert cfg.train_pipeline[3].transforms[1][0].scales == [(400, 4200), (500, 4200),
                                                             (600, 4200)]
    assert 'init_cfg' not in cfg.model.backbone  # nothing to download


@pytest.mark.parametrize('with_box_refine,as_two_stage', VARIANTS)
def test_loss_terms_of_every_variant(with_box_refine, as_two_stage):
    model = build_detector(tiny_cfg(with_box_refine, as_two_stage))
    data = model.data_preprocessor(make_batch(two_images()), True)
    losses = model(**data, mode='loss')
    names = ['loss_cls', 'loss_bbox', 'loss_iou']
    expected = names + [f'd{i}.{n}' for i in range(2) for n in names]
    if as_two_stage:
        expected += [f'enc_{n}' for n in names]
    assert list(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    # At init the offset and attention-weight layers have zero weights, so the positions
    # (and level_embed) get no gradient yet; those weights do.
    assert model.level_embed.grad is not None
    assert model.encoder.layers[0].self_attn.sampling_offsets.weight.grad.abs().sum() > 0
    if as_two_stage:
        assert model.memory_trans_fc.weight.grad.abs().sum() > 0
        # The proposal branches (the head's last) learn from the encoder losses.
        assert model.bbox_head.cls_branches[3].weight.grad.abs().sum() > 0
    else:
        assert model.reference_points_fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('with_box_refine,as_two_stage', VARIANTS)
def test_predict_contract(with_box_refine, as_two_stage):
    model = build_detector(tiny_cfg(with_box_refine, as_two_stage)).eval()
    samples = two_images()
    samples[0].set_metainfo(dict(ori_shape=(32, 48), scale_factor=(2.0, 2.0)))
    data = model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert len(results) == 2
    for result, (ori_h, ori_w) in zip(results, [(32, 48), (128, 128)]):
        pred = result.pred_instances
        assert set(pred.keys()) == {'bboxes', 'scores', 'labels'}
        assert pred.bboxes.shape == (7, 4) and pred.scores.shape == (7, )
        assert pred.labels.dtype == torch.long
        assert ((pred.labels >= 0) & (pred.labels < 3)).all()
        assert torch.all(pred.scores[:-1] >= pred.scores[1:])
        assert ((pred.scores > 0) & (pred.scores < 1)).all()  # sigmoid scores
        assert (pred.bboxes >= 0).all()
        assert (pred.bboxes[:, 0::2] <= ori_w).all() and (pred.bboxes[:, 1::2] <= ori_h).all()
    with torch.no_grad():
        cls_scores, bbox_preds = model(data['inputs'], data['data_samples'], mode='tensor')
    assert cls_scores.shape == (3, 2, 10, 3) and bbox_preds.shape == (3, 2, 10, 4)


@pytest.mark.parametrize('with_box_refine,as_two_stage', VARIANTS)
def test_references_through_the_decoder(with_box_refine, as_two_stage):
    model = build_detector(tiny_cfg(with_box_refine, as_two_stage)).eval()
    with torch.no_grad():  # box branches that move the boxes (they start at zero)
        for reg in model.bbox_head.reg_branches:
            reg[-1].weight.normal_(std=0.1)
    data = model.data_preprocessor(make_batch(two_images()), False)
    with torch.no_grad():
        head_inputs = model.forward_transformer(model.extract_feat(data['inputs']),
                                                data['data_samples'])
    assert set(head_inputs) == {'hidden_states', 'references'}  # no encoder outputs in eval
    refs, hidden = head_inputs['references'], head_inputs['hidden_states']
    assert len(refs) == 4 and hidden.shape == (3, 2, 10, 32)
    assert refs[0].shape == (2, 10, 4 if as_two_stage else 2)
    if not with_box_refine:  # the references never move
        for ref in refs[1:]:
            torch.testing.assert_close(ref, refs[0])
        return
    # Layer k's box branch moves its references in logit space; a point gets its w, h.
    for k in range(3):
        reg = model.bbox_head.reg_branches[k](hidden[k])
        logits = torch.logit(refs[k].clamp(1e-5, 1 - 1e-5))
        if refs[k].size(-1) == 2:
            expected = torch.cat((reg[..., :2] + logits, reg[..., 2:]), -1).sigmoid()
        else:
            expected = (reg + logits).sigmoid()
        torch.testing.assert_close(refs[k + 1], expected)


def test_gen_encoder_output_proposals_by_hand():
    model = build_detector(tiny_cfg(as_two_stage=True))
    with torch.no_grad():
        model.memory_trans_fc.weight.copy_(torch.eye(32))
        model.memory_trans_fc.bias.zero_()
    # Level 0: 2 x 2, right column padded (valid w 1, h 2); level 1: 1 x 1, valid.
    spatial_shapes = torch.tensor([[2, 2], [1, 1]])
    memory_mask = torch.tensor([[False, True, False, True, False]])
    memory = torch.randn(1, 5, 32)
    output_memory, proposals = model.gen_encoder_output_proposals(memory, memory_mask,
                                                                  spatial_shapes)

    def logit(x):
        return math.log(x / (1 - x))

    inf = float('inf')
    # Level 0 (i, j): ((j + .5) / 1, (i + .5) / 2, .05, .05); j = 1 is padding (and 1.5 is
    # outside (0.01, 0.99)). Level 1: (.5 / 1, .5 / 1, .1, .1).
    expected = torch.tensor([
        [logit(.5), logit(.25), logit(.05), logit(.05)],
        [inf] * 4,
        [logit(.5), logit(.75), logit(.05), logit(.05)],
        [inf] * 4,
        [logit(.5), logit(.5), logit(.1), logit(.1)],
    ])
    torch.testing.assert_close(proposals[0], expected)
    # Invalid positions' memory is zeroed before memory_trans_fc (identity) and the norm.
    kept = memory.clone()
    kept[0, [1, 3]] = 0
    norm = model.memory_trans_norm
    torch.testing.assert_close(output_memory, F.layer_norm(kept, (32, ), norm.weight,
                                                           norm.bias, norm.eps))
    # Without a mask the whole map is valid: level 0 centres at .25 and .75 on both axes;
    # level 1's box of 0.1 at the centre stays valid.
    _, unmasked = model.gen_encoder_output_proposals(memory, None, spatial_shapes)
    torch.testing.assert_close(unmasked[0, :, :2].sigmoid(), torch.tensor(
        [[.25, .25], [.75, .25], [.25, .75], [.75, .75], [.5, .5]]))


def test_gen_encoder_output_proposals_marks_edge_boxes_invalid():
    model = build_detector(tiny_cfg(as_two_stage=True))
    # A 1 x 60 level: centre x of the first position is 0.5 / 60 < 0.01.
    _, proposals = model.gen_encoder_output_proposals(torch.randn(1, 60, 32), None,
                                                      torch.tensor([[1, 60]]))
    assert torch.isinf(proposals[0, 0]).all() and torch.isfinite(proposals[0, 1]).all()
    torch.testing.assert_close(proposals[0, 1, 0].sigmoid(), torch.tensor(1.5 / 60))


def test_get_proposal_pos_embed_matches_the_sine_formula():
    proposals = torch.tensor([[[0.3, -1.2, 2.0, 0.0]]])
    embed = DeformableDETR.get_proposal_pos_embed(proposals, num_pos_feats=8,
                                                  temperature=20)
    assert embed.shape == (1, 1, 32)
    expected = []
    for coord in proposals[0, 0].tolist():  # cx, cy, w, h
        angle = 2 * math.pi / (1 + math.exp(-coord))
        for k in range(8):
            freq = 20**(2 * (k // 2) / 8)
            expected.append(math.sin(angle / freq) if k % 2 == 0 else math.cos(angle / freq))
    np.testing.assert_allclose(embed[0, 0].numpy(), np.array(expected), rtol=1e-5,
                               atol=1e-6)
    # mmdetection's default: 128 features per coordinate.
    assert DeformableDETR.get_proposal_pos_embed(proposals).shape == (1, 1, 512)


def test_one_stage_pre_decoder_splits_the_query_embedding():
    model = build_detector(tiny_cfg()).eval()
    memory = torch.randn(2, 7, 32)
    decoder_inputs, head_inputs = model.pre_decoder(memory, None, torch.tensor([[1, 7]]))
    assert head_inputs == {}
    weight = model.query_embedding.weight  # [Q, 2C]: positions, then contents
    torch.testing.assert_close(decoder_inputs['query_pos'][1], weight[:, :32])
    torch.testing.assert_close(decoder_inputs['query'][0], weight[:, 32:])
    fc = model.reference_points_fc
    torch.testing.assert_close(decoder_inputs['reference_points'][0],
                               torch.sigmoid(weight[:, :32] @ fc.weight.T + fc.bias))
    model.train()
    _, head_inputs = model.pre_decoder(memory, None, torch.tensor([[1, 7]]))
    assert head_inputs == dict(enc_outputs_class=None, enc_outputs_coord=None)


def test_two_stage_pre_decoder_takes_the_best_class0_proposals():
    model = build_detector(tiny_cfg(as_two_stage=True, num_queries=2)).train()
    fc_cls = model.bbox_head.cls_branches[3]  # the proposal classifier (after 3 layers)
    with torch.no_grad():
        fc_cls.weight.zero_()
        fc_cls.weight[0, 0] = 1.0  # class 0's logit = channel 0 of the output memory
        fc_cls.bias.zero_()
    memory = torch.randn(1, 5, 32)
    spatial_shapes = torch.tensor([[2, 2], [1, 1]])
    decoder_inputs, head_inputs = model.pre_decoder(memory, None, spatial_shapes)
    output_memory, proposals = model.gen_encoder_output_proposals(memory, None,
                                                                  spatial_shapes)
    best = output_memory[0, :, 0].argsort(descending=True)[:2]
    enc_coord_unact = model.bbox_head.reg_branches[3](output_memory) + proposals
    torch.testing.assert_close(decoder_inputs['reference_points'][0],
                               enc_coord_unact[0, best].sigmoid())
    torch.testing.assert_close(head_inputs['enc_outputs_coord'], enc_coord_unact.sigmoid())
    assert head_inputs['enc_outputs_class'].shape == (1, 5, 3)
    assert not decoder_inputs['reference_points'].requires_grad
    assert decoder_inputs['query'].shape == decoder_inputs['query_pos'].shape == (1, 2, 32)


@pytest.mark.parametrize('as_two_stage', [False, True])
def test_init_weights(as_two_stage):
    model = build_detector(tiny_cfg(with_box_refine=True, as_two_stage=as_two_stage))
    assert model.level_embed.abs().sum() > 0  # normal init
    # The Xavier pass over the transformer must not survive in the deformable attention.
    attn = model.encoder.layers[0].self_attn
    assert attn.sampling_offsets.weight.abs().sum() == 0
    assert attn.attention_weights.weight.abs().sum() == 0
    head = model.bbox_head
    prior = -math.log((1 - 0.01) / 0.01)
    for fc_cls in head.cls_branches:
        torch.testing.assert_close(fc_cls.bias, torch.full((3, ), prior))
    for reg in head.reg_branches:
        assert reg[-1].weight.abs().sum() == 0
    wh_bias = head.reg_branches[0][-1].bias[2:]
    assert wh_bias.tolist() == ([0.0, 0.0] if as_two_stage else [-2.0, -2.0])
    if not as_two_stage:
        assert model.reference_points_fc.bias.abs().sum() == 0


def test_bad_configs():
    cfg = tiny_cfg()
    cfg['bbox_head']['share_pred_layer'] = True
    with pytest.raises(AssertionError, match='share_pred_layer'):
        build_detector(cfg)
    with pytest.raises(ValueError, match='share_pred_layer'):
        build_detector(cfg)
    cfg = tiny_cfg()
    del cfg['decoder']['post_norm_cfg']  # DETR's default LayerNorm: not in Deformable DETR
    with pytest.raises(ValueError, match='post_norm_cfg=None'):
        build_detector(cfg)
    cfg = tiny_cfg()
    cfg['positional_encoding']['num_feats'] = 8
    with pytest.raises(AssertionError, match=r'num_feats \(8\) must be half'):
        build_detector(cfg)


@pytest.mark.slow
def test_shapes_config_builds_and_trains_a_few_iterations():
    cfg = Config.fromfile(str(CONFIGS / 'shapes' / 'deformable-detr_r18_shapes.py'))
    assert cfg.train_dataloader.dataset.type == 'ShapesDataset'
    assert cfg.train_dataloader.dataset.num_images == 2000
    assert cfg.model.backbone.init_cfg.checkpoint == \
        'work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth'
    cfg.model.backbone.init_cfg = None  # no checkpoint here
    model = build_detector(cfg.model).train()
    assert model.num_feature_levels == 3 and model.embed_dims == 128
    assert model.bbox_head.num_classes == 3 and len(model.decoder.layers) == 3
    batch = make_batch([make_det_sample([[4, 4, 30, 40], [50, 60, 90, 100]], [2, 0],
                                        img_shape=(128, 128)),
                        make_det_sample([[20, 10, 60, 40]], [1], img_shape=(96, 128))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def total_loss():
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
        assert all(torch.isfinite(v) for v in losses.values())
        return sum(losses.values())

    first = loss = total_loss()
    for _ in range(6):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss = total_loss()
    assert loss.item() < first.item()
