"""tools/analysis_tools/analyze_results.py and eval_metric.py on the tiny shapes dataset.

Predictions made from the ground truth give known scores: a perfect image has mAP 1, an
image without predictions (or without objects) 0, so the files analyze_results writes and
the metrics eval_metric prints can be checked by hand. One slow test runs tools/test.py
--out on a tiny model and checks that eval_metric gives back the metrics it printed.
"""
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
from helpers_tools import REPO_ROOT, TINY_CONFIG, run_tool, tiny_data_cfg_options
from mmengine.fileio import dump
from pycocotools import mask as mask_util

ANALYZE = osp.join(REPO_ROOT, 'tools/analysis_tools/analyze_results.py')
EVAL = osp.join(REPO_ROOT, 'tools/analysis_tools/eval_metric.py')


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """The tiny config's 4 val images (generated once): their data_info."""
    from mmdet_lite.apis.cli import load_config
    from mmdet_lite.registry import DATASETS
    from mmdet_lite.utils import register_all_modules
    root = tmp_path_factory.mktemp('shapes_ar')
    options = tiny_data_cfg_options(root)
    register_all_modules(init_default_scope=False)
    dataset = DATASETS.build(load_config(TINY_CONFIG, options).test_dataloader.dataset)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    return dict(root=root, options=options, infos=infos)


def _gt_prediction(info, with_masks=None):
    """The image's ground truth as predictions scoring 1 (masks: None, 'tensor' or 'rle')."""
    instances = info['instances']
    pred = dict(bboxes=torch.tensor([i['bbox'] for i in instances],
                                    dtype=torch.float32).reshape(-1, 4),
                scores=torch.ones(len(instances)),
                labels=torch.tensor([i['bbox_label'] for i in instances], dtype=torch.long))
    if with_masks is not None:
        height, width = info['height'], info['width']
        masks = np.zeros((len(instances), height, width), dtype=np.uint8)
        for k, inst in enumerate(instances):
            rle = mask_util.merge(mask_util.frPyObjects(inst['mask'], height, width))
            masks[k] = mask_util.decode(rle)
        if with_masks == 'tensor':
            pred['masks'] = torch.from_numpy(masks.astype(bool))
        else:  # RLE with bytes counts, as mmdetection's DumpDetResults writes them
            pred['masks'] = [mask_util.encode(np.asfortranarray(m)) for m in masks]
    return dict(img_id=info['img_id'], img_path=info['img_path'],
                ori_shape=(info['height'], info['width']), pred_instances=pred)


def _no_prediction(info):
    return _gt_prediction(dict(info, instances=[]))


# ---------------------------------------------------------------- analyze_results

def test_analyze_results_draws_best_and_worst_named_by_map(shapes, tmp_path, call_tool):
    infos = shapes['infos']
    with_objects = [i for i, info in enumerate(infos) if info['instances']]
    assert len(with_objects) >= 2
    missed = with_objects[0]  # objects but no prediction: mAP 0
    results = [_no_prediction(info) if i == missed else _gt_prediction(info)
               for i, info in enumerate(infos)]
    maps = [1.0 if i in with_objects and i != missed else 0.0 for i in range(len(infos))]
    pkl = tmp_path / 'results.pkl'
    dump(results, str(pkl))

    out = tmp_path / 'ranked'
    proc = call_tool(ANALYZE, [TINY_CONFIG, pkl, out, '--topk', '1', '--cfg-options',
                               *shapes['options']])
    assert proc.returncode == 0, proc.stderr
    # sorted by mAP, ties in dataset order: best = last of the 1.0s, worst = first 0.0
    best = max(i for i in range(len(infos)) if maps[i] == 1.0)
    worst = min(i for i in range(len(infos)) if maps[i] == 0.0)
    for folder, index, score in (('good', best, '1.0'), ('bad', worst, '0.0')):
        stem, ext = osp.splitext(osp.basename(infos[index]['img_path']))
        assert sorted(p.name for p in (out / folder).iterdir()) == [f'{stem}_{score}{ext}']
        drawn = cv2.imread(str(out / folder / f'{stem}_{score}{ext}')).astype(np.int32)
        image = cv2.imread(infos[index]['img_path']).astype(np.int32)
        height, width = image.shape[:2]
        assert drawn.shape == (height, 2 * width, 3)  # ground truth | predictions
        changed = np.abs(drawn - np.concatenate([image, image], 1)).sum(-1) > 80
        x1, y1, x2, y2 = np.round(infos[index]['instances'][0]['bbox']).astype(int)
        gt_box = changed[max(y1 - 2, 0):y2 + 3, max(x1 - 2, 0):x2 + 3]
        assert gt_box.mean() > 0.1  # the ground-truth box is drawn on the left
        pred_box = changed[max(y1 - 2, 0):y2 + 3, width + max(x1 - 2, 0):width + x2 + 3]
        assert (pred_box.mean() > 0.1) == (index != missed)  # and predicted on the right


def test_analyze_results_cuts_topk_to_half_the_images(shapes, tmp_path, call_tool):
    results = [_gt_prediction(info) for info in shapes['infos']]
    dump(results, str(tmp_path / 'results.pkl'))
    proc = call_tool(ANALYZE, [TINY_CONFIG, tmp_path / 'results.pkl', tmp_path / 'out',
                               '--topk', '3', '--show-score-thr', '0.5', '--cfg-options',
                               *shapes['options']])
    assert proc.returncode == 0, proc.stderr
    half = len(results) // 2  # 2 * 3 > 4 images
    assert len(list((tmp_path / 'out' / 'good').iterdir())) == half
    assert len(list((tmp_path / 'out' / 'bad').iterdir())) == half


# ---------------------------------------------------------------- eval_metric

@pytest.fixture(scope='module')
def segm_config(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'tiny_segm.py'
    path.write_text(f'_base_ = {TINY_CONFIG!r}\n'
                    "val_evaluator = dict(metric=['bbox', 'segm'])\n")
    return str(path)


@pytest.mark.parametrize('mask_format', ['rle', 'tensor'])
def test_eval_metric_scores_ground_truth_predictions_1(shapes, segm_config, mask_format,
                                                       tmp_path, call_tool):
    results = [_gt_prediction(info, mask_format) for info in shapes['infos']]
    dump(results, str(tmp_path / 'perfect.pkl'))
    proc = call_tool(EVAL, [segm_config, tmp_path / 'perfect.pkl', '--cfg-options',
                            *shapes['options']])
    assert proc.returncode == 0, proc.stderr
    for task in ('bbox', 'segm'):
        for metric in ('mAP', 'mAP_50', 'mAP_75'):
            assert f"'coco/{task}_{metric}': 1.0" in proc.stdout, proc.stdout[-2000:]


def test_eval_metric_reads_the_rle_masks(shapes, segm_config, tmp_path, call_tool):
    # an empty mask for one object lowers the mask AP only
    results = [_gt_prediction(info, 'rle') for info in shapes['infos']]
    pred = next(r for r in results if len(r['pred_instances']['labels']))['pred_instances']
    height, width = pred['masks'][0]['size']
    pred['masks'][0] = mask_util.encode(np.zeros((height, width), np.uint8, order='F'))
    dump(results, str(tmp_path / 'one_mask_off.pkl'))
    proc = call_tool(EVAL, [segm_config, tmp_path / 'one_mask_off.pkl', '--cfg-options',
                            *shapes['options']])
    assert proc.returncode == 0, proc.stderr
    assert "'coco/bbox_mAP': 1.0" in proc.stdout
    segm = float(re.search(r"'coco/segm_mAP': ([0-9.]+)", proc.stdout).group(1))
    assert 0 < segm < 1


def test_eval_metric_scores_no_predictions_0(shapes, tmp_path, call_tool):
    dump([_no_prediction(info) for info in shapes['infos']], str(tmp_path / 'none.pkl'))
    proc = call_tool(EVAL, [TINY_CONFIG, tmp_path / 'none.pkl', '--cfg-options',
                            *shapes['options']])
    assert proc.returncode == 0, proc.stderr
    assert "'coco/bbox_mAP': 0.0" in proc.stdout


@pytest.mark.slow
def test_eval_metric_reproduces_the_metrics_test_py_printed(shapes, tmp_path, call_tool):
    from mmdet_lite.apis import init_detector
    config = tmp_path / 'tiny_thr0.py'
    config.write_text(f'_base_ = {TINY_CONFIG!r}\n'
                      'model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))\n')
    torch.manual_seed(0)
    model = init_detector(str(config))
    ckpt = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    pkl = tmp_path / 'results.pkl'
    proc = run_tool('test', [config, ckpt, '--work-dir', tmp_path / 'work', '--out', pkl,
                             '--cfg-options', *shapes['options']])
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = dict(re.findall(r'(coco/bbox_mAP\w*): ([-0-9.]+)', proc.stdout))
    assert len(printed) == 6, proc.stdout[-3000:]

    proc = call_tool(EVAL, [config, pkl, '--cfg-options', *shapes['options']])
    assert proc.returncode == 0, proc.stderr
    evaluated = dict(re.findall(r"'(coco/bbox_mAP\w*)': ([-0-9.]+)", proc.stdout))
    assert evaluated.keys() == printed.keys()
    for key, value in printed.items():
        assert float(evaluated[key]) == pytest.approx(float(value), abs=5e-5), key


# ---------------------------------------------------------------- errors, help

@pytest.mark.parametrize('tool, extra, message', [
    (ANALYZE, ['{tmp}/out'], 'prediction file not found: .*nope.pkl'),
    (EVAL, [], 'prediction file not found: .*nope.pkl'),
])
def test_missing_prediction_file_is_a_one_line_error(tool, extra, message, tmp_path,
                                                     call_tool):
    argv = [TINY_CONFIG, tmp_path / 'nope.pkl'] + [a.format(tmp=tmp_path) for a in extra]
    proc = call_tool(tool, argv)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert re.search(message, proc.stderr.strip().splitlines()[-1])


def test_bad_inputs_name_the_problem(shapes, tmp_path, call_tool):
    proc = call_tool(ANALYZE, [TINY_CONFIG, tmp_path / 'x.pkl', tmp_path / 'out',
                               '--topk', '0'])
    assert proc.returncode == 2 and '--topk must be > 0, got 0' in proc.stderr
    dump(dict(not_a='list'), str(tmp_path / 'dict.pkl'))
    proc = call_tool(EVAL, [TINY_CONFIG, tmp_path / 'dict.pkl', '--cfg-options',
                            *shapes['options']])
    assert proc.returncode == 2
    assert 'holds a dict; expected the list of per-image predictions' in proc.stderr


@pytest.mark.parametrize('tool, flags', [
    (ANALYZE, ['--show', '--wait-time', '--topk', '--show-score-thr', '--cfg-options']),
    (EVAL, ['--cfg-options']),
])
def test_help_shows_an_example(tool, flags, call_tool):
    proc = call_tool(tool, ['--help'])
    assert proc.returncode == 0
    assert 'example:' in proc.stdout and osp.basename(tool) in proc.stdout
    for flag in flags:
        assert flag in proc.stdout
