"""mmdetection 3.3's RegNet, Res2Net and ResNeSt COCO configs (configs/regnet, res2net,
resnest): they hold mmdetection's values, the models have mmdetection's state_dict keys and
shapes, the backbones give stride-4..32 maps of the right widths at 768x768, and one detector
per backbone runs ``loss`` and ``predict`` on a small image.

Expected values are written from mmdetection's config files, with one deliberate difference:
the backbones' ``init_cfg`` (an ``open-mmlab://`` ImageNet checkpoint that would be downloaded)
is left out, as in this repository's ResNet-50 base configs. Expected keys come from
helpers_resnet_family_keys, written from mmdetection's module definitions. Key tests build
the models on the meta device (shapes only, no weight initialization).
"""
import importlib.util
import os.path as osp
from pathlib import Path

import pytest
import torch
from helpers import (assert_finite_losses, build_detector, init_weights_quietly, make_batch,
                     make_det_sample, tiny_two_stage_cfg)
from helpers_resnet_family_keys import (faster_rcnn_heads, fpn, mask_rcnn_heads, regnet, res2net,
                                        resnest, retinanet_heads, rpn_head,
                                        shared4conv1fc_bbox_head)
from helpers_state_dict import shapes_of
from helpers_tools import REPO_ROOT
from mmengine.config import Config
from test_two_stage_training import fixed_proposals, objective

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
REGNET_FASTER = CONFIGS / 'regnet' / 'faster-rcnn_regnetx-3.2GF_fpn_1x_coco.py'
REGNET_MASK = CONFIGS / 'regnet' / 'mask-rcnn_regnetx-3.2GF_fpn_1x_coco.py'
REGNET_RETINA = CONFIGS / 'regnet' / 'retinanet_regnetx-3.2GF_fpn_1x_coco.py'
REGNET_RETINA_800MF = CONFIGS / 'regnet' / 'retinanet_regnetx-800MF_fpn_1x_coco.py'
RES2NET_FASTER = CONFIGS / 'res2net' / 'faster-rcnn_res2net-101_fpn_2x_coco.py'
RESNEST_FASTER = (CONFIGS / 'resnest' /
                  'faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py')

# Stage widths, blocks and 3x3-conv groups (width // 48 and width // 16), from the RegNet
# rule (see test_regnet.py) and the FPN in_channels of mmdetection's configs.
REGNETX_3_2GF = ([96, 192, 432, 1008], [2, 6, 15, 2], [2, 4, 9, 21])
REGNETX_800MF = ([64, 128, 288, 672], [1, 3, 7, 5], [4, 8, 18, 42])

PYCLS_NORM = dict(mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395],
                  bgr_to_rgb=False)
REGNET_BACKBONE = dict(type='RegNet', arch='regnetx_3.2gf', out_indices=(0, 1, 2, 3),
                       frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                       norm_eval=True, style='pytorch')
REGNET_OPTIMIZER = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.00005)

register_all_modules()


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


def build_meta(path: Path):
    with torch.device('meta'):
        return MODELS.build(load(path).model)


# ------------------------------------------------------------------ config values


def test_regnet_two_stage_configs_hold_mmdetections_values():
    for path, dataset in ((REGNET_FASTER, 'coco_detection'), (REGNET_MASK, 'coco_instance')):
        cfg = load(path)
        base = load(CONFIGS / 'faster_rcnn' / 'faster-rcnn_r50_fpn_1x_coco.py') \
            if dataset == 'coco_detection' else \
            load(CONFIGS / 'mask_rcnn' / 'mask-rcnn_r50_fpn_1x_coco.py')
        assert cfg.model.data_preprocessor == dict(base.model.data_preprocessor, **PYCLS_NORM)
        # _delete_ drops every ResNet key of the base backbone.
        assert cfg.model.backbone == REGNET_BACKBONE
        assert cfg.model.neck == dict(type='FPN', in_channels=[96, 192, 432, 1008],
                                      out_channels=256, num_outs=5)
        for key in ('rpn_head', 'roi_head', 'train_cfg', 'test_cfg'):
            assert cfg.model[key] == base.model[key], key
        assert cfg.optim_wrapper == dict(type='OptimWrapper', optimizer=REGNET_OPTIMIZER)
        assert cfg.train_cfg.max_epochs == 12
        assert cfg.train_dataloader == base.train_dataloader
    assert load(REGNET_MASK).model.type == 'MaskRCNN'


def test_regnet_retinanet_configs_hold_mmdetections_values():
    base = load(CONFIGS / 'retinanet' / 'retinanet_r50_fpn_1x_coco.py')
    optim_wrapper = dict(type='OptimWrapper', optimizer=REGNET_OPTIMIZER,
                         clip_grad=dict(max_norm=35, norm_type=2))
    for path, arch, widths in ((REGNET_RETINA, 'regnetx_3.2gf', REGNETX_3_2GF[0]),
                               (REGNET_RETINA_800MF, 'regnetx_800mf', REGNETX_800MF[0])):
        cfg = load(path)
        assert cfg.model.data_preprocessor == dict(base.model.data_preprocessor, **PYCLS_NORM)
        assert cfg.model.backbone == dict(REGNET_BACKBONE, arch=arch)
        assert cfg.model.neck == dict(type='FPN', in_channels=widths, out_channels=256,
                                      start_level=1, add_extra_convs='on_input', num_outs=5)
        for key in ('bbox_head', 'train_cfg', 'test_cfg'):
            assert cfg.model[key] == base.model[key], key
        assert cfg.optim_wrapper == optim_wrapper


def test_res2net_config_holds_mmdetections_values():
    cfg = load(RES2NET_FASTER)
    base = load(CONFIGS / 'faster_rcnn' / 'faster-rcnn_r50_fpn_2x_coco.py')
    assert cfg.model.backbone == dict(
        type='Res2Net', depth=101, scales=4, base_width=26, num_stages=4,
        out_indices=(0, 1, 2, 3), frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True, style='pytorch')
    for key in ('data_preprocessor', 'neck', 'rpn_head', 'roi_head', 'train_cfg', 'test_cfg'):
        assert cfg.model[key] == base.model[key], key
    assert cfg.train_cfg.max_epochs == 24
    assert cfg.param_scheduler[1].milestones == [16, 22]


def test_resnest_config_holds_mmdetections_values():
    cfg = load(RESNEST_FASTER)
    base = load(CONFIGS / 'faster_rcnn' / 'faster-rcnn_r50_fpn_1x_coco.py')
    sync_bn = dict(type='SyncBN', requires_grad=True)
    assert cfg.norm_cfg == sync_bn
    assert cfg.model.data_preprocessor == dict(
        base.model.data_preprocessor, mean=[123.68, 116.779, 103.939],
        std=[58.393, 57.12, 57.375], bgr_to_rgb=True)
    assert cfg.model.backbone == dict(
        type='ResNeSt', stem_channels=64, depth=50, radix=2, reduction_factor=4,
        avg_down_stride=True, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
        norm_cfg=sync_bn, norm_eval=False, style='pytorch')
    assert cfg.model.roi_head.bbox_head == dict(
        base.model.roi_head.bbox_head, type='Shared4Conv1FCBBoxHead', conv_out_channels=256,
        norm_cfg=sync_bn)
    for key in ('neck', 'rpn_head', 'train_cfg', 'test_cfg'):
        assert cfg.model[key] == base.model[key], key
    pipeline = [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='RandomResize', scale=[(1333, 640), (1333, 800)], keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ]
    assert cfg.train_pipeline == pipeline
    assert cfg.train_dataloader.dataset.pipeline == pipeline
    assert cfg.val_dataloader == base.val_dataloader
    assert cfg.optim_wrapper == base.optim_wrapper and cfg.train_cfg.max_epochs == 12


# ------------------------------------------------------------------ state_dict keys


def prefixed(prefix: str, keys: dict) -> dict:
    return {f'{prefix}.{k}': v for k, v in keys.items()}


def test_regnet_faster_and_mask_rcnn_state_dicts_are_mmdetections():
    backbone = prefixed('backbone', regnet('', *REGNETX_3_2GF))
    assert shapes_of(build_meta(REGNET_FASTER)) == {
        **backbone, **faster_rcnn_heads(REGNETX_3_2GF[0])}
    assert shapes_of(build_meta(REGNET_MASK)) == {
        **backbone, **mask_rcnn_heads(REGNETX_3_2GF[0])}


@pytest.mark.parametrize('path,arch', [(REGNET_RETINA, REGNETX_3_2GF),
                                       (REGNET_RETINA_800MF, REGNETX_800MF)])
def test_regnet_retinanet_state_dicts_are_mmdetections(path, arch):
    expected = {**prefixed('backbone', regnet('', *arch)), **retinanet_heads(arch[0])}
    model = build_meta(path)
    assert shapes_of(model) == expected
    # P6 reads C5 ('on_input'): its conv takes the last stage's width.
    assert expected['neck.fpn_convs.3.conv.weight'] == (256, arch[0][-1], 3, 3)


def test_res2net_faster_rcnn_state_dict_is_mmdetections():
    assert shapes_of(build_meta(RES2NET_FASTER)) == {
        **res2net('backbone', depth=101, scales=4, base_width=26),
        **faster_rcnn_heads([256, 512, 1024, 2048])}


def test_resnest_faster_rcnn_state_dict_is_mmdetections():
    model = build_meta(RESNEST_FASTER)
    assert shapes_of(model) == {
        **resnest('backbone', depth=50, stem_channels=64),
        **fpn('neck', [256, 512, 1024, 2048]), **rpn_head('rpn_head'),
        **shared4conv1fc_bbox_head('roi_head.bbox_head')}
    assert type(model.backbone.layer1[0].bn1).__name__ == 'SyncBatchNorm'
    assert type(model.roi_head.bbox_head.shared_convs[0].bn).__name__ == 'SyncBatchNorm'


# ------------------------------------------------------------------ 768x768 shape trace


def _load_shape_trace():
    path = osp.join(REPO_ROOT, 'tools/analysis_tools/shape_trace.py')
    spec = importlib.util.spec_from_file_location('tool_shape_trace', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trace_lines(path: Path, capsys) -> list:
    _load_shape_trace().main([str(path), '--shape', '768', '768', '--batch', '1',
                              '--backbone-only', '--depth', '2'])
    return capsys.readouterr().out.splitlines()


@pytest.mark.slow
def test_shape_trace_gives_regnetx_3_2gf_shapes_for_a_768_input(capsys):
    lines = _trace_lines(REGNET_FASTER, capsys)
    assert '  backbone.conv1 -> [1, 32, 384, 384]' in lines  # stride-2 3x3 stem, no max-pool
    assert not any('maxpool' in line for line in lines)
    for i, (width, size) in enumerate(zip(REGNETX_3_2GF[0], (192, 96, 48, 24))):
        assert f'  backbone.layer{i + 1} -> [1, {width}, {size}, {size}]' in lines
    assert 'backbone -> ([1, 96, 192, 192], [1, 192, 96, 96], [1, 432, 48, 48], ' \
        '[1, 1008, 24, 24])' in lines


RESNET_WIDTH_SHAPES = ('backbone -> ([1, 256, 192, 192], [1, 512, 96, 96], '
                       '[1, 1024, 48, 48], [1, 2048, 24, 24])')


@pytest.mark.slow
def test_shape_trace_gives_res2net_101_shapes_for_a_768_input(capsys):
    lines = _trace_lines(RES2NET_FASTER, capsys)
    assert '  backbone.stem -> [1, 64, 384, 384]' in lines
    assert '  backbone.maxpool -> [1, 64, 192, 192]' in lines
    assert '  backbone.layer4 -> [1, 2048, 24, 24]' in lines
    assert RESNET_WIDTH_SHAPES in lines


@pytest.mark.slow
def test_shape_trace_gives_resnest_50_shapes_for_a_768_input(capsys):
    lines = _trace_lines(RESNEST_FASTER, capsys)
    assert '  backbone.stem -> [1, 64, 384, 384]' in lines
    assert '  backbone.maxpool -> [1, 64, 192, 192]' in lines
    assert '  backbone.layer1 -> [1, 256, 192, 192]' in lines
    assert '  backbone.layer3 -> [1, 1024, 48, 48]' in lines
    assert RESNET_WIDTH_SHAPES in lines


# ------------------------------------------------------------------ loss and predict


def build_light(path: Path):
    """The config's full model with fewer proposals and samples (architecture untouched),
    randomly initialized (the configs download nothing)."""
    cfg = load(path)
    model_cfg = cfg.model
    if 'rpn' in model_cfg.test_cfg:
        model_cfg.train_cfg.rcnn.sampler.num = 32
        model_cfg.train_cfg.rpn_proposal.max_per_img = 50
        model_cfg.test_cfg.rpn.max_per_img = 20
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    init_weights_quietly(model)
    return model


def two_samples():
    return [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 56]], [3, 17], img_shape=(64, 64)),
            make_det_sample([[4, 30, 36, 60]], [5], img_shape=(64, 64))]


def run_loss_and_predict(model, losses_expected):
    samples = two_samples()
    model.train()
    data = model.data_preprocessor(make_batch(samples), True)
    assert data['inputs'].shape == (2, 3, 64, 64)
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    assert set(losses) == losses_expected
    assert_finite_losses(losses)

    model.eval()
    data = model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        preds = model(data['inputs'], data['data_samples'], mode='predict')
    assert len(preds) == 2
    for pred in preds:
        result = pred.pred_instances
        assert result.bboxes.shape == (len(result), 4) and result.scores.shape == (len(result), )
        assert result.labels.dtype == torch.long
        assert torch.all((result.labels >= 0) & (result.labels < 80))
    return losses


TWO_STAGE_LOSSES = {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_bbox'}


@pytest.mark.slow
def test_regnet_faster_rcnn_loss_and_predict():
    model = build_light(REGNET_FASTER)
    run_loss_and_predict(model, TWO_STAGE_LOSSES)
    # frozen_stages=1 froze the stem and stage 1; norm_eval kept every BN in eval mode.
    assert not model.backbone.layer1[0].conv1.weight.requires_grad
    assert model.backbone.layer2[0].conv1.weight.requires_grad


@pytest.mark.slow
def test_res2net_faster_rcnn_loss_and_predict():
    run_loss_and_predict(build_light(RES2NET_FASTER), TWO_STAGE_LOSSES)


@pytest.mark.slow
def test_resnest_faster_rcnn_loss_and_predict():
    # SyncBN without a process group normalizes like BN, so this runs on CPU; norm_eval is
    # False, and the split attention's 1x1 BN needs more than one image in training.
    model = build_light(RESNEST_FASTER)
    model.train()
    assert model.backbone.layer2[0].conv2.bn1.training
    run_loss_and_predict(model, TWO_STAGE_LOSSES)


# Tiny members of each family (a few channels per stage) in the tiny Faster R-CNN of
# helpers.tiny_two_stage_cfg: cheap enough to train for a few steps.
TINY_BACKBONES = {
    # block widths 8, 16, 32, 32, 32, 64, 64, 64: stages of 8/16/32/64 channels
    'regnet': (dict(type='RegNet', arch=dict(w0=8, wa=8.0, wm=2.0, group_w=8, depth=8,
                                             bot_mul=1.0), stem_channels=8),
               [8, 16, 32, 64]),
    'res2net': (dict(type='Res2Net', depth=50, base_channels=8, base_width=4),
                [32, 64, 128, 256]),
    'resnest': (dict(type='ResNeSt', depth=50, base_channels=8, stem_channels=8),
                [32, 64, 128, 256]),
}


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(TINY_BACKBONES))
def test_sgd_steps_reduce_the_loss_with_a_tiny_backbone(family):
    backbone, widths = TINY_BACKBONES[family]
    cfg = tiny_two_stage_cfg()
    # From random weights the BNs must normalize (norm_eval=False): with frozen unit
    # statistics, 16 blocks without zero-init residuals (Res2Net, ResNeSt) blow up.
    cfg['backbone'] = dict(backbone, norm_eval=False)
    cfg['neck']['in_channels'] = widths
    torch.manual_seed(0)
    model = build_detector(cfg).train()
    assert type(model.backbone).__name__ == backbone['type']
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2]),
               make_det_sample([[4, 30, 36, 62]], [1])]
    data = model.data_preprocessor(make_batch(samples), True)
    proposals = [fixed_proposals(s.gt_instances.bboxes) for s in data['data_samples']]
    before = objective(model, data, proposals)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(15):
        total, _ = model.parse_losses(model(**data, mode='loss'))
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    after = objective(model, data, proposals)
    assert after['loss'] < 0.75 * before['loss']
    assert after['loss_cls'] < before['loss_cls']
