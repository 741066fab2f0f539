"""Break COCO average precision down by error type, as the Detectron / COCO analysis does.

For every category, and for all categories together, precision-recall curves are computed
with one more kind of error forgiven at each step:

====  ============================================================================
C75   PR at IoU 0.75 (the strict COCO metric)
C50   PR at IoU 0.50 (PASCAL)
Loc   PR at IoU 0.10: localisation errors forgiven (a box in the right place, roughly)
Sim   PR at IoU 0.10 after removing confusions with categories of the same supercategory
Oth   PR at IoU 0.10 after removing confusions with any other category
BG    PR after removing all false positives (background detections): 1 where Oth > 0
FN    PR after removing all false negatives too: 1 everywhere
====  ============================================================================

The gap between two neighbouring curves is the AP lost to that error. The curves come from
pycocotools' ``COCOeval``: ``precision`` of shape [T, R, K, A, M] (IoU thresholds, 101
recall thresholds, categories, area ranges, max detections), stacked here into one array
``ps`` of shape [7, R, K, A, 1], one row per error type above.

A confusion is "removed" by turning the ground truths of the other categories into crowd
("ignore") annotations of the analysed category: a detection lying on one of them is then
ignored instead of counted as a false positive. A category without ``supercategory`` is
treated as its own supercategory (its Sim curve then equals Loc); mmdetection would fail on
it with a ``KeyError``.

Example:
    >>> ps_by_type = analyze_results('results.bbox.json', 'instances_val.json', ['bbox'],
    ...                              out_dir='error_analysis')
    >>> ps_by_type['bbox'].shape  # [7, 101, num_categories, 4, 1]
"""
import contextlib
import copy
import io
import json
import os
import os.path as osp
import warnings
from multiprocessing import Pool
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmdet_lite.analysis.coco_error_plots import (make_gt_area_group_numbers_plot,
                                                  make_gt_area_histogram_plot, makebarplot,
                                                  makeplot)
from mmdet_lite.evaluation.functional.coco_utils import quiet_coco

# Upper bounds of the small, medium and large (and all) areas in pixels: 32^2, 96^2, 1e10.
DEFAULT_AREAS = (1024, 9216, 10000000000)

class ErrorAnalysisArgumentError(ValueError, AssertionError):
    """Bad arguments or inputs for the error analysis (an ``AssertionError`` in
    mmdetection)."""


def area_ranges(areas: Sequence[float]) -> List[List[float]]:
    """COCOeval ``areaRng`` for the all / small / medium / large groups.

    Args:
        areas (Sequence[float]): Upper bounds of small, medium and large, e.g.
            ``[1024, 9216, 1e10]``.

    Returns:
        list[list[float]]: ``[[0, large], [0, small], [small, medium], [medium, large]]``.
    """
    if len(areas) != 3:
        raise ErrorAnalysisArgumentError(
            f'areas needs 3 numbers (the upper bounds of small, medium and large '
            f'objects), got {list(areas)}')
    small, medium, large = areas
    return [[0, large], [0, small], [small, medium], [medium, large]]


def _precision(coco_gt: COCO, coco_dt: COCO, iou_type: str, iou_thrs: Sequence[float],
               areas: Optional[Sequence[float]],
               cat_ids: Optional[List[int]] = None) -> Tuple[np.ndarray, COCOeval]:
    """Run COCOeval (100 detections per image) and return its precision [T, R, K, A, 1].

    COCOeval edits the annotation dicts it reads (``ignore`` flags, masks turned into RLE),
    so both api objects are rebuilt from copies first.
    """
    gt = quiet_coco(copy.deepcopy(coco_gt.dataset))
    dt = quiet_coco(copy.deepcopy(coco_dt.dataset))
    coco_eval = COCOeval(gt, dt, iou_type)
    coco_eval.params.imgIds = coco_gt.getImgIds()
    coco_eval.params.iouThrs = list(iou_thrs)
    coco_eval.params.maxDets = [100]
    if cat_ids is not None:
        coco_eval.params.catIds = cat_ids
    if areas:
        coco_eval.params.areaRng = area_ranges(areas)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval.eval['precision'], coco_eval


def _supercategory_ids(coco_gt: COCO, cat_id: int) -> List[int]:
    """Ids of the categories sharing ``cat_id``'s supercategory (itself included)."""
    cats = coco_gt.dataset['categories']
    own = next(cat for cat in cats if cat['id'] == cat_id)
    if 'supercategory' not in own:  # no supercategory: a group of its own
        return [cat_id]
    return [cat['id'] for cat in cats
            if 'supercategory' in cat and cat['supercategory'] == own['supercategory']]


def _forgive_confusions(coco_gt: COCO, cat_id: int, confused_ids: Sequence[int]) -> COCO:
    """A copy of the ground truth where the boxes of ``confused_ids`` (other than
    ``cat_id``) become crowd boxes of ``cat_id``: detections on them are ignored."""
    dataset = copy.deepcopy(coco_gt.dataset)
    confused = set(confused_ids) - {cat_id}
    for ann in dataset['annotations']:
        if ann['category_id'] in confused:
            ann.update(ignore=1, iscrowd=1, category_id=cat_id)
    return quiet_coco(dataset)


def analyze_individual_category(k: int, coco_dt: COCO, coco_gt: COCO, cat_id: int,
                                iou_type: str,
                                areas: Optional[Sequence[float]] = None
                                ) -> Tuple[int, Dict[str, np.ndarray]]:
    """The Sim and Oth curves of one category.

    Args:
        k (int): Index of the category in ``coco_gt.getCatIds()``, returned as is (the
            results of a process pool come back keyed by it).
        coco_dt (COCO): All detections (``coco_gt.loadRes(...)``).
        coco_gt (COCO): The ground truth.
        cat_id (int): The category to analyse.
        iou_type (str): ``'bbox'`` or ``'segm'``.
        areas (Sequence[float], optional): See :func:`area_ranges`; None keeps COCOeval's
            default ranges.

    Returns:
        tuple[int, dict]: ``k`` and ``{'ps_supercategory': [R, A, 1],
        'ps_allcategory': [R, A, 1]}``, the precision at IoU 0.1 with confusions inside the
        supercategory, or with any category, forgiven (-1 where there is no ground truth).
    """
    name = coco_gt.loadCats(cat_id)[0]['name']
    print(f'--------------analyzing {k + 1}-{name}---------------')
    dt_dataset = dict(coco_dt.dataset)
    dt_dataset['annotations'] = [ann for ann in coco_dt.dataset['annotations']
                                 if ann['category_id'] == cat_id]
    dt = quiet_coco(dt_dataset)
    curves = {}
    for key, confused_ids in (('ps_supercategory', _supercategory_ids(coco_gt, cat_id)),
                              ('ps_allcategory', coco_gt.getCatIds())):
        gt = _forgive_confusions(coco_gt, cat_id, confused_ids)
        # Only this category is evaluated (mmdetection evaluates all of them and keeps
        # index k): the curves of a category depend on its own boxes only, so the numbers
        # are the same at 1/K of the cost.
        precision, _ = _precision(gt, dt, iou_type, [0.1], areas, cat_ids=[cat_id])
        curves[key] = precision[0, :, 0]  # [R, A, 1]
    return k, curves


def error_breakdown(coco_gt: COCO, coco_dt: COCO, iou_type: str = 'bbox',
                    areas: Optional[Sequence[float]] = None,
                    nproc: int = 1) -> Tuple[np.ndarray, COCOeval]:
    """Precision-recall curves of every error type, per category and area range.

    Args:
        coco_gt (COCO): The ground truth.
        coco_dt (COCO): The detections (``coco_gt.loadRes(...)``).
        iou_type (str): ``'bbox'`` or ``'segm'``. Defaults to ``'bbox'``.
        areas (Sequence[float], optional): See :func:`area_ranges`; None keeps COCOeval's
            default ranges.
        nproc (int): Processes for the per-category analyses; 1 runs them in this process.

    Returns:
        tuple[np.ndarray, COCOeval]: ``ps`` of shape [7, R, K, A, 1], rows in
        :data:`~mmdet_lite.analysis.coco_error_plots.ERROR_TYPES` order, categories in ``coco_gt.getCatIds()`` order, with 0 where
        a category has no ground truth (in that area range); and the COCOeval of the first
        three rows (for the area statistics plots).
    """
    precision, coco_eval = _precision(coco_gt, coco_dt, iou_type, [0.75, 0.5, 0.1], areas)
    ps = np.concatenate([precision, np.zeros((4, *precision.shape[1:]))])
    cat_ids = coco_gt.getCatIds()
    jobs = [(k, coco_dt, coco_gt, cat_id, iou_type, areas) for k, cat_id in enumerate(cat_ids)]
    if nproc > 1:
        with Pool(processes=nproc) as pool:
            results = pool.starmap(analyze_individual_category, jobs)
    else:
        results = [analyze_individual_category(*job) for job in jobs]
    for k, curves in results:
        ps[3, :, k] = curves['ps_supercategory']
        ps[4, :, k] = curves['ps_allcategory']
    ps[ps == -1] = 0  # no ground truth: nothing to find, precision 0
    ps[5] = ps[4] > 0  # without background false positives, what is found is found exactly
    ps[6] = 1.0  # without false negatives either, the curve is perfect
    return ps, coco_eval


def load_results(res_file: str, ann_file: str,
                 score_thr: Optional[float] = None) -> Tuple[COCO, COCO]:
    """Load the ground truth and a result file, checking that they belong together.

    Args:
        res_file (str): COCO result json (a list of detections).
        ann_file (str): COCO annotation json the results were made on.
        score_thr (float, optional): Drop detections scoring below this (None or 0 keeps
            all, as in mmdetection).

    Returns:
        tuple[COCO, COCO]: The ground truth and the detections.
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'annotation file not found: {ann_file}')
    if not osp.isfile(res_file):
        raise FileNotFoundError(f'result file not found: {res_file}')
    if score_thr is not None and score_thr < 0:
        raise ErrorAnalysisArgumentError(f'score_thr must be >= 0, got {score_thr}')
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(ann_file)
    with open(res_file, encoding='utf-8') as f:
        try:
            dets = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'{res_file} is not json ({err.msg}); expected a COCO result '
                             'file such as results.bbox.json') from None
    if not isinstance(dets, list) or not all(isinstance(d, dict) for d in dets):
        raise ErrorAnalysisArgumentError(
            f'{res_file} must hold a list of detections (dicts with image_id, category_id, '
            'bbox, score), as CocoMetric(format_only=True) writes to *.bbox.json')
    if not dets:
        raise ErrorAnalysisArgumentError(f'{res_file} holds no detections')
    unknown = sorted({d.get('image_id') for d in dets} - set(coco_gt.getImgIds()), key=str)
    if unknown:
        raise ErrorAnalysisArgumentError(
            f'{res_file} has detections on image ids that {ann_file} does not have '
            f'(e.g. {unknown[:3]}); was it made on another annotation file?')
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(dets)
    if score_thr:
        # filtered after loading, as mmdetection does (the detection ids stay as loaded)
        coco_dt.dataset['annotations'] = [ann for ann in coco_dt.dataset['annotations']
                                          if ann['score'] >= score_thr]
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt.createIndex()
    return coco_gt, coco_dt


def analyze_results(res_file: str, ann_file: str, res_types: Sequence[str], out_dir: str,
                    extraplots: bool = False, areas: Optional[Sequence[float]] = None,
                    score_thr: Optional[float] = None,
                    nproc: int = 1) -> Dict[str, np.ndarray]:
    """Compute the error breakdown of a result file and draw it under ``out_dir/<type>/``.

    Writes ``<type>-<category>-<area>.png`` for every category and ``allclass``, and
    for each of the 4 area groups; with ``extraplots`` also ``<type>-<category>-ap bar
    plot.png``, ``number of annotations per area group.png`` and ``gt annotation areas
    histogram plot.png``.

    Args:
        res_file (str): COCO result json (``*.bbox.json`` or ``*.segm.json``).
        ann_file (str): COCO annotation json the results were made on.
        res_types (Sequence[str]): ``'bbox'`` and/or ``'segm'``.
        out_dir (str): Output folder.
        extraplots (bool): Also draw the AP bar plots and area statistics.
        areas (Sequence[float], optional): See :func:`area_ranges`.
        score_thr (float, optional): Drop detections scoring below this first.
        nproc (int): Processes for the per-category analyses.

    Returns:
        dict[str, np.ndarray]: ``ps`` of :func:`error_breakdown` per result type.
    """
    for res_type in res_types:
        if res_type not in ('bbox', 'segm'):
            raise ErrorAnalysisArgumentError(
                f"result types must be 'bbox' or 'segm', got {res_type!r}")
    if areas:
        area_ranges(areas)  # checks there are 3
    coco_gt, coco_dt = load_results(res_file, ann_file, score_thr)
    if 'segm' in res_types and any('segmentation' not in ann for ann in
                                   coco_gt.dataset['annotations']):
        raise ErrorAnalysisArgumentError(f'{ann_file} has annotations without '
                                         "'segmentation': it cannot be analysed as segm")
    dets = coco_dt.dataset['annotations']
    if 'segm' in res_types and dets and all(isinstance(ann['segmentation'], list)
                                            for ann in dets):
        warnings.warn(f'{res_file} has no masks: pycocotools evaluates its boxes as '
                      'rectangular masks; pass the *.segm.json results for segm', UserWarning)

    breakdowns = {}
    for res_type in res_types:
        type_dir = osp.join(out_dir, res_type)
        os.makedirs(type_dir, exist_ok=True)
        ps, coco_eval = error_breakdown(coco_gt, coco_dt, res_type, areas, nproc)
        rec_thrs = coco_eval.params.recThrs
        for k, cat_id in enumerate(coco_gt.getCatIds()):
            name = coco_gt.loadCats(cat_id)[0]['name']
            print(f'--------------saving {k + 1}-{name}---------------')
            makeplot(rec_thrs, ps[:, :, k], type_dir, name, res_type)
            if extraplots:
                makebarplot(rec_thrs, ps[:, :, k], type_dir, name, res_type)
        makeplot(rec_thrs, ps, type_dir, 'allclass', res_type)
        if extraplots:
            makebarplot(rec_thrs, ps, type_dir, 'allclass', res_type)
            make_gt_area_group_numbers_plot(coco_eval, type_dir, verbose=True)
            make_gt_area_histogram_plot(coco_eval, type_dir)
        breakdowns[res_type] = ps
    return breakdowns
