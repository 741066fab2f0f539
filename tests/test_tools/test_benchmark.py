"""Functional tests of tools/analysis_tools/benchmark.py: each mode runs and reports its fields.

Tiny settings only (64x64 images, one repeat, no warm-up, one thread); no timing is asserted.
"""
import argparse
import importlib.util
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmdet_lite.analysis.benchmark import (PhaseResult, box_masks, measure, measure_interleaved,
                                          synthetic_gt)
from mmdet_lite.analysis.benchmark_modes.random_detector import (build_random_detector,
                                                                 detector_inputs)
from mmdet_lite.analysis.torchvision_baselines import TORCHVISION_BASELINES, rcnn_kwargs

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHAPES_CFG = osp.join(ROOT, 'configs/shapes/faster-rcnn_r18_fpn_shapes.py')
MASK_CFG = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py')
TINY = ['--shape', '64', '64', '--repeat', '1', '--warmup', '0', '--threads', '1']
# A ResNet-18 Mask R-CNN with 4 classes, 32 sampled RoIs and 5 detections keeps the mask
# test small; torchvision's Mask R-CNN takes the same RoI and detection counts.
SMALL_MASK = ['--cfg-options', 'model.backbone.depth=18',
              'model.neck.in_channels=[64,128,256,512]',
              'model.roi_head.bbox_head.num_classes=4', 'model.roi_head.mask_head.num_classes=4',
              'model.train_cfg.rcnn.sampler.num=32', 'model.test_cfg.rcnn.max_per_img=5']


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(ROOT, 'tools/analysis_tools/benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _row(out: str, phase: str, model: str) -> list:
    number = r'\s+([\d.]+)'
    match = re.search(rf'^{phase}\s+{re.escape(model)}{number * 4}\s+(\d+)$', out, re.MULTILINE)
    assert match, f'no {phase}/{model} row in:\n{out}'
    return [float(v) for v in match.groups()]


def test_model_mode_without_torchvision_reports_our_phases(capsys):
    tool.main([
        'model', SHAPES_CFG, *TINY, '--compare-torchvision', 'none',
        '--score-thr', '0.0'
    ])
    out = capsys.readouterr().out
    assert '== mmdet_lite benchmark: model ==' in out
    assert 'torchvision  : none' in out
    assert re.search(r'^machine .*1 threads$', out, re.MULTILINE)
    assert 'train step 2 x 3x64x64, 5 GT boxes each' in out
    # Score threshold 0: every image gets the test_cfg.rcnn.max_per_img=100 detections.
    assert 'detections   : mmdet_lite 100' in out
    for phase in ('inference', 'train_step'):
        median, low, high, _, _ = _row(out, phase, 'mmdet_lite')
        assert low <= median <= high
    assert 'torchvision' not in out.split('torchvision  : none')[1]
    assert 'ratio' not in out


@pytest.mark.slow
def test_model_mode_compares_faster_rcnn_with_torchvision(capsys):
    tool.main(['model', SHAPES_CFG, *TINY, '--fast-path'])  # auto: FasterRCNN -> fasterrcnn
    out = capsys.readouterr().out
    # --fast-path: one inference row per step, and a channels-last train step
    for step in ('plain, serial ops', '+ fuse_bn', '+ channels_last', '+ inference_mode'):
        _row(out, 'inference', step)
    _row(out, 'train_step', '+ channels_last')
    assert re.search(r'^inference ratio to torchvision by fast-path step \(median wall\): '
                     r'mmdet_lite [\d.]+, .*\+ inference_mode [\d.]+$', out, re.MULTILINE)
    assert re.search(r'^train step ratio to torchvision \(median wall\): mmdet_lite [\d.]+, '
                     r'\+ channels_last [\d.]+$', out, re.MULTILINE)
    assert 'torchvision  : fasterrcnn' in out
    # Our ResNet-18 config cannot lend its weights to torchvision's ResNet-50.
    assert re.search(r'weights +: independent random init \(.*has shape', out)
    for phase in ('inference', 'train_step'):
        _row(out, phase, 'mmdet_lite')
        _row(out, phase, 'torchvision')
    assert re.search(r'params .*mmdet_lite [\d.]+M .*\| torchvision [\d.]+M', out)
    assert re.search(r'torchvision transform .*: [\d.]+ ms', out)
    for kind in ('wall', 'CPU'):
        assert re.search(rf'ratio mmdet_lite/torchvision \(median {kind}\): inference [\d.]+, '
                         r'train_step [\d.]+$', out, re.MULTILINE)


@pytest.mark.slow
def test_model_mode_compares_mask_rcnn_with_masks(capsys):
    tool.main(['model', MASK_CFG, *TINY, '--num-gt', '2', *SMALL_MASK])
    out = capsys.readouterr().out
    assert 'torchvision  : maskrcnn' in out
    assert '2 GT boxes each with masks' in out
    assert 'detections   : mmdet_lite 5 | torchvision 5' in out  # uniform scores 0.2 > 0.05
    _row(out, 'train_step', 'mmdet_lite')
    _row(out, 'train_step', 'torchvision')
    assert 'ratio mmdet_lite/torchvision' in out


@pytest.mark.slow
def test_dataloader_mode_reports_images_per_second(capsys):
    tool.main(['dataloader', SHAPES_CFG, '--num-batches', '2', '--num-workers', '0'])
    out = capsys.readouterr().out
    assert '== mmdet_lite benchmark: dataloader ==' in out
    assert re.search(r'dataset +: ShapesDataset, \d+ images; batch_size 4, num_workers 0', out)
    # batch_size 4 in the shapes config: 2 batches are 8 images.
    assert re.search(r'timed +: 2 batches, 8 images in [\d.]+ s', out)
    assert re.search(r'images/s +: [\d.]+', out)
    assert re.search(r'peak_rss_mb +: \d+', out)


def test_shape_not_multiple_of_32_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        tool.main(['model', SHAPES_CFG, '--shape', '60', '64'])
    assert exc.value.code == 2
    assert 'multiples of 32' in capsys.readouterr().err


def test_torchvision_rcnn_settings_follow_our_config():
    model_cfg = Config.fromfile(MASK_CFG).model
    kwargs = rcnn_kwargs(model_cfg, (480, 640))
    assert kwargs['num_classes'] == 81  # 80 classes + background
    assert (kwargs['min_size'], kwargs['max_size']) == (480, 640)
    # Proposals: test 1000 -> 1000; training 2000 -> 1000 (torchvision's own default 2000).
    assert (kwargs['rpn_pre_nms_top_n_test'], kwargs['rpn_post_nms_top_n_test']) == (1000, 1000)
    assert (kwargs['rpn_pre_nms_top_n_train'],
            kwargs['rpn_post_nms_top_n_train']) == (2000, 1000)
    assert (kwargs['box_batch_size_per_image'], kwargs['box_positive_fraction']) == (512, 0.25)
    assert (kwargs['box_score_thresh'], kwargs['box_detections_per_img']) == (0.05, 100)


def test_torchvision_retinanet_settings_follow_our_config():
    model_cfg = Config(dict(model=dict(
        type='RetinaNet', bbox_head=dict(num_classes=80),
        test_cfg=dict(nms_pre=1000, score_thr=0.05, nms=dict(iou_threshold=0.5),
                      max_per_img=100)))).model
    model = TORCHVISION_BASELINES['retinanet'].build(model_cfg, (64, 64))
    assert model.head.classification_head.num_classes == 80
    assert (model.topk_candidates, model.score_thresh, model.detections_per_img) == (1000, 0.05,
                                                                                     100)


def test_synthetic_gt_is_reproducible_and_inside_the_image():
    first = synthetic_gt(2, 3, (40, 80), num_classes=5, seed=7)
    again = synthetic_gt(2, 3, (40, 80), num_classes=5, seed=7)
    for (bboxes, labels), (bboxes2, labels2) in zip(first, again):
        assert bboxes.shape == (3, 4) and labels.dtype == torch.int64
        torch.testing.assert_close(bboxes, bboxes2)
        assert torch.equal(labels, labels2)
        widths, heights = bboxes[:, 2] - bboxes[:, 0], bboxes[:, 3] - bboxes[:, 1]
        assert ((widths >= 10) & (widths <= 40)).all()  # 1/8 .. 1/2 of w=80
        assert ((heights >= 5) & (heights <= 20)).all()  # 1/8 .. 1/2 of h=40
        assert (bboxes[:, 2] <= 80).all() and (bboxes[:, 3] <= 40).all()
        assert ((labels >= 0) & (labels < 5)).all()


def test_box_masks_fill_each_box():
    masks = box_masks(torch.tensor([[1., 2., 4., 3.], [0., 0., 2., 2.]]), (4, 5))
    expected0 = np.zeros((4, 5), np.uint8)
    expected0[2:3, 1:4] = 1
    assert masks.dtype == np.uint8 and masks.shape == (2, 4, 5)
    np.testing.assert_array_equal(masks[0], expected0)
    assert masks[1].sum() == 4


def test_measure_runs_warmup_untimed_then_repeats():
    calls = []
    result = measure(lambda: calls.append(1), 'inference', 'm', repeat=3, warmup=2)
    assert isinstance(result, PhaseResult)
    assert len(calls) == 5 and len(result.times) == 3
    assert result.min_ms <= result.median_ms <= result.max_ms
    assert result.peak_rss_mb > 0
    with pytest.raises(ValueError, match='repeat must be >= 1'):
        measure(lambda: None, 'inference', 'm', repeat=0, warmup=0)


def test_measure_interleaved_times_the_models_round_robin():
    order = []
    results = measure_interleaved({'a': lambda: order.append('a') or 'A',
                                   'b': lambda: order.append('b') or 'B'},
                                  'inference', repeat=3, warmup=1)
    assert order == ['a', 'b'] * 4  # one warm-up round, then three timed rounds
    assert [(r.model, r.phase, r.output, len(r.times)) for r in results] == [
        ('a', 'inference', 'A', 3), ('b', 'inference', 'B', 3)]
    assert results[0].peak_rss_mb == results[1].peak_rss_mb > 0
    with pytest.raises(ValueError, match='warmup must be >= 0'):
        measure_interleaved({'a': lambda: None}, 'inference', repeat=1, warmup=-1)


@pytest.mark.slow
def test_copied_weights_give_torchvision_our_features_and_scores():
    model_cfg = Config.fromfile(MASK_CFG).model
    model_cfg.roi_head.bbox_head.num_classes = 3
    model_cfg.roi_head.mask_head.num_classes = 3
    ours = build_random_detector(model_cfg).eval()
    baseline = TORCHVISION_BASELINES['maskrcnn']
    tv_model = baseline.build(model_cfg, (64, 64)).eval()
    assert baseline.copy_weights(ours, tv_model) is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        our_feats = ours.extract_feat(x)  # P2..P6
        tv_feats = list(tv_model.backbone(x).values())  # '0'..'3', 'pool'
        for mine, theirs in zip(our_feats, tv_feats):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)
        our_cls, our_reg = ours.rpn_head(our_feats)
        tv_cls, tv_reg = tv_model.rpn.head(tv_feats)
        torch.testing.assert_close(our_cls[0], tv_cls[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(our_reg[0], tv_reg[0], rtol=1e-4, atol=1e-4)
        roi_feats = torch.randn(2, 256, 7, 7)
        cls_score, bbox_pred = ours.roi_head.bbox_head(roi_feats)  # [2, 3 + 1], [2, 3 * 4]
        tv_score, tv_pred = tv_model.roi_heads.box_predictor(
            tv_model.roi_heads.box_head(roi_feats))  # background first
        torch.testing.assert_close(tv_score, torch.cat([cls_score[:, -1:], cls_score[:, :-1]], 1))
        torch.testing.assert_close(tv_pred[:, 4:], bbox_pred)
        assert not tv_pred[:, :4].any()
        mask_feats = torch.randn(2, 256, 14, 14)
        tv_masks = tv_model.roi_heads.mask_predictor(tv_model.roi_heads.mask_head(mask_feats))
        torch.testing.assert_close(tv_masks[:, 1:], ours.roi_head.mask_head(mask_feats))


def test_parse_importtime_reads_self_and_cumulative_seconds():
    from mmdet_lite.analysis.import_timing import parse_importtime
    report = ('import time: self [us] | cumulative | imported package\n'
              'import time:       120 |        120 |     pkg.child\n'
              'import time:      2500 |       2620 |   pkg\n'
              'some other line\n')
    assert parse_importtime(report) == [('pkg.child', 0.00012, 0.00012), ('pkg', 0.0025, 0.00262)]


def test_measure_import_counts_only_what_the_package_adds():
    from mmdet_lite.analysis.import_timing import measure_import
    seconds, heaviest = measure_import('email.mime.text', baseline=('os', ), repeat=1)
    assert 0 < seconds < 5
    assert heaviest and all(not name.startswith('os') for name, _ in heaviest)
    with pytest.raises(ValueError, match='already imported'):
        measure_import('os.path', baseline=('os', ), repeat=1)


RETINA_CFG = osp.join(ROOT, 'configs/shapes/retinanet_r18_fpn_shapes.py')


def test_stages_mode_times_each_stage_and_the_whole_predict(capsys):
    tool.main(['stages', RETINA_CFG, '--shape', '64', '64', '--repeat', '1', '--warmup', '0',
               '--threads', '1', '--score-thr', '0.0'])
    out = capsys.readouterr().out
    assert '== mmdet_lite benchmark: inference stages ==' in out
    rows = dict(re.findall(r'^(\w+)\s+([\d.]+)\s+[\d.]+\s+\d+%$', out, re.MULTILINE))
    assert list(rows) == ['backbone', 'neck', 'head_forward', 'post_process', 'predict']
    assert all(float(v) > 0 for v in rows.values())
    # score_thr 0: every image keeps max_per_img detections (RetinaNet shapes: 100)
    assert re.search(r'^detections   : 100$', out, re.MULTILINE), out


def test_stages_match_predict_outputs():
    """The post-process closure gives what predict gives: the split loses nothing."""
    from mmdet_lite.analysis.stage_timing import single_stage_steps
    cfg = Config.fromfile(RETINA_CFG)
    model = build_random_detector(cfg.model)
    inputs, samples = detector_inputs(synthetic_gt(1, 1, (64, 64), 3), (64, 64), False)
    steps = single_stage_steps(model, inputs, samples)
    split = steps['post_process']()[0]
    whole = steps['predict']()[0].pred_instances
    assert torch.equal(split.bboxes, whole.bboxes)
    assert torch.equal(split.scores, whole.scores)
    assert torch.equal(split.labels, whole.labels)


def test_stages_refuses_a_two_stage_detector():
    from mmdet_lite.analysis.stage_timing import single_stage_steps
    cfg = Config.fromfile(SHAPES_CFG)
    model = build_random_detector(cfg.model)
    with pytest.raises(TypeError, match='single-stage detector with a bbox_head'):
        single_stage_steps(model, torch.zeros(1, 3, 64, 64), [])


@pytest.mark.slow
def test_test_loop_mode_counts_every_val_image(tmp_path, capsys):
    from helpers_tools import TINY_CONFIG, tiny_data_cfg_options
    tool.main(['test_loop', TINY_CONFIG, '--threads', '1', '--cfg-options',
               *tiny_data_cfg_options(tmp_path)])
    out = capsys.readouterr().out
    assert '== mmdet_lite benchmark: test loop ==' in out
    assert re.search(r'^images       : 4$', out, re.MULTILINE), out  # the tiny val split
    loop = re.search(r'^loop         : ([\d.]+) s, ([\d.]+) images/s', out, re.MULTILINE)
    whole = re.search(r'^with metrics : ([\d.]+) s', out, re.MULTILINE)
    assert loop and whole and float(whole.group(1)) >= float(loop.group(1))
    assert 'coco/bbox_mAP' in out


def test_stages_fused_channels_last_gives_the_same_detections():
    """--fuse-conv-bn and --channels-last change speed, not results."""
    from mmcv.cnn import fuse_conv_bn

    from mmdet_lite.analysis.stage_timing import single_stage_steps
    cfg = Config.fromfile(RETINA_CFG)
    model = build_random_detector(cfg.model).eval()
    for m in model.modules():  # non-trivial BN statistics, so that folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    inputs, samples = detector_inputs(synthetic_gt(1, 1, (64, 64), 3), (64, 64), False)
    plain = single_stage_steps(model, inputs, samples)['predict']()[0].pred_instances
    fast = fuse_conv_bn(model).to(memory_format=torch.channels_last)
    fast_in = inputs.contiguous(memory_format=torch.channels_last)
    fused = single_stage_steps(fast, fast_in, samples)['predict']()[0].pred_instances
    torch.testing.assert_close(fused.scores, plain.scores, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fused.bboxes, plain.bboxes, atol=1e-3, rtol=1e-4)


def test_stages_mode_accepts_fuse_and_channels_last(capsys):
    tool.main(['stages', RETINA_CFG, '--shape', '64', '64', '--repeat', '1', '--warmup', '0',
               '--threads', '1', '--fuse-conv-bn', '--channels-last'])
    out = capsys.readouterr().out
    assert 'model        : fuse_conv_bn True, channels_last True' in out


def test_fuse_conv_bn_untied_keeps_rtmdet_shared_conv_outputs():
    """RTMDetSepBNHead shares each tower conv across levels with a BN per level: folding
    needs a conv per BN. mmcv's fuse_conv_bn alone folds every level's BN into the one
    shared conv and changes the outputs."""
    import copy

    from mmcv.cnn import fuse_conv_bn

    from mmdet_lite.analysis.stage_timing import fuse_conv_bn_untied
    cfg = Config.fromfile(osp.join(ROOT, 'configs/shapes/rtmdet_tiny_shapes.py'))
    model = build_random_detector(cfg.model).eval()
    torch.manual_seed(0)
    for m in model.modules():  # BN and SyncBN (the RTMDet configs' norm)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = model._forward(x)
        fused = fuse_conv_bn_untied(copy.deepcopy(model))._forward(x)
        naive = fuse_conv_bn(copy.deepcopy(model))._forward(x)
    for a, b in zip(sum(plain, ()), sum(fused, ())):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    assert not all(torch.allclose(a, b, atol=1e-3)
                   for a, b in zip(sum(plain, ()), sum(naive, ())))


@pytest.mark.parametrize('no_cache', [True, False])
def test_imports_mode_says_whether_bytecode_is_cached(monkeypatch, capsys, no_cache):
    from mmdet_lite.analysis.benchmark_modes import import_time
    monkeypatch.setattr(import_time, 'measure_import',
                        lambda package, repeat: (0.25, [('pkg.heavy', 0.004)]))
    if no_cache:
        monkeypatch.setenv('PYTHONDONTWRITEBYTECODE', '1')
    else:
        monkeypatch.delenv('PYTHONDONTWRITEBYTECODE', raising=False)
    import_time.run_imports(argparse.Namespace(repeat=3, packages=['pkg']))
    out = capsys.readouterr().out
    assert 'pkg                         : 0.250 s (median of 3); heaviest: pkg.heavy 4 ms' in out
    assert ('compiled from source' in out) == no_cache
    assert ('cached in __pycache__' in out) == (not no_cache)
