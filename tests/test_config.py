"""Configs: mmengine inheritance rules, base config values, building parts from a base."""
import textwrap
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmdet_lite.registry import MODELS

CONFIGS = Path(__file__).resolve().parents[1] / 'configs' / '_base_'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tiny_bases(tmp_path):
    write(tmp_path / '_base_' / 'model.py', """
        model = dict(
            type='FasterRCNN',
            neck=dict(type='FPN', in_channels=[256, 512], out_channels=256, num_outs=5),
            test_cfg=dict(rcnn=dict(score_thr=0.05, max_per_img=100)))
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(1333, 800), keep_ratio=True),
        ]
        """)
    write(tmp_path / '_base_' / 'schedule.py', """
        train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
        optim_wrapper = dict(type='OptimWrapper',
                             optimizer=dict(type='SGD', lr=0.02, momentum=0.9))
        """)
    return tmp_path


def test_base_inheritance_merges_nested_dicts(tiny_bases):
    child = write(tiny_bases / 'child.py', """
        _base_ = ['./_base_/model.py', './_base_/schedule.py']
        model = dict(neck=dict(out_channels=128), test_cfg=dict(rcnn=dict(score_thr=0.3)))
        train_cfg = dict(max_epochs=24)
        """)
    cfg = Config.fromfile(str(child))
    # Overridden leaves change; their siblings come from the base.
    assert cfg.model.neck == dict(type='FPN', in_channels=[256, 512], out_channels=128,
                                  num_outs=5)
    assert cfg.model.test_cfg.rcnn == dict(score_thr=0.3, max_per_img=100)
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=1)
    assert cfg.optim_wrapper.optimizer.lr == 0.02


def test_delete_replaces_instead_of_merging(tiny_bases):
    child = write(tiny_bases / 'child.py', """
        _base_ = './_base_/schedule.py'
        optim_wrapper = dict(
            optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4))
        """)
    cfg = Config.fromfile(str(child))
    # momentum=0.9 of the SGD base is gone, not merged into AdamW's arguments.
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
    assert cfg.optim_wrapper.type == 'OptimWrapper'


def test_base_variables_are_readable(tiny_bases):
    child = write(tiny_bases / 'child.py', """
        _base_ = './_base_/schedule.py'
        base_epochs = {{_base_.train_cfg.max_epochs}}
        base_optimizer = {{_base_.optim_wrapper.optimizer}}
        """)
    cfg = Config.fromfile(str(child))
    assert cfg.base_epochs == 12
    assert cfg.base_optimizer == dict(type='SGD', lr=0.02, momentum=0.9)


def test_merge_from_dict_like_cfg_options(tiny_bases):
    cfg = Config.fromfile(str(tiny_bases / '_base_' / 'model.py'))
    cfg.merge_from_dict({
        'model.neck.num_outs': 4,
        'model.test_cfg.rcnn.score_thr': 0.5,
        'model.backbone.init_cfg': dict(type='Pretrained', checkpoint='/tmp/r50.pth'),
    })
    assert cfg.model.neck.num_outs == 4
    assert cfg.model.neck.in_channels == [256, 512]
    assert cfg.model.test_cfg.rcnn == dict(score_thr=0.5, max_per_img=100)
    assert cfg.model.backbone.init_cfg.checkpoint == '/tmp/r50.pth'


def test_merge_from_dict_list_index(tiny_bases):
    cfg = Config.fromfile(str(tiny_bases / '_base_' / 'model.py'))
    # A digit key indexes a list of dicts, e.g. one pipeline step.
    cfg.merge_from_dict({'train_pipeline.1.scale': (640, 480)}, allow_list_keys=True)
    assert cfg.train_pipeline[1] == dict(type='Resize', scale=(640, 480), keep_ratio=True)
    assert cfg.train_pipeline[0] == dict(type='LoadImageFromFile')


def test_faster_rcnn_base_values():
    model = Config.fromfile(str(CONFIGS / 'models' / 'faster-rcnn_r50_fpn.py')).model
    assert model.type == 'FasterRCNN'
    assert model.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert model.data_preprocessor.pad_size_divisor == 32
    # No download at run time: users add a local Pretrained init_cfg themselves.
    assert 'init_cfg' not in model.backbone
    assert model.neck == dict(type='FPN', in_channels=[256, 512, 1024, 2048],
                              out_channels=256, num_outs=5)
    assert model.rpn_head.anchor_generator.strides == [4, 8, 16, 32, 64]
    assert model.roi_head.bbox_roi_extractor.roi_layer == dict(
        type='RoIAlign', output_size=7, sampling_ratio=0)
    assert model.roi_head.bbox_head.bbox_coder.target_stds == [0.1, 0.1, 0.2, 0.2]
    assert model.train_cfg.rpn_proposal.nms_pre == 2000
    assert model.train_cfg.rcnn.sampler.num == 512
    assert model.test_cfg.rpn == dict(nms_pre=1000, max_per_img=1000,
                                      nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0)
    assert model.test_cfg.rcnn == dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                                       max_per_img=100)


def test_mask_rcnn_base_adds_mask_branch():
    model = Config.fromfile(str(CONFIGS / 'models' / 'mask-rcnn_r50_fpn.py')).model
    assert model.type == 'MaskRCNN'
    assert model.data_preprocessor.pad_mask is True
    assert model.roi_head.mask_roi_extractor.roi_layer.output_size == 14
    assert model.roi_head.mask_head.type == 'FCNMaskHead'
    assert model.roi_head.mask_head.loss_mask.use_mask is True
    assert model.train_cfg.rcnn.mask_size == 28
    assert model.train_cfg.rcnn.assigner.match_low_quality is True
    assert model.test_cfg.rcnn.mask_thr_binary == 0.5


@pytest.mark.parametrize('name,max_epochs,milestones', [('schedule_1x', 12, [8, 11]),
                                                        ('schedule_2x', 24, [16, 22])])
def test_schedules(name, max_epochs, milestones):
    cfg = Config.fromfile(str(CONFIGS / 'schedules' / f'{name}.py'))
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                                 val_interval=1)
    warmup, steps = cfg.param_scheduler
    assert warmup == dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
                          end=500)
    assert steps.milestones == milestones and steps.end == max_epochs
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.02, momentum=0.9,
                                               weight_decay=0.0001)
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)


def test_full_config_composes_from_bases(tmp_path):
    child = write(tmp_path / 'faster.py', f"""
        _base_ = ['{CONFIGS}/models/faster-rcnn_r50_fpn.py',
                  '{CONFIGS}/schedules/schedule_1x.py',
                  '{CONFIGS}/default_runtime.py']
        model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))
        """)
    cfg = Config.fromfile(str(child))
    assert cfg.default_scope == 'mmdet_lite'
    assert cfg.default_hooks.logger == dict(type='LoggerHook', interval=50)
    assert cfg.default_hooks.visualization.type == 'DetVisualizationHook'
    assert cfg.visualizer == dict(type='DetLocalVisualizer',
                                  vis_backends=[dict(type='LocalVisBackend')],
                                  name='visualizer')
    assert cfg.log_processor == dict(type='LogProcessor', window_size=50, by_epoch=True)
    assert cfg.env_cfg.mp_cfg == dict(mp_start_method='fork', opencv_num_threads=0)
    assert (cfg.load_from, cfg.resume, cfg.log_level) == (None, False, 'INFO')
    assert cfg.model.roi_head.bbox_head.num_classes == 3
    assert cfg.model.roi_head.bbox_head.fc_out_channels == 1024
    # The runtime's loop configs and the model's train/test configs do not collide.
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert 'rpn' in cfg.model.train_cfg


def test_backbone_and_neck_build_from_faster_rcnn_base():
    cfg = Config.fromfile(str(CONFIGS / 'models' / 'faster-rcnn_r50_fpn.py'))
    backbone = MODELS.build(cfg.model.backbone).eval()
    neck = MODELS.build(cfg.model.neck).eval()
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, 64, 64))  # C2..C5: [1, 256..2048, 16..2, 16..2]
        outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 16), (1, 256, 8, 8),
                                              (1, 256, 4, 4), (1, 256, 2, 2),
                                              (1, 256, 1, 1)]
