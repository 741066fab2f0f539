"""tools/analysis_tools/report.py and tools/test.py --report: the HTML report of a test run.

Per-class AP and precision-recall curves are checked on a hand-computed case; the page of
the tiny shapes set (predictions made from the ground truth with known mistakes) against
CocoMetric on the same pkl, statically and in headless Chromium (the page's script writes
load errors into ``<pre id="errors">`` and marks each ``<img>`` with ``data-loaded``, which
``--dump-dom`` shows). Chromium is Debian's ``chromium`` package.
"""
import json
import math
import os.path as osp
import pickle
import re
import shutil
import subprocess
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
import torch
from helpers_tools import TINY_CONFIG, load_script, run_tool, tiny_data_cfg_options
from pycocotools import mask as mask_util

from mmdet_lite.analysis.report import (build_test_dataset, evaluate_classes,
                                        read_training_log)
from mmdet_lite.apis.cli import load_config
from mmdet_lite.evaluation import CocoMetric

report_tool = load_script('tools/analysis_tools/report.py')
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason='chromium is not installed (Debian: apt-get install -y '
    'chromium); the browser checks of the HTML report need it')


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)


class PageParser(HTMLParser):
    """What the tests read from a report page: images, table cells, error text."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.errors = [], {}, None
        self.body_attrs, self.image_maps = {}, []
        self._table, self._row, self._cell, self._in_errors = None, None, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'body':
            self.body_attrs = attrs
        elif tag == 'img':
            self.images.append(attrs)
        elif tag == 'table':
            self._table = self.tables.setdefault(attrs.get('id'), [])
        elif tag == 'tr' and self._table is not None:
            self._row = []
        elif tag in ('td', 'th') and self._row is not None:
            self._cell = [attrs.get('data-value'), '']
        elif tag == 'pre' and attrs.get('id') == 'errors':
            self._in_errors, self.errors = True, ''
        elif tag == 'span' and attrs.get('class') == 'image-map':
            self.image_maps.append(float(attrs['data-value']))

    def handle_endtag(self, tag):
        if tag in ('td', 'th') and self._cell is not None:
            self._row.append(tuple(self._cell))
            self._cell = None
        elif tag == 'tr' and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == 'table':
            self._table = None
        elif tag == 'pre':
            self._in_errors = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        if self._in_errors:
            self.errors += data


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    return parser


# ---------------------------------------------------------------- per-class COCOeval

class FakeDataset:
    """The two things evaluate_classes reads from a dataset."""

    def __init__(self, classes, infos):
        self.metainfo = dict(classes=classes)
        self.infos = infos

    def __len__(self):
        return len(self.infos)

    def get_data_info(self, index):
        return self.infos[index]


def _box(label, bbox):
    return dict(bbox=bbox, bbox_label=label, ignore_flag=0)


def test_per_class_ap_and_pr_curves_by_hand():
    # class a: 2 objects found exactly, a false positive ranked between them;
    # class b: its object found with IoU 16*30 / (600 + 600 - 480) = 2/3; class c: no object
    info = dict(img_id=7, width=100, height=100,
                instances=[_box(0, [10, 10, 30, 30]), _box(0, [50, 50, 80, 80]),
                           _box(1, [0, 60, 20, 90])])
    pred = dict(bboxes=torch.tensor([[10., 10, 30, 30], [60, 0, 90, 20], [50, 50, 80, 80],
                                     [4, 60, 24, 90]]),
                scores=torch.tensor([0.9, 0.8, 0.7, 0.6]), labels=torch.tensor([0, 0, 0, 1]))
    (result, ) = evaluate_classes(FakeDataset(('a', 'b', 'c'), [info]),
                                  [dict(img_id=7, pred_instances=pred)])
    assert result.iou_type == 'bbox' and result.classes == ['a', 'b', 'c']
    np.testing.assert_array_equal(result.num_gts, [2, 1, 0])
    # class a, at every IoU: precision 1 up to recall 0.5 (51 of the 101 recall points),
    # then 2/3 (the best precision at recall 1)
    ap_a = (51 * 1 + 50 * 2 / 3) / 101
    np.testing.assert_allclose([result.ap[0], result.ap50[0], result.ap75[0]], ap_a)
    # class b: a true positive at IoU 0.5, 0.55, 0.6, 0.65 of the 10 thresholds
    np.testing.assert_allclose([result.ap[1], result.ap50[1], result.ap75[1]], [0.4, 1, 0])
    assert math.isnan(result.ap[2]) and math.isnan(result.ap50[2])
    np.testing.assert_allclose(result.recall_thrs, np.linspace(0, 1, 101))
    curve_a = result.pr_curves[0.5][0]
    np.testing.assert_allclose(curve_a[:51], 1)
    np.testing.assert_allclose(curve_a[51:], 2 / 3)
    np.testing.assert_allclose(result.pr_curves[0.5][1], 1)
    np.testing.assert_allclose(result.pr_curves[0.75][1], 0)
    np.testing.assert_array_equal(result.pr_curves[0.5][2], -1)  # no ground truth


@pytest.mark.parametrize('mask_format', ['tensor', 'rle'])
def test_segm_ap_reads_masks_and_makes_maskless_objects_crowd_regions(mask_format):
    """A predicted mask equal to the ground-truth polygon is a true positive at every IoU;
    an object without a mask is an ignored (crowd) region, not a missed object."""
    square = [[10., 10., 40., 10., 40., 40., 10., 40.]]  # a polygon: (10, 10) to (40, 40)
    info = dict(img_id=1, width=64, height=64,
                instances=[dict(_box(0, [10, 10, 40, 40]), mask=square),
                           _box(1, [45, 45, 60, 60])])  # no mask
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 10:40] = 1  # polygon (10..40) rasterises to pixels 10..39
    masks = np.stack([mask, np.zeros_like(mask)])  # [2, 64, 64]
    if mask_format == 'tensor':  # as tools/test.py --out dumps them
        masks = torch.from_numpy(masks).bool()
    else:  # RLEs with bytes counts, as pycocotools encodes
        masks = [mask_util.encode(np.asfortranarray(m)) for m in masks]
    pred = dict(bboxes=torch.tensor([[10., 10, 40, 40], [45, 45, 60, 60]]),
                scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([0, 1]), masks=masks)
    bbox, segm = evaluate_classes(FakeDataset(('a', 'b'), [info]),
                                  [dict(img_id=1, pred_instances=pred)])
    assert (bbox.iou_type, segm.iou_type) == ('bbox', 'segm')
    np.testing.assert_allclose(bbox.ap, [1, 1])
    np.testing.assert_array_equal(bbox.num_gts, [1, 1])
    assert segm.ap[0] == pytest.approx(1.0)
    np.testing.assert_array_equal(segm.num_gts, [1, 0])
    assert math.isnan(segm.ap[1])  # only a crowd region left for class b


# ---------------------------------------------------------------- training logs

def _write_log(run_dir, lines, name='scalars.json'):
    (run_dir / 'vis_data').mkdir(parents=True)
    (run_dir / 'vis_data' / name).write_text('\n'.join(json.dumps(x) for x in lines) + '\n')


def _train_lines(epochs, iters_per_epoch=2):
    lines = []
    for epoch in epochs:
        for i in range(1, iters_per_epoch + 1):
            step = (epoch - 1) * iters_per_epoch + i
            lines.append(dict(loss=1.0 / step, loss_cls=0.5 / step, lr=0.01, epoch=epoch,
                              iter=step, step=step))
        lines.append({'coco/bbox_mAP': 0.1 * epoch, 'coco/bbox_mAP_50': 0.2 * epoch,
                      'step': epoch})
    return lines


def test_training_log_joins_a_resumed_run_and_skips_older_and_test_runs(tmp_path):
    _write_log(tmp_path / '20260101_000000', _train_lines([1, 2, 3]))  # from scratch
    _write_log(tmp_path / '20260102_000000', _train_lines([1, 2]))  # a new training ...
    _write_log(tmp_path / '20260103_000000', _train_lines([3]))  # ... resumed
    _write_log(tmp_path / '20260104_000000', [{'coco/bbox_mAP': 0.9, 'step': 0}],
               name='20260104_000000.json')  # tools/test.py: no training lines
    log = read_training_log(str(tmp_path))
    assert [osp.basename(osp.dirname(osp.dirname(f))) for f in log.files] == [
        '20260102_000000', '20260103_000000']
    assert [line['step'] for line in log.train] == [1, 2, 3, 4, 5, 6]
    losses = log.loss_curves()
    assert list(losses) == ['loss', 'loss_cls']  # the total first
    assert losses['loss'] == ([1, 2, 3, 4, 5, 6], [1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6])
    assert log.metric_curves() == {'coco/bbox_mAP': ([1, 2, 3], [0.1, 0.2, 0.1 * 3])}
    assert log.by_epoch
    assert read_training_log(str(tmp_path / '20260103_000000')).files[0].endswith(
        '20260103_000000/vis_data/scalars.json')  # a run dir itself
    assert read_training_log(str(tmp_path / '20260104_000000')) is None


# ---------------------------------------------------------------- the shapes report

def _predictions_from_gt(dataset):
    """Per-image predictions with known quality: image 0 exact, 1 shifted by 3 px plus a
    false positive, 2 with every label wrong, 3 (and beyond) none."""
    results = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        boxes = np.array([a['bbox'] for a in info['instances']], np.float32).reshape(-1, 4)
        labels = np.array([a['bbox_label'] for a in info['instances']], np.int64)
        if index == 1:
            boxes = np.vstack([boxes + 3, [[0, 0, 10, 10]]]).astype(np.float32)
            labels = np.append(labels, 0)
        elif index == 2:
            labels = (labels + 1) % 3
        elif index >= 3:
            boxes, labels = boxes[:0], labels[:0]
        scores = np.linspace(0.9, 0.5, len(labels), dtype=np.float32)
        results.append(dict(
            img_id=info['img_id'], img_path=info['img_path'],
            ori_shape=(info['height'], info['width']),
            pred_instances=dict(bboxes=torch.from_numpy(boxes),
                                scores=torch.from_numpy(scores),
                                labels=torch.from_numpy(labels))))
    return results


@pytest.fixture(scope='module')
def shapes_report(tmp_path_factory):
    """The report of the 4 tiny val images, with a training log in the work dir."""
    root = tmp_path_factory.mktemp('report')
    options = tiny_data_cfg_options(root / 'data')
    cfg = load_config(TINY_CONFIG, options)
    dataset = build_test_dataset(cfg)  # generates the images
    results = _predictions_from_gt(dataset)
    pkl = root / 'results.pkl'
    pkl.write_bytes(pickle.dumps(results))
    _write_log(root / 'work' / '20260101_000000', _train_lines([1, 2]))
    out_dir = root / 'out'
    path = report_tool.main([TINY_CONFIG, '--results', str(pkl), '--out-dir', str(out_dir),
                             '--work-dir', str(root / 'work'), '--topk', '10',
                             '--cfg-options', *options])
    # CocoMetric on the same pkl, the numbers the page must show
    metric = CocoMetric(ann_file=str(root / 'data' / 'annotations' / 'instances_val.json'),
                        classwise=True)
    metric.dataset_meta = dataset.metainfo
    metric.process({}, results)
    expected = metric.compute_metrics(metric.results)
    return dict(path=path, out_dir=out_dir, results=results, dataset=dataset,
                expected=expected, text=open(path, encoding='utf-8').read())


def _table_values(table):
    """{first cell: [data-value floats of the other cells]} of a parsed table."""
    return {row[0][1]: [float(v) if v is not None else text for v, text in row[1:]]
            for row in table[1:]}


@pytest.mark.slow
def test_report_page_shows_coco_metric_numbers_and_writes_its_images(shapes_report):
    page = parse_page(shapes_report['text'])
    expected = shapes_report['expected']
    metrics = _table_values(page.tables['metrics'])
    assert list(metrics) == [f'coco/bbox_{k}' for k in
                             ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')]
    for name, (value, ) in metrics.items():
        assert value == expected[name[len('coco/'):]], name
    assert 0 < metrics['coco/bbox_mAP'][0] < 1  # a mix of right and wrong predictions
    # the text shows the same number, 3 decimals as CocoMetric rounds
    assert [row[1][1] for row in page.tables['metrics'][1:]] == [
        f'{v[0]:.3f}' for v in metrics.values()]
    per_class = _table_values(page.tables['per-class-bbox'])
    classes = shapes_report['dataset'].metainfo['classes']
    assert list(per_class) == list(classes)
    for name, (num_gts, ap, ap50, ap75) in per_class.items():
        assert round(ap, 3) == expected[f'{name}_precision'], name

    out_dir = shapes_report['out_dir']
    sources = [img['src'] for img in page.images]
    assert {'training_curves.png', 'bbox_class_ap.png', 'bbox_pr_curves.png',
            'confusion_matrix.png'} <= set(sources)
    for src in sources:
        assert '/' not in src and (out_dir / src).is_file(), src
        image = cv2.imread(str(out_dir / src))
        assert image is not None and image.shape[0] >= 80 and image.std() > 5, src
    # self-contained: nothing from the network, no external style sheet or script
    assert not re.search(r'(src|href)="(https?:)?//', shapes_report['text'])
    assert '<link' not in shapes_report['text'] and '<script src' not in shapes_report['text']


@pytest.mark.slow
def test_worst_images_come_lowest_map_first_and_are_drawn_side_by_side(shapes_report):
    page = parse_page(shapes_report['text'])
    dataset = shapes_report['dataset']
    with_objects = [i for i in range(len(dataset)) if dataset.get_data_info(i)['instances']]
    worst = [img for img in page.images if img['src'].startswith('worst_')]
    assert len(worst) == len(page.image_maps) == len(with_objects)  # --topk 10 > 4 images
    assert page.image_maps == sorted(page.image_maps)
    # exact predictions score 1, wrong labels and no predictions 0
    expected = {0: 1.0, 2: 0.0, 3: 0.0}
    captions = re.findall(r'<figcaption>#(\d+) ', shapes_report['text'])
    for index, value in zip(map(int, captions), page.image_maps):
        if index in expected:
            assert value == pytest.approx(expected[index]), index
    first = cv2.imread(str(shapes_report['out_dir'] / worst[0]['src']))
    info = dataset.get_data_info(int(captions[0]))
    assert first.shape[:2] == (info['height'], 2 * info['width'])  # ground truth | predictions


def _chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, '--headless=new', '--disable-gpu', '--no-sandbox', '--hide-scrollbars',
         f'--user-data-dir={tmp_path / "chromium-profile"}', '--enable-logging=stderr',
         '--v=0', *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@needs_chromium
def test_page_loads_in_chromium_without_errors_and_shows_the_metrics(shapes_report,
                                                                     tmp_path):
    proc = _chromium(tmp_path, '--virtual-time-budget=5000', '--dump-dom',
                     f'file://{shapes_report["path"]}')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not re.search(r'CONSOLE.*(Uncaught|Error)', proc.stderr), proc.stderr[-2000:]
    dom = parse_page(proc.stdout)
    assert dom.body_attrs.get('data-ready') == '1'  # the load handler ran
    assert dom.errors == ''
    assert len(dom.images) >= 6
    assert all(img.get('data-loaded') == 'yes' for img in dom.images), dom.images
    expected = shapes_report['expected']
    for name, (value, ) in _table_values(dom.tables['metrics']).items():
        assert value == expected[name[len('coco/'):]], name


@pytest.mark.slow
@needs_chromium
def test_page_reports_a_missing_image_in_chromium(shapes_report, tmp_path):
    """The checks above can fail: a page whose image is gone says so in the DOM."""
    folder = tmp_path / 'copy'
    shutil.copytree(shapes_report['out_dir'], folder)
    page = folder / 'index.html'
    page.write_text(shapes_report['text'].replace('src="confusion_matrix.png"',
                                                  'src="gone.png"'))
    dom = parse_page(_chromium(tmp_path, '--dump-dom', f'file://{page}').stdout)
    assert dom.errors == 'image failed to load: gone.png'
    assert [img['src'] for img in dom.images if img.get('data-loaded') == 'no'] == ['gone.png']


@pytest.mark.slow
@needs_chromium
def test_screenshot_of_the_report(shapes_report, tmp_path):
    shot = tmp_path / 'report.png'
    proc = _chromium(tmp_path, f'--screenshot={shot}', '--window-size=1280,1600',
                     f'file://{shapes_report["path"]}')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 20_000 < shot.stat().st_size < 5_000_000
    image = cv2.imread(str(shot))
    assert image.shape == (1600, 1280, 3)
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 200


# ---------------------------------------------------------------- tools/test.py --report

@pytest.mark.slow
def test_test_tool_report_dumps_predictions_and_writes_the_page(tmp_path):
    from mmdet_lite.apis import init_detector
    torch.manual_seed(0)
    work = tmp_path / 'work'
    work.mkdir()
    model = init_detector(TINY_CONFIG)
    ckpt = work / 'epoch_1.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(classes=('circle', 'rectangle',
                                                         'triangle'))),
                    state_dict=model.state_dict()), ckpt)
    _write_log(work / '20260101_000000', _train_lines([1]))  # the checkpoint's training
    report_dir = tmp_path / 'report'
    proc = run_tool('test', [TINY_CONFIG, ckpt, '--work-dir', tmp_path / 'test_work',
                             '--report', report_dir,
                             '--cfg-options', *tiny_data_cfg_options(tmp_path / 'data')])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'report written to {report_dir / "index.html"}' in proc.stdout
    with open(report_dir / 'results.pkl', 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 4
    page = parse_page((report_dir / 'index.html').read_text())
    printed = dict(re.findall(r'(coco/bbox_mAP\w*): (-?[0-9.]+)', proc.stdout))
    metrics = _table_values(page.tables['metrics'])
    assert set(metrics) == set(printed)
    for name, (value, ) in metrics.items():
        assert value == pytest.approx(float(printed[name]), abs=1e-4), name
    for img in page.images:
        assert (report_dir / img['src']).is_file(), img['src']
    assert 'training_curves.png' in [img['src'] for img in page.images]


# ---------------------------------------------------------------- CLI errors and help

def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        report_tool.main(['--help'])
    out = capsys.readouterr().out
    assert 'example:' in out and '--results results.pkl --out-dir report' in out


@pytest.mark.parametrize('case, message', [
    ('missing', 'error: results file not found: .*nope.pkl'),
    ('not_results', r'error: .*bad.pkl is not a list of per-image dicts with img_id and '
                    r'pred_instances'),
    ('work_dir', 'error: --work-dir not found: .*no_work'),
    ('topk', 'error: --topk must be >= 0, got -1'),
])
def test_bad_inputs_give_one_line_errors(case, message, tmp_path, capsys):
    bad = tmp_path / 'bad.pkl'
    bad.write_bytes(pickle.dumps({'bbox': []}))
    argv = {'missing': ['--results', str(tmp_path / 'nope.pkl')],
            'not_results': ['--results', str(bad)],
            'work_dir': ['--results', str(bad), '--work-dir', str(tmp_path / 'no_work')],
            'topk': ['--results', str(bad), '--topk', '-1']}[case]
    with pytest.raises(SystemExit) as exit_info:
        report_tool.main([TINY_CONFIG, '--out-dir', str(tmp_path / 'out'), *argv])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err.strip().splitlines()[-1])
