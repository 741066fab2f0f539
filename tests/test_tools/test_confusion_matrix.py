"""tools/analysis_tools/confusion_matrix.py on the tiny shapes dataset, in-process.

The predictions are made from the ground truth (each box predicted as its own class, one
relabelled, one false positive, one below the score threshold), so the expected matrix
follows from the dataset's annotations by hand.
"""
import json
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
from helpers_tools import REPO_ROOT, TINY_CONFIG, tiny_data_cfg_options
from mmengine.fileio import dump

TOOL = 'tools/analysis_tools/confusion_matrix.py'


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """The tiny config's 4 val images (generated once) and their ground truth."""
    from mmdet_lite.apis.cli import load_config
    from mmdet_lite.registry import DATASETS
    from mmdet_lite.utils import register_all_modules
    root = tmp_path_factory.mktemp('shapes_cm')
    options = tiny_data_cfg_options(root)
    register_all_modules(init_default_scope=False)
    dataset = DATASETS.build(load_config(TINY_CONFIG, options).test_dataloader.dataset)
    gts = [dataset.get_data_info(i)['instances'] for i in range(len(dataset))]
    return dict(options=options, gts=gts, classes=dataset.metainfo['classes'])


def _pred(boxes, scores, labels):
    return dict(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                scores=torch.tensor(scores, dtype=torch.float32),
                labels=torch.tensor(labels, dtype=torch.long))


@pytest.mark.slow  # two runs, each drawing a 900x720 plot
def test_matrix_files_match_the_hand_count(shapes, tmp_path, call_tool):
    gts, num_classes = shapes['gts'], len(shapes['classes'])
    assert sum(map(len, gts)) >= 3  # enough objects for the cases below
    expected = np.zeros((num_classes + 1, num_classes + 1))
    results = []
    relabelled = None  # label of the relabelled box
    for index, instances in enumerate(gts):
        boxes = [inst['bbox'] for inst in instances]
        labels = [inst['bbox_label'] for inst in instances]
        scores = [0.9] * len(boxes)
        for label in labels:
            expected[label, label] += 1
        if instances and relabelled is None:  # the first box predicted as the next class
            relabelled = labels[0]
            wrong = (relabelled + 1) % num_classes
            expected[relabelled, relabelled] -= 1
            expected[relabelled, wrong] += 1
            expected[relabelled, -1] += 1  # no prediction of its own class: missed
            labels[0] = wrong
            # and a duplicate of the right class scoring under --score-thr 0.3
            boxes.append(instances[0]['bbox'])
            scores.append(0.1)
            labels.append(instances[0]['bbox_label'])
        if index == 0:  # a 2x2 px box: IoU < 0.5 with any shape of 16+ px
            boxes.append([0, 0, 2, 2])
            scores.append(0.8)
            labels.append(1)
            expected[-1, 1] += 1
        results.append(dict(img_id=index, pred_instances=_pred(boxes, scores, labels)))
    pkl = tmp_path / 'results.pkl'
    dump(results, str(pkl))

    out = tmp_path / 'cm'
    proc = call_tool(osp.join(REPO_ROOT, TOOL), [TINY_CONFIG, pkl, out, '--cfg-options',
                                                 *shapes['options']])
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(out / 'confusion_matrix.npy'), expected)
    record = json.loads((out / 'confusion_matrix.json').read_text())
    assert record['labels'] == [*shapes['classes'], 'background']
    assert record['matrix'] == expected.tolist()
    assert (record['rows'], record['columns']) == ('ground truth', 'prediction')
    assert (record['score_thr'], record['tp_iou_thr'], record['nms_iou_thr']) == (0.3, 0.5,
                                                                                  None)
    image = cv2.imread(str(out / 'confusion_matrix.png'))
    assert image.shape[0] >= 500 and image.std() > 20

    # --score-thr 0: the low-scoring duplicate finds its box, which is no longer missed
    proc = call_tool(osp.join(REPO_ROOT, TOOL), [TINY_CONFIG, pkl, out, '--score-thr', '0',
                                                 '--color-theme', 'viridis', '--cfg-options',
                                                 *shapes['options']])
    assert proc.returncode == 0, proc.stderr
    expected[relabelled, relabelled] += 1
    expected[relabelled, -1] -= 1
    np.testing.assert_array_equal(np.load(out / 'confusion_matrix.npy'), expected)


@pytest.mark.parametrize('case, args, message', [
    ('missing predictions', ['{config}', '{tmp}/nope.pkl', '{tmp}/out'],
     'prediction file not found: .*nope.pkl'),
    ('bad colour map', ['{config}', '{pkl}', '{tmp}/out', '--color-theme', 'plasmaa'],
     "--color-theme: unknown matplotlib colormap 'plasmaa'"),
    ('wrong number of images', ['{config}', '{pkl}', '{tmp}/out'],
     'the predictions hold 1 images but the test dataset has 4'),
])
def test_errors_are_one_line(case, args, message, shapes, tmp_path, call_tool):
    pkl = tmp_path / 'one.pkl'
    dump([dict(pred_instances=_pred([], [], []))], str(pkl))
    argv = [a.format(config=TINY_CONFIG, tmp=tmp_path, pkl=pkl) for a in args]
    proc = call_tool(osp.join(REPO_ROOT, TOOL), argv + ['--cfg-options', *shapes['options']])
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith('error: ')
    assert re.search(message, line), line


def test_help_shows_an_example(call_tool):
    proc = call_tool(osp.join(REPO_ROOT, TOOL), ['--help'])
    assert proc.returncode == 0
    assert 'example:' in proc.stdout and 'confusion_matrix.py' in proc.stdout
    for flag in ('--show', '--color-theme', '--score-thr', '--tp-iou-thr', '--nms-iou-thr',
                 '--cfg-options'):
        assert flag in proc.stdout
