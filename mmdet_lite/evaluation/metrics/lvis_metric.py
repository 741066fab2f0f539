"""LVIS detection, instance-segmentation and proposal evaluation through the ``lvis`` package.

LVIS is evaluated "federated": a detection of category c in an image counts only if c is
annotated there or listed in the image's ``neg_category_ids``, and unmatched detections of
a category in the image's ``not_exhaustive_category_ids`` are ignored. AP is also reported
per frequency group: rare (``APr``), common (``APc``) and frequent (``APf``) categories.
``lvis`` is an optional dependency (``pip install lvis``).
"""
import contextlib
import copy
import importlib
import io
import itertools
import logging
import types
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from mmdet_lite.registry import METRICS
from ..functional.ascii_table import ascii_table
from ..functional.coco_utils import results_to_coco
from ..functional.recall import eval_recalls
from .coco_metric import CocoMetric, CocoMetricArgumentError

# Summary numbers of ``LVISEval.get_results()`` (the AR ones at its 300 detections/image).
LVIS_AP_ITEMS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'APr', 'APc', 'APf')
LVIS_AR_ITEMS = ('AR@300', 'ARs@300', 'ARm@300', 'ARl@300')


class MissingLVISPackage(ImportError, RuntimeError):
    """``lvis`` cannot be imported (mmdetection raises RuntimeError for it here)."""


class LVISResultsError(ValueError, AssertionError):
    """Predictions that do not fit the LVIS ground truth (the ``lvis`` package asserts)."""


def _import_lvis() -> types.ModuleType:
    try:
        return importlib.import_module('lvis')
    except ImportError as err:
        raise MissingLVISPackage('LVISMetric needs the optional package `lvis` (pip install '
                                 f'lvis), which cannot be imported: {err}') from err


class _NumpyWithFloat(types.ModuleType):
    """numpy plus the ``np.float`` alias (removed in numpy 1.24) that lvis 0.5.3 uses."""
    float = float

    def __getattr__(self, name: str):
        return getattr(np, name)


@contextlib.contextmanager
def _lvis_eval_env():
    """Run ``lvis`` evaluation quietly and on current numpy.

    ``lvis.eval`` gets a numpy with ``float`` for the duration (numpy itself is left
    alone), and the ``lvis`` loggers, which warn about results passed as a list (with a
    deprecated ``Logger.warn``), are raised to ERROR.
    """
    eval_module = importlib.import_module('lvis.eval')
    logger = logging.getLogger('lvis')
    old_level, old_np = logger.level, eval_module.np
    logger.setLevel(logging.ERROR)
    if not hasattr(np, 'float'):
        eval_module.np = _NumpyWithFloat('numpy')
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message="The 'warn' method is deprecated",
                                    category=DeprecationWarning)
            yield
    finally:
        logger.setLevel(old_level)
        eval_module.np = old_np


@METRICS.register_module()
class LVISMetric(CocoMetric):
    """LVIS AP for boxes (``bbox``), masks (``segm``) and AR for proposals.

    Results are keyed like mmdetection's: ``lvis/bbox_AP``, ``lvis/bbox_AP50``,
    ``lvis/bbox_AP75``, ``lvis/bbox_APs`` / ``APm`` / ``APl``, ``lvis/bbox_APr`` /
    ``APc`` / ``APf`` (and ``segm_*``), ``lvis/AR@300`` ... for ``proposal``,
    ``lvis/AR@{n}`` for ``proposal_fast``, and with ``classwise`` ``lvis/{class}_precision``
    (per-class AP@[.5:.95], NaN for a category without ground truth). Values are rounded
    to 3 decimals; -1 means "not defined", LVIS' convention. At most 300 detections per
    image are scored (the highest-scoring ones), the LVIS rule.

    Differences to mmdetection 3.3, which sets camelCase parameters the ``lvis`` package
    does not read: ``iou_thrs`` really sets the evaluated thresholds, and ``proposal`` is
    class-agnostic (every box against every ground-truth box).

    Args:
        ann_file (str, optional): LVIS annotation json. LVIS evaluation needs its
            federated fields, so it is required unless ``format_only``.
        metric (str | list[str]): Any of 'bbox', 'segm', 'proposal' and 'proposal_fast'
            (``eval_recalls`` over ``proposal_nums`` and ``iou_thrs``). Defaults to 'bbox'.
        classwise (bool): Also log a per-class AP table and report per-class AP.
        proposal_nums (Sequence[int]): Detection limits of 'proposal_fast'.
        iou_thrs (float | Sequence[float], optional): IoU thresholds; 0.50:0.05:0.95 if None.
        metric_items (Sequence[str], optional): Summary numbers to report, from
            :data:`LVIS_AP_ITEMS` and :data:`LVIS_AR_ITEMS` (others are reported as
            nothing, with a warning). Defaults to the AP items (the AR items for
            'proposal').
        format_only (bool): Only write the result json files and return an empty dict.
            Requires ``outfile_prefix``.
        outfile_prefix (str, optional): Write ``{prefix}.bbox.json`` (and ``.segm.json``).
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        prefix (str, optional): Metric name prefix; ``default_prefix`` 'lvis' if None.
        file_client_args (dict, optional): Removed in mmdetection 3.x; giving it is an error.
        backend_args (dict, optional): mmengine file backend arguments for ``ann_file``.

    Raises:
        ImportError: The ``lvis`` package cannot be imported (also a RuntimeError).
    """
    default_prefix: Optional[str] = 'lvis'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 metric: Union[str, List[str]] = 'bbox',
                 classwise: bool = False,
                 proposal_nums: Sequence[int] = (100, 300, 1000),
                 iou_thrs: Optional[Union[float, Sequence[float]]] = None,
                 metric_items: Optional[Sequence[str]] = None,
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 file_client_args: Optional[dict] = None,
                 backend_args: Optional[dict] = None) -> None:
        lvis = _import_lvis()
        if ann_file is None and not format_only:
            raise CocoMetricArgumentError(
                'LVISMetric needs ann_file: LVIS evaluation reads neg_category_ids, '
                'not_exhaustive_category_ids and category frequencies from the LVIS '
                'annotation json (without it only format_only=True is possible)')
        # The parent checks metric, format_only / outfile_prefix and file_client_args; it
        # gets no ann_file (the LVIS index replaces its COCO one) and the default
        # proposal_nums (LVIS uses them only for 'proposal_fast', without its minimum).
        super().__init__(metric=metric, classwise=classwise, iou_thrs=iou_thrs,
                         format_only=format_only, outfile_prefix=outfile_prefix,
                         file_client_args=file_client_args, backend_args=backend_args,
                         collect_device=collect_device, prefix=prefix)
        self.proposal_nums = [int(n) for n in proposal_nums]
        if metric_items is not None:
            metric_items = list(metric_items)
            unknown = [i for i in metric_items if i not in LVIS_AP_ITEMS + LVIS_AR_ITEMS]
            if unknown:
                print_log(f'LVISMetric: metric_items {unknown} are not LVIS results and '
                          f'will not be reported; known items: '
                          f'{list(LVIS_AP_ITEMS + LVIS_AR_ITEMS)}', logger='current',
                          level=logging.WARNING)
        self.metric_items = metric_items
        self._lvis_api = None
        if ann_file is not None:
            with get_local_path(ann_file, backend_args=backend_args) as local_path:
                try:
                    self._lvis_api = lvis.LVIS(local_path)
                except FileNotFoundError as err:
                    raise FileNotFoundError(
                        f'LVISMetric: ann_file not found: {ann_file}') from err
        # The parent keeps its ground truth from ann_file here (and then converts none
        # from the samples in process()).
        self._coco_api = self._lvis_api

    def _resolve_cat_ids(self, lvis_gt) -> List[int]:
        """Category id of each label: the category named ``classes[i]`` (the first of
        that name), or the file's category order without ``dataset_meta`` classes, as
        ``LVISV05Dataset`` / ``LVISV1Dataset`` assign labels."""
        if lvis_gt is None:  # format_only without ann_file: the label is the id
            return list(range(len(self._classes())))
        if not self.dataset_meta or not self.dataset_meta.get('classes'):
            return list(lvis_gt.get_cat_ids())
        name_to_id: Dict[str, int] = {}
        for cat in lvis_gt.dataset['categories']:
            name_to_id.setdefault(cat['name'], cat['id'])
        classes = list(self.dataset_meta['classes'])
        missing = [name for name in classes if name not in name_to_id]
        if missing:
            raise ValueError(f'LVISMetric: classes {missing[:10]} of dataset_meta are not '
                             'categories of the annotation file')
        return [name_to_id[name] for name in classes]

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Evaluate all gathered results (called on rank 0 only).

        Args:
            results (list): ``(gt, prediction)`` pairs stored by ``process`` (``gt`` is
                None: the ground truth is ``ann_file``).

        Returns:
            dict[str, float]: Metric name (without prefix) to value; empty for format_only.
        """
        preds = [pred for _, pred in results]
        lvis_gt = self._lvis_api
        self.cat_ids = self._resolve_cat_ids(lvis_gt)
        bbox_results, segm_results = results_to_coco(preds, self.cat_ids)
        if self.outfile_prefix is not None:
            self._dump_results(bbox_results, segm_results)
        if self.format_only:
            print_log(f'LVISMetric: results saved with prefix {self.outfile_prefix}',
                      logger='current')
            return OrderedDict()

        self.img_ids = lvis_gt.get_img_ids()
        eval_results = OrderedDict()
        for metric in self.metrics:
            if metric == 'proposal_fast':
                eval_results.update(self._fast_eval_recall(lvis_gt, preds))
                continue
            if metric == 'segm':
                if segm_results is None and preds:
                    raise KeyError("LVISMetric: metric 'segm' needs pred_instances.masks, "
                                   'but the predictions have no masks')
                detections = segm_results or []
            else:
                detections = bbox_results
            eval_results.update(self._evaluate(metric, lvis_gt, copy.deepcopy(detections)))
        return eval_results

    def _fast_eval_recall(self, lvis_gt, preds: List[dict]) -> Dict[str, float]:
        """``proposal_fast``: recall of each image's ground-truth boxes by its predicted
        boxes (in predicted order), averaged over ``iou_thrs``, at each ``proposal_nums``."""
        gt_bboxes = []
        for pred in preds:
            anns = lvis_gt.load_anns(lvis_gt.get_ann_ids(img_ids=[pred['img_id']]))
            boxes = [[x, y, x + w, y + h] for x, y, w, h in (ann['bbox'] for ann in anns)]
            gt_bboxes.append(np.array(boxes, dtype=np.float32).reshape(-1, 4))
        recalls = eval_recalls(gt_bboxes, [pred['bboxes'] for pred in preds],
                               self.proposal_nums, self.iou_thrs, logger='current')
        average_recall = recalls.mean(axis=1)
        print_log(''.join(f'\nAR@{num}\t{ar:.4f}' for num, ar in
                          zip(self.proposal_nums, average_recall)), logger='current')
        return OrderedDict((f'AR@{num}', average_recall[i])
                           for i, num in enumerate(self.proposal_nums))

    def _evaluate(self, metric: str, lvis_gt, detections: List[dict]) -> Dict[str, float]:
        """Run ``LVISEval`` for one metric and pick the requested summary numbers."""
        lvis = _import_lvis()
        print_log(f'Evaluating {metric}...', logger='current')
        cat_ids = sorted(self.cat_ids)
        if metric == 'proposal':
            lvis_gt, detections, cat_ids = _class_agnostic(lvis, lvis_gt, detections)
        with _lvis_eval_env():
            lvis_dt = _lvis_results(lvis, lvis_gt, detections, metric)
            lvis_eval = lvis.LVISEval(lvis_gt, lvis_dt, 'bbox' if metric == 'proposal'
                                      else metric)
            lvis_eval.params.img_ids = list(self.img_ids)
            lvis_eval.params.cat_ids = cat_ids
            lvis_eval.params.iou_thrs = self.iou_thrs
            lvis_eval.evaluate()
            lvis_eval.accumulate()
            lvis_eval.summarize()
            summary = io.StringIO()
            with contextlib.redirect_stdout(summary):
                lvis_eval.print_results()
        lvis_results = lvis_eval.get_results()

        eval_results = OrderedDict()
        if metric != 'proposal' and self.classwise:
            eval_results.update(self._classwise_ap(lvis_eval, lvis_gt))
        default_items = LVIS_AR_ITEMS if metric == 'proposal' else LVIS_AP_ITEMS
        items = self.metric_items or default_items
        for key, value in lvis_results.items():
            if key in items:
                name = key if metric == 'proposal' else f'{metric}_{key}'
                eval_results[name] = round(float(value), 3)
        print_log('\n' + summary.getvalue().rstrip(), logger='current')
        return eval_results

    def _classwise_ap(self, lvis_eval, lvis_gt) -> Dict[str, float]:
        """Log a per-class AP table (three category/AP pairs a row) and return
        ``{class}_precision`` (AP@[.5:.95], all areas; NaN without ground truth)."""
        # precision: [num_iou_thrs, num_recall_thrs, num_categories, num_area_ranges]
        precisions = lvis_eval.eval['precision']
        per_class, cells = OrderedDict(), []
        for idx, cat_id in enumerate(lvis_eval.params.cat_ids):
            name = lvis_gt.load_cats([cat_id])[0]['name']
            precision = precisions[:, :, idx, 0]
            precision = precision[precision > -1]  # -1: no ground truth
            ap = float(np.mean(precision)) if precision.size else float('nan')
            per_class[f'{name}_precision'] = round(ap, 3)
            cells += [name, f'{ap:0.3f}']
        num_columns = min(6, len(cells))
        headers = ['category', 'AP'] * (num_columns // 2)
        rows = itertools.zip_longest(*[cells[i::num_columns] for i in range(num_columns)],
                                     fillvalue='')
        print_log('\n' + ascii_table([headers] + [list(row) for row in rows]),
                  logger='current')
        return per_class


def _lvis_results(lvis, lvis_gt, detections: List[dict], metric: str):
    """``LVISResults`` for ``detections``, also for none at all (which it cannot take)."""
    if detections:
        unknown = {d['image_id'] for d in detections} - set(lvis_gt.get_img_ids())
        if unknown:
            raise LVISResultsError(f'LVISMetric: predictions for img_id {sorted(unknown)[:10]}'
                                   ' whose images are not in the ground truth')
        return lvis.LVISResults(lvis_gt, detections)
    print_log(f'LVISMetric: there are no detections at all, so {metric} AP and AR are 0 '
              '(-1 where there is no ground truth either)', logger='current',
              level=logging.WARNING)
    placeholder = dict(image_id=lvis_gt.get_img_ids()[0],
                       category_id=lvis_gt.get_cat_ids()[0], bbox=[0, 0, 1, 1], score=0.0)
    lvis_dt = lvis.LVISResults(lvis_gt, [placeholder])
    lvis_dt.dataset['annotations'] = []
    lvis_dt._create_index()  # the index of no results
    return lvis_dt


def _class_agnostic(lvis, lvis_gt, detections: List[dict]):
    """Ground truth, detections and category ids of a one-category copy of the task.

    Every annotation and detection gets the first category id; each image lists it as
    negative (so no detection is dropped as "unverified") and nothing as not exhaustive.
    """
    agnostic_id = lvis_gt.get_cat_ids()[0]
    dataset = dict(lvis_gt.dataset)
    dataset['categories'] = [dict(lvis_gt.load_cats([agnostic_id])[0], frequency='f')]
    dataset['images'] = [dict(img, neg_category_ids=[agnostic_id],
                              not_exhaustive_category_ids=[]) for img in dataset['images']]
    dataset['annotations'] = [dict(ann, category_id=agnostic_id)
                              for ann in dataset['annotations']]
    # LVIS() reads only from a path; build the index over this dict the same way
    agnostic_gt = lvis.LVIS.__new__(lvis.LVIS)
    agnostic_gt.logger = logging.getLogger('lvis.lvis')
    agnostic_gt.dataset = dataset
    agnostic_gt._create_index()
    detections = [dict(d, category_id=agnostic_id) for d in detections]
    return agnostic_gt, detections, [agnostic_id]
