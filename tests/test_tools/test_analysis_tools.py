"""The analysis tools: analyze_logs, browse_dataset, get_flops, shape_trace, print_config.

Each tool's ``main(argv)`` runs in-process (the same code as the command line, without
a fresh interpreter per test) on tiny settings; shape tracing is also tested on its own.
"""
import importlib.util
import json
import os.path as osp
import re

import cv2
import pytest
import torch
from helpers_tools import REPO_ROOT, TINY_CONFIG, tiny_data_cfg_options
from torch import nn

from mmdet_lite.analysis import describe_output, format_shape_tree, trace_shapes

FASTER_RCNN_R50 = osp.join(REPO_ROOT, 'configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')


def _load_tool(relative_path: str):
    name = osp.splitext(osp.basename(relative_path))[0]
    spec = importlib.util.spec_from_file_location(f'tool_{name}',
                                                  osp.join(REPO_ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


analyze_logs = _load_tool('tools/analysis_tools/analyze_logs.py')
browse_dataset = _load_tool('tools/analysis_tools/browse_dataset.py')
get_flops = _load_tool('tools/analysis_tools/get_flops.py')
shape_trace = _load_tool('tools/analysis_tools/shape_trace.py')
print_config = _load_tool('tools/misc/print_config.py')


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)


# ---------------------------------------------------------------- analyze_logs

@pytest.fixture
def json_log(tmp_path):
    """Two epochs of 3 iterations each, a validation after each epoch."""
    lines = []
    for epoch in (1, 2):
        for i in range(1, 4):
            step = (epoch - 1) * 3 + i
            lines.append(dict(lr=0.02, loss=2.0 / step, loss_cls=1.0 / step,
                              time=[0.9, 0.2, 0.4][i - 1] * epoch, epoch=epoch, iter=step,
                              step=step))
        lines.append({'coco/bbox_mAP': 0.1 * epoch, 'coco/bbox_mAP_50': 0.2 * epoch,
                      'data_time': 0.01, 'step': epoch})
    path = tmp_path / 'run.json'
    path.write_text('\n'.join(json.dumps(line) for line in lines) + '\n')
    return str(path)


def test_plot_curve_writes_a_png(json_log, tmp_path, capsys):
    out = tmp_path / 'curve.png'
    analyze_logs.main(['plot_curve', json_log, json_log, '--keys', 'loss', 'bbox_mAP',
                       '--legend', 'run a', 'run b', '--title', 'shapes', '--out', str(out)])
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert cv2.imread(str(out)).shape[0] > 100
    assert 'saved the curves of loss, bbox_mAP' in capsys.readouterr().out


def test_keys_match_metric_suffixes_and_val_points_sit_at_epoch_ends(json_log):
    log = analyze_logs.load_json_log(json_log)
    assert len(log['train']) == 6 and len(log['val']) == 2
    assert analyze_logs.find_key(log, 'bbox_mAP', json_log) == ('val', 'coco/bbox_mAP')
    assert analyze_logs.find_key(log, 'loss', json_log) == ('train', 'loss')
    assert analyze_logs.curve(log, 'val', 'coco/bbox_mAP') == ([3, 6], [0.1, 0.2])
    assert analyze_logs.curve(log, 'train', 'loss')[0] == [1, 2, 3, 4, 5, 6]


def test_unknown_key_lists_the_available_ones(json_log, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        analyze_logs.main(['plot_curve', json_log, '--keys', 'segm_mAP',
                           '--out', str(tmp_path / 'c.png')])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "key 'segm_mAP' is not in" in err
    assert 'available keys: coco/bbox_mAP, coco/bbox_mAP_50, data_time, loss, loss_cls, ' \
        'lr, time' in err


def test_bad_logs_and_legends_are_reported(json_log, tmp_path, capsys):
    broken = tmp_path / 'broken.json'
    broken.write_text('{"loss": 1, "iter": 1, "step": 1}\nnot json\n')
    for argv, message in (
            (['plot_curve', str(broken), '--keys', 'loss'], r'broken.json, line 2: not a json'),
            (['plot_curve', str(tmp_path / 'nope.json'), '--keys', 'loss'],
             'json log not found: .*nope.json'),
            (['plot_curve', json_log, '--keys', 'loss', '--legend', 'a', 'b', 'c'],
             r'--legend needs one name per log \(1\) or per log and key \(1\), got 3')):
        with pytest.raises(SystemExit):
            analyze_logs.main(argv + ['--out', str(tmp_path / 'c.png')])
        assert re.search(message, capsys.readouterr().err)


def test_cal_train_time_skips_each_epochs_first_iteration(json_log, capsys):
    analyze_logs.main(['cal_train_time', json_log])
    out = capsys.readouterr().out
    # epoch 1: (0.2 + 0.4) / 2 = 0.3; epoch 2: (0.4 + 0.8) / 2 = 0.6
    assert 'slowest epoch 2, average time is 0.6000 s/iter' in out
    assert 'fastest epoch 1, average time is 0.3000 s/iter' in out
    assert 'time std over epochs is 0.1500' in out
    assert 'average iter time: 0.4500 s/iter' in out
    analyze_logs.main(['cal_train_time', json_log, '--include-outliers'])
    # (0.9 + 0.2 + 0.4 + 1.8 + 0.4 + 0.8) / 6 = 0.75
    assert 'average iter time: 0.7500 s/iter' in capsys.readouterr().out


# ---------------------------------------------------------------- analyze_logs: several runs

def _write_run(work_dir, timestamp, loss_start, times):
    """A training log of 2 epochs x 2 iterations with a validation after each epoch,
    written where mmengine puts it: WORK_DIR/<timestamp>/vis_data/<timestamp>.json."""
    lines = []
    for epoch in (1, 2):
        for i in (1, 2):
            step = (epoch - 1) * 2 + i
            lines.append(dict(loss=loss_start / step, time=times[step - 1], epoch=epoch,
                              iter=step, step=step))
        lines.append({'coco/bbox_mAP': loss_start * epoch / 10, 'step': epoch})
    vis_dir = work_dir / timestamp / 'vis_data'
    vis_dir.mkdir(parents=True)
    text = '\n'.join(json.dumps(line) for line in lines) + '\n'
    (vis_dir / f'{timestamp}.json').write_text(text)
    (vis_dir / 'scalars.json').write_text(text)
    return str(vis_dir / f'{timestamp}.json')


@pytest.fixture
def two_runs(tmp_path):
    """work_dirs/run_a (an older training, the latest one, then a test run) and run_b."""
    run_a, run_b = tmp_path / 'work_dirs' / 'run_a', tmp_path / 'work_dirs' / 'run_b'
    _write_run(run_a, '20240101_090000', 9.0, [5, 5, 5, 5])
    latest_a = _write_run(run_a, '20240102_090000', 2.0, [0.9, 0.2, 0.4, 0.6])
    # tools/test.py leaves a run folder with metrics beside vis_data/, no vis_data json
    (run_a / '20240103_090000' / 'vis_data').mkdir(parents=True)
    (run_a / '20240103_090000' / '20240103_090000.json').write_text('{"coco/bbox_mAP": 1}\n')
    latest_b = _write_run(run_b, '20240105_120000', 4.0, [1.0, 0.1, 0.3, 0.3])
    return str(run_a), str(run_b), latest_a, latest_b


def test_work_dirs_resolve_to_their_latest_training_log(two_runs, tmp_path):
    run_a, run_b, latest_a, latest_b = two_runs
    assert analyze_logs.resolve_log(run_a) == latest_a
    assert analyze_logs.resolve_log(run_b + '/') == latest_b
    run_dir = osp.dirname(osp.dirname(latest_a))
    assert analyze_logs.resolve_log(run_dir) == latest_a
    assert analyze_logs.resolve_log(osp.dirname(latest_a)) == latest_a
    scalars = osp.join(osp.dirname(latest_a), 'scalars.json')
    assert analyze_logs.resolve_log(scalars) == scalars  # a file is taken as it is
    assert analyze_logs.run_name(latest_a) == 'run_a'
    assert analyze_logs.run_name(str(tmp_path / 'my_log.json')) == 'my_log'
    (tmp_path / 'empty_work_dir').mkdir()
    with pytest.raises(FileNotFoundError, match='no json log in .*empty_work_dir: expected '
                       'a work dir with <timestamp>/vis_data/<timestamp>.json'):
        analyze_logs.resolve_log(str(tmp_path / 'empty_work_dir'))


def test_two_runs_are_two_curves_on_one_axes_named_after_their_work_dirs(two_runs,
                                                                         tmp_path):
    run_a, run_b, _, _ = two_runs
    out = tmp_path / 'compare.png'
    lines = analyze_logs.main(['plot_curve', run_a, run_b, '--keys', 'loss', '--out',
                               str(out)])
    assert [line.get_label() for line in lines] == ['run_a', 'run_b']
    assert lines[0].axes is lines[1].axes
    legend = [text.get_text() for text in lines[0].axes.get_legend().get_texts()]
    assert legend == ['run_a', 'run_b']
    # the latest run of run_a (loss 2 / step), not the older one (9 / step)
    assert list(lines[0].get_xdata()) == [1, 2, 3, 4]
    assert list(lines[0].get_ydata()) == pytest.approx([2.0, 1.0, 2 / 3, 0.5])
    assert list(lines[1].get_ydata()) == pytest.approx([4.0, 2.0, 4 / 3, 1.0])
    img = cv2.imread(str(out))
    assert img.shape[0] > 300 and img.shape[1] > 500 and img.std() > 10


def test_each_key_of_each_run_is_one_curve(two_runs, tmp_path):
    run_a, run_b, _, _ = two_runs
    lines = analyze_logs.main(['plot_curve', run_a, run_b, '--keys', 'loss', 'bbox_mAP',
                               '--out', str(tmp_path / 'c.png')])
    assert [line.get_label() for line in lines] == [
        'run_a: loss', 'run_a: coco/bbox_mAP', 'run_b: loss', 'run_b: coco/bbox_mAP']
    assert len({id(line.axes) for line in lines}) == 1
    # validation values at the last iteration of their epoch
    assert list(lines[3].get_xdata()) == [2, 4]
    assert list(lines[3].get_ydata()) == pytest.approx([0.4, 0.8])
    lines = analyze_logs.main(['plot_curve', run_a, run_b, '--keys', 'loss', 'bbox_mAP',
                               '--legend', 'A', 'B', '--out', str(tmp_path / 'c.png')])
    assert [line.get_label() for line in lines] == [
        'A: loss', 'A: coco/bbox_mAP', 'B: loss', 'B: coco/bbox_mAP']


def test_one_run_is_labelled_by_key_and_repeated_names_are_numbered(json_log, tmp_path):
    lines = analyze_logs.main(['plot_curve', json_log, '--keys', 'loss', 'loss_cls',
                               '--out', str(tmp_path / 'c.png')])
    assert [line.get_label() for line in lines] == ['loss', 'loss_cls']
    lines = analyze_logs.main(['plot_curve', json_log, json_log, '--keys', 'loss',
                               '--out', str(tmp_path / 'c.png')])
    assert [line.get_label() for line in lines] == ['run #1', 'run #2']


def test_cal_train_time_compares_the_runs(two_runs, capsys):
    run_a, run_b, latest_a, latest_b = two_runs
    stats = analyze_logs.main(['cal_train_time', run_a, run_b])
    out = capsys.readouterr().out
    assert f'-----Analyze train time of {latest_a}-----' in out
    assert f'-----Analyze train time of {latest_b}-----' in out
    # first iteration of each epoch left out: a: 0.2, 0.6; b: 0.1, 0.3
    assert stats['run_a']['average'] == pytest.approx(0.4)
    assert stats['run_b']['average'] == pytest.approx(0.2)
    assert out.rstrip().splitlines()[-3:] == ['run    average s/iter', 'run_b  0.2000',
                                              'run_a  0.4000']


# ---------------------------------------------------------------- browse_dataset

@pytest.mark.slow
def test_browse_dataset_saves_every_training_sample(tmp_path):
    out_dir = tmp_path / 'browse'
    browse_dataset.main([TINY_CONFIG, '--output-dir', str(out_dir), '--not-show',
                         '--cfg-options', *tiny_data_cfg_options(tmp_path / 'data')])
    with open(tmp_path / 'data' / 'annotations' / 'instances_train.json') as f:
        coco = json.load(f)
    # the training set drops images without objects (filter_empty_gt)
    with_objects = {ann['image_id'] for ann in coco['annotations']}
    expected = sorted(osp.splitext(osp.basename(img['file_name']))[0] + '.png'
                      for img in coco['images']
                      if img['id'] in with_objects)
    assert sorted(p.name for p in out_dir.iterdir()) == expected
    # drawn on the pipeline's output: Resize to 96x96
    assert cv2.imread(str(out_dir / expected[0])).shape == (96, 96, 3)


def test_browse_dataset_refuses_to_draw_nowhere(capsys):
    with pytest.raises(SystemExit):
        browse_dataset.main([TINY_CONFIG, '--not-show'])
    assert '--not-show without --output-dir' in capsys.readouterr().err


# ---------------------------------------------------------------- get_flops

@pytest.mark.slow
def test_get_flops_prints_flops_and_params(capsys):
    get_flops.main([TINY_CONFIG, '--shape', '64', '96'])
    out = capsys.readouterr().out
    assert 'Input shape: [1, 3, 64, 96] (image 64x96)' in out
    assert re.search(r'^Flops: [\d.]+M$', out, re.MULTILINE)
    assert re.search(r'^Params: [\d.]+M$', out, re.MULTILINE)
    assert '| module' in out and 'backbone' in out  # the per-module table


@pytest.mark.slow
def test_params_count_every_model_parameter():
    from mmdet_lite.apis import init_detector
    model = init_detector(TINY_CONFIG)
    info = get_flops.model_complexity(model, 64, 64)
    assert info['params'] == sum(p.numel() for p in model.parameters())
    assert info['flops'] > 0
    assert 'forward' not in vars(model)  # the temporary binding is gone


# ---------------------------------------------------------------- shape_trace

@pytest.mark.slow
def test_shape_trace_gives_resnet50_shapes_for_a_768_input(capsys):
    shape_trace.main([FASTER_RCNN_R50, '--shape', '768', '768', '--batch', '1',
                      '--backbone-only', '--depth', '2'])
    out = capsys.readouterr().out
    for line in ('backbone.conv1 -> [1, 64, 384, 384]',
                 'backbone.maxpool -> [1, 64, 192, 192]',
                 'backbone.layer1 -> [1, 256, 192, 192]',
                 'backbone.layer2 -> [1, 512, 96, 96]',
                 'backbone.layer3 -> [1, 1024, 48, 48]',
                 'backbone.layer4 -> [1, 2048, 24, 24]'):
        assert f'\n  {line}\n' in out or out.endswith(f'  {line}\n'), line
    assert 'backbone -> ([1, 256, 192, 192], [1, 512, 96, 96], [1, 1024, 48, 48], ' \
        '[1, 2048, 24, 24])' in out


def test_full_trace_walks_backbone_neck_and_heads(capsys):
    shape_trace.main([TINY_CONFIG, '--shape', '96', '--batch', '2', '--depth', '2'])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'FasterRCNN, input [2, 3, 96, 96] (images 96x96, padded by the ' \
        'data preprocessor)'
    assert lines[1].startswith('FasterRCNN -> ')
    assert '  backbone -> ([2, 8, 24, 24], [2, 16, 12, 12], [2, 32, 6, 6], [2, 64, 3, 3])' \
        in lines
    assert '    backbone.layer4 -> [2, 64, 3, 3]' in lines
    assert '  neck -> ([2, 32, 24, 24], [2, 32, 12, 12], [2, 32, 6, 6], [2, 32, 3, 3], ' \
        '[2, 32, 2, 2])' in lines
    # 50 proposals per image, 7x7 RoI features, 3 classes + background, 3 x 4 box deltas
    assert '  roi_head.bbox_roi_extractor -> [100, 32, 7, 7]' in lines
    assert '  roi_head.bbox_head -> ([100, 4], [100, 12])' in lines
    assert not any('backbone.layer1.0' in line for line in lines)  # deeper than --depth


def test_trace_shapes_records_each_call_in_order_with_call_depth():
    block = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
    model = nn.Sequential(block, nn.Flatten())
    shared = nn.Linear(2, 5)
    model.add_module('head', shared)
    x = torch.zeros(2, 3, 8, 8)
    records = trace_shapes(model, lambda: (model[0](x), shared(torch.zeros(1, 2)),
                                           shared(torch.zeros(3, 2))))
    assert [(r.name, r.depth, r.output) for r in records] == [
        ('0', 0, '[2, 4, 4, 4]'), ('0.0', 1, '[2, 4, 4, 4]'), ('0.1', 1, '[2, 4, 4, 4]'),
        ('head', 0, '[1, 5]'), ('head', 0, '[3, 5]')]
    assert format_shape_tree(records[:2], show_types=True).splitlines() == [
        '0 -> [2, 4, 4, 4]  (Sequential)', '  0.0 -> [2, 4, 4, 4]  (Conv2d)']
    assert [r.name for r in trace_shapes(model, lambda: model[0](x), max_depth=1)] == ['0']
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks  # removed


def test_describe_output_handles_containers():
    t = torch.zeros
    assert describe_output((t(1, 2), [t(3), None], {'a': t(4, 5)})) == \
        '([1, 2], [[3], None], {a: [4, 5]})'
    assert describe_output((t(2), )) == '([2],)'
    assert describe_output(list(range(10))).endswith('int, ... (10 items)]')


# ---------------------------------------------------------------- print_config

def test_print_config_prints_the_merged_config(capsys):
    print_config.main([TINY_CONFIG, '--cfg-options', 'model.backbone.depth=34',
                       'train_cfg.max_epochs=3'])
    out = capsys.readouterr().out
    assert out.startswith('Config:\n')
    assert 'depth=34' in out  # the override
    assert 'base_channels=8' in out  # from the tiny config
    assert "type='FasterRCNN'" in out and 'max_epochs=3' in out  # from the base files


def test_print_config_adds_unknown_keys_with_a_warning(capsys):
    with pytest.warns(UserWarning, match="the config has no 'model.backbon'.*did you mean "
                      "the existing key 'model.backbone'"):
        print_config.main([TINY_CONFIG, '--cfg-options', 'model.backbon.depth=34'])
    assert 'backbon=dict(depth=34)' in capsys.readouterr().out
