"""Build the report of a test run: metrics, charts and drawings from dumped predictions.

:func:`write_report` is what ``tools/analysis_tools/report.py`` and ``tools/test.py
--report`` call. It reads nothing but the config (the test dataset and its evaluator), the
predictions ``tools/test.py --out`` dumps (one dict per test image, in dataset order) and,
for the training curves, the json logs of a work dir; it writes ``index.html`` and the PNG /
JPG files the page shows into one folder.
"""
import datetime
import numbers
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence

from .class_eval import ClassEval, evaluate_classes
from .html import ClassSection, ReportPage, WorstImage, render_report
from .plots import plot_class_ap, plot_pr_curves, plot_training_curves
from mmdet_lite.analysis.training_log import read_training_log

REPORT_FILE = 'index.html'


def load_results(path: str) -> List[dict]:
    """The predictions ``tools/test.py --out`` wrote: a list with one dict per image.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not such a list (e.g. a json of COCO results, or panoptic outputs).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'results file not found: {path}')
    from mmengine.fileio import load
    results = load(path)
    if not isinstance(results, list) or not all(
            isinstance(r, dict) and 'pred_instances' in r and 'img_id' in r for r in results):
        raise ValueError(f'{path} is not a list of per-image dicts with img_id and '
                         'pred_instances; expected the .pkl that tools/test.py --out writes')
    return results


def build_test_dataset(cfg):
    """The config's ``test_dataloader.dataset``, built in the config's default scope."""
    from mmengine.registry import init_default_scope

    from mmdet_lite.registry import DATASETS
    from mmdet_lite.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope') or 'mmdet_lite')
    if 'dataset' not in cfg.get('test_dataloader', {}):
        raise KeyError('the config has no test_dataloader.dataset, which the report '
                       'evaluates the predictions against')
    return DATASETS.build(cfg.test_dataloader.dataset)


def evaluate_metrics(cfg, dataset, results: Sequence[dict]) -> Dict[str, float]:
    """The config's ``test_evaluator`` run offline on the dumped predictions (as
    mmdetection's ``tools/analysis_tools/eval_metric.py`` does)."""
    from mmengine.evaluator import Evaluator
    if not cfg.get('test_evaluator'):
        raise KeyError('the config has no test_evaluator to compute the metrics with')
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    return dict(evaluator.offline_evaluate(results, chunk_size=16))


def _plain_number(value):
    """numpy scalars as Python int/float (the page prints their repr); other values as
    they are."""
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value) if isinstance(value, numbers.Real) else value


def _class_section(class_eval: ClassEval, out_dir: str) -> ClassSection:
    name = class_eval.iou_type
    rows = [(cls, int(class_eval.num_gts[k]), float(class_eval.ap[k]),
             float(class_eval.ap50[k]), float(class_eval.ap75[k]))
            for k, cls in enumerate(class_eval.classes)]
    plot_class_ap(class_eval, osp.join(out_dir, f'{name}_class_ap.png'))
    plot_pr_curves(class_eval, osp.join(out_dir, f'{name}_pr_curves.png'))
    return ClassSection(name, rows, f'{name}_class_ap.png', f'{name}_pr_curves.png')


def _confusion(page: ReportPage, dataset, results, out_dir: str, score_thr: float) -> None:
    from mmdet_lite.analysis.confusion_matrix import (calculate_confusion_matrix,
                                                      plot_confusion_matrix)
    matrix = calculate_confusion_matrix(dataset, results, score_thr=score_thr)
    labels = list(dataset.metainfo['classes']) + ['background']
    path = plot_confusion_matrix(matrix, labels, save_dir=out_dir, show=False)
    page.confusion_image = osp.basename(path)
    page.confusion_note = (f'Boxes scoring at least {score_thr:g}, matched at IoU 0.5; '
                           'rows are ground truth, columns predictions, each row in percent.')


def _worst_images(page: ReportPage, dataset, results, out_dir: str, topk: int,
                  score_thr: float) -> None:
    """Draw the ``topk`` images with the lowest box mAP: ground truth | predictions.

    Images without ground-truth objects are not ranked: their mAP is 0 whatever was
    predicted, so they would crowd out the images where objects were really missed.
    """
    import mmcv

    from mmdet_lite.analysis.result_ranking import draw_gt_and_prediction, per_image_map
    maps = per_image_map(dataset, results)
    with_gt = [i for i in range(len(results)) if dataset.get_data_info(i)['instances']]
    worst = sorted(with_gt, key=lambda i: maps[i])[:topk]  # stable: ties in dataset order
    classes, palette = dataset.metainfo['classes'], dataset.metainfo.get('palette')
    for rank, index in enumerate(worst):
        info = dataset.get_data_info(index)
        img = mmcv.imread(info['img_path'], channel_order='rgb')
        if img is None:
            raise FileNotFoundError(f'could not read test image {info["img_path"]}')
        with warnings.catch_warnings():  # boxes reaching past the border are drawn clipped
            warnings.filterwarnings('ignore', message='Warning: The .* is out of bounds')
            drawing = draw_gt_and_prediction(img, info, results[index]['pred_instances'],
                                             classes=classes, score_thr=score_thr,
                                             palette=palette)
        stem = osp.splitext(osp.basename(info['img_path']))[0]
        name = f'worst_{rank:02d}_{stem}.jpg'
        mmcv.imwrite(drawing[..., ::-1], osp.join(out_dir, name))  # RGB -> BGR file
        page.worst_images.append(WorstImage(name, osp.basename(info['img_path']), index,
                                            float(maps[index])))
    skipped = len(results) - len(with_gt)
    page.worst_note = (
        f'The {len(worst)} images with the lowest box mAP@[.5:.95] of the image alone; '
        f'ground truth on the left, predictions scoring above {score_thr:g} on the right.' +
        (f' {skipped} images without objects are not ranked.' if skipped else ''))


def _training_curves(page: ReportPage, work_dir: Optional[str], out_dir: str,
                     require: bool) -> None:
    if work_dir is None:
        page.curves_note = 'No work dir given (--work-dir): no training curves.'
        return
    if not osp.isdir(work_dir):
        raise FileNotFoundError(f'work dir not found: {work_dir}')
    log = read_training_log(work_dir)
    if log is None:
        if require:
            raise FileNotFoundError(f'no training log in {work_dir}: expected '
                                    '<timestamp>/vis_data/scalars.json from tools/train.py')
        page.curves_note = f'No training log found in {work_dir}.'
        return
    page.curves_image = osp.basename(
        plot_training_curves(log, osp.join(out_dir, 'training_curves.png')))
    page.curves_note = 'From ' + ', '.join(osp.relpath(f, work_dir) for f in log.files) + '.'


def write_report(cfg,
                 results: Sequence[dict],
                 out_dir: str,
                 work_dir: Optional[str] = None,
                 topk: int = 20,
                 score_thr: float = 0.3,
                 facts: Sequence[str] = (),
                 metrics: Optional[Dict[str, float]] = None,
                 require_training_log: bool = True) -> str:
    """Write ``out_dir/index.html`` and its images for predictions on the test dataset.

    Args:
        cfg (Config): The model's config: its ``test_dataloader.dataset`` (ground truth)
            and ``test_evaluator`` (the metric table).
        results (Sequence[dict]): One dumped dict per test image, in dataset order
            (``tools/test.py --out``; see :func:`load_results`).
        out_dir (str): The report folder (made if missing).
        work_dir (str, optional): A training work dir whose json logs give the training
            curves. Defaults to None (no curves).
        topk (int): How many of the worst images to draw. Defaults to 20.
        score_thr (float): Score from which predictions count in the confusion matrix and
            are drawn. Defaults to 0.3 (mmdetection's confusion_matrix.py default).
        facts (Sequence[str]): Lines for the page header (config, checkpoint ...).
        metrics (dict, optional): The metric table when the caller has it already (e.g.
            ``runner.test()``'s); computed from ``results`` by the config's
            ``test_evaluator`` when None.
        require_training_log (bool): Raise when ``work_dir`` has no training log (else the
            page says so). Defaults to True.

    Returns:
        str: The path of ``index.html``.
    """
    if topk < 0:
        raise ValueError(f'topk must be >= 0, got {topk}')
    os.makedirs(out_dir, exist_ok=True)
    dataset = build_test_dataset(cfg)
    from mmdet_lite.analysis.confusion_matrix import check_num_results
    check_num_results(dataset, results)
    if metrics is None:
        metrics = evaluate_metrics(cfg, dataset, results)
    title = 'Detection report'
    if cfg.filename:
        title += ': ' + osp.splitext(osp.basename(cfg.filename))[0]
    page = ReportPage(
        title=title, metrics=[(k, _plain_number(v)) for k, v in metrics.items()],
        facts=list(facts) + [f'{len(results)} test images, {len(dataset.metainfo["classes"])} '
                             f'classes; written {datetime.datetime.now():%Y-%m-%d %H:%M}'])
    page.class_sections = [_class_section(e, out_dir)
                           for e in evaluate_classes(dataset, results)]
    _confusion(page, dataset, results, out_dir, score_thr)
    _worst_images(page, dataset, results, out_dir, topk, score_thr)
    _training_curves(page, work_dir, out_dir, require_training_log)
    path = osp.join(out_dir, REPORT_FILE)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(render_report(page))
    return path
