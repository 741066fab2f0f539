"""DINO detector and decoder: mmdetection state_dict layout, query selection, denoising in
training, look-forward-twice, losses, predictions, configs."""
import copy
import math
from pathlib import Path

import pytest
import torch
from helpers import build_detector, make_batch, make_det_sample
from helpers_state_dict import bn
from mmengine.config import Config

from mmdet_lite.models.detectors import DINO, DeformableDETR
from mmdet_lite.models.layers.transformer import DinoTransformerDecoder
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Many small ops: one thread avoids threads waiting on each other on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Expected mmdetection 3.3 keys, written from its module definitions.

def linear(prefix, out_ch, in_ch):
    return {f'{prefix}.weight': (out_ch, in_ch), f'{prefix}.bias': (out_ch, )}


def norm(prefix, dims=256):
    return {f'{prefix}.weight': (dims, ), f'{prefix}.bias': (dims, )}


def resnet50():
    keys = {'backbone.conv1.weight': (64, 3, 7, 7), **bn('backbone.bn1', 64)}
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for block in range(blocks):
            p = f'backbone.layer{stage}.{block}'
            keys.update({f'{p}.conv1.weight': (width, in_ch, 1, 1),
                         f'{p}.conv2.weight': (width, width, 3, 3),
                         f'{p}.conv3.weight': (width * 4, width, 1, 1),
                         **bn(f'{p}.bn1', width), **bn(f'{p}.bn2', width),
                         **bn(f'{p}.bn3', width * 4)})
            if block == 0:
                keys.update({f'{p}.downsample.0.weight': (width * 4, in_ch, 1, 1),
                             **bn(f'{p}.downsample.1', width * 4)})
            in_ch = width * 4
    return keys


def ms_deform_attn(prefix, dims=256, heads=8, levels=4, points=4):
    """mmcv's MultiScaleDeformableAttention: offsets (x, y) and weights per head/level/point."""
    return {**linear(f'{prefix}.sampling_offsets', heads * levels * points * 2, dims),
            **linear(f'{prefix}.attention_weights', heads * levels * points, dims),
            **linear(f'{prefix}.value_proj', dims, dims),
            **linear(f'{prefix}.output_proj', dims, dims)}


def ffn(prefix, dims=256, hidden=2048):
    return {**linear(f'{prefix}.layers.0.0', hidden, dims), **linear(f'{prefix}.layers.1', dims,
                                                                     hidden)}


def dino_r50_expected_keys():
    """mmdetection 3.3 ``dino-4scale_r50_8xb2-12e_coco`` state_dict."""
    keys = resnet50()
    for i, in_ch in enumerate((512, 1024, 2048)):  # ChannelMapper, GN, no conv bias
        keys.update({f'neck.convs.{i}.conv.weight': (256, in_ch, 1, 1),
                     **norm(f'neck.convs.{i}.gn')})
    keys.update({'neck.extra_convs.0.conv.weight': (256, 2048, 3, 3),
                 **norm('neck.extra_convs.0.gn')})
    for i in range(6):
        p = f'encoder.layers.{i}'
        keys.update({**ms_deform_attn(f'{p}.self_attn'), **ffn(f'{p}.ffn'),
                     **norm(f'{p}.norms.0'), **norm(f'{p}.norms.1')})
    for i in range(6):
        p = f'decoder.layers.{i}'
        keys.update({f'{p}.self_attn.attn.in_proj_weight': (768, 256),
                     f'{p}.self_attn.attn.in_proj_bias': (768, ),
                     **linear(f'{p}.self_attn.attn.out_proj', 256, 256),
                     **ms_deform_attn(f'{p}.cross_attn'), **ffn(f'{p}.ffn'),
                     **norm(f'{p}.norms.0'), **norm(f'{p}.norms.1'), **norm(f'{p}.norms.2')})
    keys.update({**linear('decoder.ref_point_head.layers.0', 256, 512),
                 **linear('decoder.ref_point_head.layers.1', 256, 256),
                 **norm('decoder.norm')})
    keys.update({'query_embedding.weight': (900, 256), 'level_embed': (4, 256),
                 **linear('memory_trans_fc', 256, 256), **norm('memory_trans_norm'),
                 'dn_query_generator.label_embedding.weight': (80, 256)})
    for i in range(7):  # 6 decoder layers + the encoder proposals, not shared
        keys.update({**linear(f'bbox_head.cls_branches.{i}', 80, 256),
                     **linear(f'bbox_head.reg_branches.{i}.0', 256, 256),
                     **linear(f'bbox_head.reg_branches.{i}.2', 256, 256),
                     **linear(f'bbox_head.reg_branches.{i}.4', 4, 256)})
    return keys


def tiny_dino_cfg(num_queries=10, num_layers=(1, 2), num_dn_queries=4):
    """DINO with mmdetection's structure, 3 feature levels and tiny widths."""
    dims = 32
    return copy.deepcopy(dict(
        type='DINO',
        num_queries=num_queries,
        with_box_refine=True,
        as_two_stage=True,
        num_feature_levels=3,
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=1),
        backbone=dict(type='ResNet', depth=18, base_channels=8, out_indices=(1, 2, 3),
                      frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=True),
        neck=dict(type='ChannelMapper', in_channels=[16, 32, 64], kernel_size=1,
                  out_channels=dims, act_cfg=None, norm_cfg=dict(type='GN', num_groups=8),
                  num_outs=3),
        encoder=dict(num_layers=num_layers[0], layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=dims, num_heads=4, num_levels=3, dropout=0.0),
            ffn_cfg=dict(embed_dims=dims, feedforward_channels=64, ffn_drop=0.0))),
        decoder=dict(num_layers=num_layers[1], return_intermediate=True, post_norm_cfg=None,
                     layer_cfg=dict(
                         self_attn_cfg=dict(embed_dims=dims, num_heads=4, dropout=0.0),
                         cross_attn_cfg=dict(embed_dims=dims, num_heads=4, num_levels=3,
                                             dropout=0.0),
                         ffn_cfg=dict(embed_dims=dims, feedforward_channels=64,
                                      ffn_drop=0.0))),
        positional_encoding=dict(num_feats=dims // 2, normalize=True, offset=0.0,
                                 temperature=20),
        bbox_head=dict(type='DINOHead', num_classes=3, embed_dims=dims,
                       sync_cls_avg_factor=True,
                       loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                                     loss_weight=1.0),
                       loss_bbox=dict(type='L1Loss', loss_weight=5.0),
                       loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
        dn_cfg=dict(label_noise_scale=0.5, box_noise_scale=1.0,
                    group_cfg=dict(dynamic=True, num_groups=None,
                                   num_dn_queries=num_dn_queries)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2.0),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=num_queries)))


def two_images():
    return [make_det_sample([[4, 4, 30, 40], [40, 10, 60, 30]], [0, 2], img_shape=(64, 96)),
            make_det_sample([[10, 10, 50, 50]], [1], img_shape=(96, 96))]


def test_state_dict_matches_mmdetection_dino_r50():
    cfg = Config.fromfile(str(CONFIGS / 'dino' / 'dino-4scale_r50_8xb2-12e_coco.py'))
    register_all_modules()
    model = MODELS.build(cfg.model)
    assert isinstance(model, DINO) and isinstance(model, DeformableDETR)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = dino_r50_expected_keys()
    # 318 ResNet-50 + 12 neck + 6 x 16 encoder + 6 x 22 + 6 decoder + 7 x 8 head + 7 others
    assert len(expected) == 318 + 12 + 96 + 138 + 56 + 7
    assert sorted(set(actual) - set(expected)) == []
    assert sorted(set(expected) - set(actual)) == []
    assert actual == expected


def test_coco_configs_training_recipe():
    cfg = Config.fromfile(str(CONFIGS / 'dino' / 'dino-4scale_r50_8xb2-12e_coco.py'))
    assert cfg.model.num_queries == 900 and cfg.model.test_cfg.max_per_img == 300
    assert cfg.model.dn_cfg == dict(label_noise_scale=0.5, box_noise_scale=1.0,
                                    group_cfg=dict(dynamic=True, num_groups=None,
                                                   num_dn_queries=100))
    assert cfg.model.positional_encoding == dict(num_feats=128, normalize=True, offset=0.0,
                                                 temperature=20)
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys == dict(backbone=dict(lr_mult=0.1))
    assert (cfg.train_cfg.max_epochs, cfg.param_scheduler[0].milestones) == (12, [11])
    assert cfg.train_dataloader.dataset.filter_cfg.filter_empty_gt is False  # merged: min_size
    assert 'init_cfg' not in cfg.model.backbone  # nothing to download
    long = Config.fromfile(str(CONFIGS / 'dino' / 'dino-4scale_r50_8xb2-24e_coco.py'))
    assert (long.train_cfg.max_epochs, long.param_scheduler[0].milestones) == (24, [20])
    assert long.param_scheduler[0].end == 24 and long.model == cfg.model


def test_detector_sets_generator_and_head_arguments():
    model = build_detector(tiny_dino_cfg())
    gen = model.dn_query_generator
    assert (gen.num_classes, gen.embed_dims, gen.num_matching_queries) == (3, 32, 10)
    assert gen.num_dn_queries == 4
    head = model.bbox_head
    assert (head.num_pred_layer, head.share_pred_layer, head.as_two_stage) == (3, False, True)
    assert isinstance(model.decoder, DinoTransformerDecoder)
    assert model.query_embedding.weight.shape == (10, 32)  # contents only


def test_bad_configs():
    for key in ('as_two_stage', 'with_box_refine'):
        cfg = tiny_dino_cfg()
        cfg[key] = False
        with pytest.raises(AssertionError, match=key):
            build_detector(cfg)
    cfg = tiny_dino_cfg()
    cfg['dn_cfg']['num_classes'] = 3
    with pytest.raises(AssertionError, match='num_classes'):
        build_detector(cfg)


def test_loss_names_and_gradients():
    torch.manual_seed(0)
    model = build_detector(tiny_dino_cfg()).train()
    data = model.data_preprocessor(make_batch(two_images()), True)
    losses = model(**data, mode='loss')
    names = ('loss_cls', 'loss_bbox', 'loss_iou')
    assert list(losses) == (list(names) + [f'd0.{n}' for n in names] +
                            [f'enc_{n}' for n in names] + [f'dn_{n}' for n in names] +
                            [f'd0.dn_{n}' for n in names])
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert losses['dn_loss_bbox'] > 0 and losses['dn_loss_iou'] > 0
    sum(losses.values()).backward()
    for name in ('dn_query_generator.label_embedding.weight', 'query_embedding.weight',
                 'memory_trans_fc.weight', 'decoder.ref_point_head.layers.0.weight',
                 'bbox_head.cls_branches.2.weight', 'bbox_head.reg_branches.0.4.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_pre_decoder_mixed_query_selection_and_denoising_queries():
    torch.manual_seed(0)
    model = build_detector(tiny_dino_cfg(num_queries=5))
    samples = two_images()
    memory = torch.randn(2, 20, 32)
    memory_mask = torch.zeros(2, 20, dtype=torch.bool)
    spatial_shapes = torch.tensor([[4, 3], [2, 2], [2, 2]])

    model.eval()
    dec_in, head_in = model.pre_decoder(memory, memory_mask, spatial_shapes, samples)
    assert head_in == {} and dec_in['dn_mask'] is None
    assert torch.equal(dec_in['query'], model.query_embedding.weight.expand(2, -1, -1))
    # The references are the proposals of the 5 positions with the best class score.
    output_memory, proposals = model.gen_encoder_output_proposals(memory, memory_mask,
                                                                  spatial_shapes)
    scores = model.bbox_head.cls_branches[2](output_memory).max(-1)[0]  # [2, 20]
    coords = (model.bbox_head.reg_branches[2](output_memory) + proposals).sigmoid()
    for img in range(2):
        best = scores[img].argsort(descending=True)[:5]
        torch.testing.assert_close(dec_in['reference_points'][img], coords[img, best])

    model.train()
    torch.manual_seed(3)
    dec_in, head_in = model.pre_decoder(memory, memory_mask, spatial_shapes, samples)
    torch.manual_seed(3)
    dn_label, dn_bbox, dn_mask, dn_meta = model.dn_query_generator(samples)
    # M = 2 targets, 4 // 2 = 2 groups -> 8 denoising queries before the 5 matching ones.
    assert head_in['dn_meta'] == dn_meta == dict(num_denoising_queries=8,
                                                 num_denoising_groups=2)
    assert dec_in['query'].shape == (2, 13, 32) and dec_in['reference_points'].shape == (2, 13,
                                                                                         4)
    torch.testing.assert_close(dec_in['query'][:, :8], dn_label)
    torch.testing.assert_close(dec_in['reference_points'][:, :8], dn_bbox.sigmoid())
    assert torch.equal(dec_in['dn_mask'], dn_mask)
    assert head_in['enc_outputs_class'].shape == (2, 5, 3)
    assert head_in['enc_outputs_coord'].shape == (2, 5, 4)
    assert head_in['enc_outputs_coord'].requires_grad  # the encoder loss trains the branch
    assert not dec_in['reference_points'].requires_grad  # the decoder starts from detached


def sine_encoding(coords, num_feats, temperature=10000):
    """Independent sine encoding: y, x, w, h of ``coords * 2pi``, sin/cos interleaved."""
    dim_t = temperature**(2 * (torch.arange(num_feats) // 2) / num_feats)
    parts = []
    for i in (1, 0, 2, 3):
        pos = coords[..., i, None] * 2 * math.pi / dim_t  # [..., num_feats]
        parts.append(torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), -1).flatten(-2))
    return torch.cat(parts, -1)


def build_decoder(return_intermediate=True):
    dims = 16
    return DinoTransformerDecoder(
        num_layers=2, return_intermediate=return_intermediate, post_norm_cfg=None,
        layer_cfg=dict(self_attn_cfg=dict(embed_dims=dims, num_heads=2, dropout=0.0),
                       cross_attn_cfg=dict(embed_dims=dims, num_heads=2, num_levels=2,
                                           dropout=0.0),
                       ffn_cfg=dict(embed_dims=dims, feedforward_channels=32, ffn_drop=0.0)))


def decoder_inputs(batch=2, queries=5):
    torch.manual_seed(0)
    spatial_shapes = torch.tensor([[4, 4], [2, 2]])
    return dict(query=torch.randn(batch, queries, 16), value=torch.randn(batch, 20, 16),
                key_padding_mask=torch.zeros(batch, 20, dtype=torch.bool),
                self_attn_mask=None,
                reference_points=torch.rand(batch, queries, 4) * 0.5 + 0.25,
                spatial_shapes=spatial_shapes, level_start_index=torch.tensor([0, 16]),
                valid_ratios=torch.tensor([[[1.0, 0.75], [1.0, 0.5]]] * batch))


def test_decoder_keys_and_query_positions_from_boxes():
    decoder = build_decoder()
    assert {k for k in decoder.state_dict() if not k.startswith('layers.')} == {
        'ref_point_head.layers.0.weight', 'ref_point_head.layers.0.bias',
        'ref_point_head.layers.1.weight', 'ref_point_head.layers.1.bias',
        'norm.weight', 'norm.bias'}
    assert decoder.ref_point_head.layers[0].in_features == 32
    inputs = decoder_inputs()
    inputs['self_attn_mask'] = torch.zeros(5, 5, dtype=torch.bool)
    seen = {}

    def hook(module, args, kwargs):
        seen.update(kwargs)

    decoder.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    reg_branches = torch.nn.ModuleList(torch.nn.Linear(16, 4) for _ in range(2))
    decoder(**inputs, reg_branches=reg_branches)
    ratios = torch.cat([inputs['valid_ratios']] * 2, -1)  # [B, n, 4] (w, h, w, h)
    level_refs = inputs['reference_points'][:, :, None] * ratios[:, None]
    torch.testing.assert_close(seen['reference_points'], level_refs)
    expected_pos = decoder.ref_point_head(sine_encoding(level_refs[:, :, 0], 8))
    torch.testing.assert_close(seen['query_pos'], expected_pos)
    assert seen['self_attn_mask'] is inputs['self_attn_mask']


def test_decoder_look_forward_twice():
    decoder = build_decoder()
    inputs = decoder_inputs()
    reg_branches = torch.nn.ModuleList(torch.nn.Linear(16, 4) for _ in range(2))
    hidden_states, references = decoder(**inputs, reg_branches=reg_branches)
    assert hidden_states.shape == (2, 2, 5, 16) and references.shape == (3, 2, 5, 4)
    torch.testing.assert_close(references[0], inputs['reference_points'])
    # Gradients: refined boxes of layer i reach branch i (not detached) ...
    grad_0 = torch.autograd.grad(references[1].sum(), reg_branches[0].weight,
                                 retain_graph=True)[0]
    assert grad_0.abs().sum() > 0
    # ... while layer 1 starts from detached boxes: its boxes do not reach branch 0.
    grad = torch.autograd.grad(references[2].sum(), reg_branches[0].weight,
                               retain_graph=True, allow_unused=True)[0]
    assert grad is None or grad.abs().sum() == 0
    # Without intermediates: the last raw output and the detached last boxes.
    decoder.return_intermediate = False
    last, last_refs = decoder(**inputs, reg_branches=reg_branches)
    torch.testing.assert_close(decoder.norm(last), hidden_states[-1])
    torch.testing.assert_close(last_refs, references[-1])
    assert not last_refs.requires_grad


def test_decoder_refinement_by_hand():
    # A branch with zero weights and bias b moves every box logit by b.
    decoder = build_decoder()
    inputs = decoder_inputs()
    reg_branches = torch.nn.ModuleList(torch.nn.Linear(16, 4) for _ in range(2))
    with torch.no_grad():
        for i, branch in enumerate(reg_branches):
            branch.weight.zero_()
            branch.bias.fill_(0.5 * (i + 1))
    _, references = decoder(**inputs, reg_branches=reg_branches)
    refs = inputs['reference_points']
    logits = torch.log(refs.clamp(min=1e-3) / (1 - refs).clamp(min=1e-3))
    torch.testing.assert_close(references[1], torch.sigmoid(logits + 0.5))
    torch.testing.assert_close(references[2], torch.sigmoid(logits + 1.5), atol=1e-5,
                               rtol=1e-5)


def test_predict_and_tensor_modes():
    model = build_detector(tiny_dino_cfg()).eval()
    sample = make_det_sample([[4, 4, 30, 40]], [0], img_shape=(64, 96), ori_shape=(32, 48),
                             scale_factor=(2.0, 2.0))
    data = model.data_preprocessor(make_batch([sample]), False)
    with torch.no_grad():
        pred = model(**data, mode='predict')[0].pred_instances
        cls_scores, bbox_preds = model(**data, mode='tensor')
    assert pred.bboxes.shape == (10, 4) and pred.labels.dtype == torch.long
    assert (pred.bboxes[:, 0::2] <= 48).all() and (pred.bboxes[:, 1::2] <= 32).all()
    assert (pred.bboxes >= 0).all() and ((pred.labels >= 0) & (pred.labels < 3)).all()
    assert torch.all(pred.scores[:-1] >= pred.scores[1:])
    assert cls_scores.shape == (2, 1, 10, 3) and bbox_preds.shape == (2, 1, 10, 4)


def test_training_without_ground_truth():
    model = build_detector(tiny_dino_cfg()).train()
    data = model.data_preprocessor(
        make_batch([make_det_sample([], img_shape=(64, 64))] * 2), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert losses['dn_loss_cls'].item() == 0 and losses['loss_bbox'].item() == 0
    sum(losses.values()).backward()
    # The zero term keeps the label embedding in the graph (distributed training).
    assert model.dn_query_generator.label_embedding.weight.grad is not None


@pytest.mark.slow
def test_few_iterations_on_a_fixed_batch_reduce_the_denoising_loss():
    # The denoising targets are fixed (no matching), so their losses fall steadily; the
    # matching losses wander while the assignment changes.
    torch.manual_seed(0)
    model = build_detector(tiny_dino_cfg()).train()
    batch = make_batch(two_images())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def losses():
        torch.manual_seed(1)  # the same denoising queries every time
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
        return sum(losses.values()), sum(v for k, v in losses.items() if 'dn_' in k)

    total, first_dn = losses()
    for _ in range(15):
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        total, dn = losses()
    assert dn.item() < 0.85 * first_dn.item()


@pytest.mark.slow
def test_shapes_config_builds_and_trains_a_few_iterations():
    cfg = Config.fromfile(str(CONFIGS / 'shapes' / 'dino-4scale_r18_shapes.py'))
    assert cfg.train_dataloader.dataset.type == 'ShapesDataset'
    assert cfg.model.backbone.init_cfg.checkpoint == \
        'work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth'
    cfg.model.backbone.init_cfg = None  # no checkpoint in the test
    torch.manual_seed(0)
    model = build_detector(cfg.model).train()
    assert model.num_queries == 30 and model.embed_dims == 128
    assert model.dn_query_generator.num_dn_queries == 20
    assert len(model.decoder.layers) == 3 and model.level_embed.shape == (3, 128)
    samples = [make_det_sample([[4, 4, 30, 40], [40, 40, 60, 60]], [2, 0], img_shape=(96, 96)),
               make_det_sample([[10, 20, 50, 70]], [1], img_shape=(96, 96))]
    batch = make_batch(samples)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    for _ in range(3):
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
        assert all(torch.isfinite(v).all() for v in losses.values())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        preds = model(**data, mode='predict')
    assert preds[0].pred_instances.bboxes.shape == (30, 4)
