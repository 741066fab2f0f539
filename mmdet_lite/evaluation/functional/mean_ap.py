"""PASCAL VOC style mean average precision (mmdetection's ``eval_map``), in numpy.

Detections of one class are ranked by score over the whole dataset; each one is a true
positive when it overlaps a not-yet-matched ground-truth box of its class by at least
``iou_thr``, a false positive otherwise. Detections matching an ignored box (``difficult``
in VOC) or a box outside the evaluated area range count as neither. AP is the area under
the precision-recall curve (``'area'``, VOC2010+) or the mean of the best precision at
recall 0, 0.1, ..., 1 (``'11points'``, VOC2007).
"""
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.logging import print_log

from .ascii_table import ascii_table
from .bbox_overlaps import bbox_overlaps

AreaRanges = Optional[List[Tuple[float, float]]]
EVAL_MODES = ('area', '11points')


class EvalModeError(ValueError, AssertionError):
    """Unknown ``eval_mode``; also an ``AssertionError`` as in mmdetection."""


class NumImagesError(ValueError, AssertionError):
    """Detections and annotations of a different number of images."""


def average_precision(recalls: np.ndarray, precisions: np.ndarray,
                      mode: str = 'area') -> Union[np.ndarray, np.float32]:
    """AP of one precision-recall curve, or of one curve per area range.

    Args:
        recalls (np.ndarray): Recall after each ranked detection, shape [num_dets] or
            [num_scales, num_dets].
        precisions (np.ndarray): Precision after each ranked detection, same shape.
        mode (str): ``'area'``: area under the curve made monotonically decreasing;
            ``'11points'``: mean over recall thresholds 0, 0.1, ..., 1 of the best precision
            at a recall at least that high. Defaults to ``'area'``.

    Returns:
        np.float32 | np.ndarray: The AP (float32), shape [] or [num_scales].

    Example:
        >>> ap = average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
        >>> round(float(ap), 4)  # 0.5 * 1 + 0.5 * 2/3
        0.8333
    """
    single = recalls.ndim == 1
    recalls = np.atleast_2d(recalls)
    precisions = np.atleast_2d(precisions)
    if recalls.shape != precisions.shape or recalls.ndim != 2:
        raise ValueError('recalls and precisions must have the same shape [num_dets] or '
                         f'[num_scales, num_dets], got {recalls.shape} and {precisions.shape}')
    num_scales = recalls.shape[0]
    ap = np.zeros(num_scales, dtype=np.float32)
    if mode == 'area':
        edge_zero = np.zeros((num_scales, 1), dtype=recalls.dtype)
        rec = np.hstack((edge_zero, recalls, np.ones((num_scales, 1), dtype=recalls.dtype)))
        prec = np.hstack((edge_zero, precisions, edge_zero))
        # the precision envelope: at each recall, the best precision at that recall or more
        prec = np.flip(np.maximum.accumulate(np.flip(prec, axis=1), axis=1), axis=1)
        for i in range(num_scales):
            steps = np.flatnonzero(rec[i, 1:] != rec[i, :-1])
            ap[i] = np.sum((rec[i, steps + 1] - rec[i, steps]) * prec[i, steps + 1])
    elif mode == '11points':
        for i in range(num_scales):
            for thr in np.arange(0, 1 + 1e-3, 0.1):
                reached = precisions[i, recalls[i, :] >= thr]
                ap[i] += reached.max() if reached.size > 0 else 0
        ap /= 11
    else:
        raise EvalModeError(f'eval_mode must be one of {EVAL_MODES}, got {mode!r}')
    return ap[0] if single else ap


def _box_areas(boxes: np.ndarray, extra: float) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0] + extra) * (boxes[:, 3] - boxes[:, 1] + extra)


def _unmatched_dets_fp(det_bboxes: np.ndarray, area_ranges: AreaRanges,
                       extra: float) -> np.ndarray:
    """FP flags [num_scales, m] when nothing can be matched: every det in its range."""
    if area_ranges is None:
        return np.ones((1, det_bboxes.shape[0]), dtype=np.float32)
    areas = _box_areas(det_bboxes, extra)
    return np.stack([((areas >= lo) & (areas < hi)).astype(np.float32)
                     for lo, hi in area_ranges])


def tpfp_default(det_bboxes: np.ndarray,
                 gt_bboxes: np.ndarray,
                 gt_bboxes_ignore: Optional[np.ndarray] = None,
                 iou_thr: float = 0.5,
                 area_ranges: AreaRanges = None,
                 use_legacy_coordinate: bool = False,
                 **kwargs) -> Tuple[np.ndarray, np.ndarray]:
    """True / false positive flags of one image's detections of one class (VOC rule).

    Each detection, by descending score, looks only at the ground-truth box it overlaps
    most: a match above ``iou_thr`` is a TP the first time and a FP (duplicate) after; a
    match with an ignored box (or one outside the area range) is neither; no match is a FP
    if the detection's own area lies in the range.

    Args:
        det_bboxes (np.ndarray): Detections [m, 5] (x1, y1, x2, y2, score).
        gt_bboxes (np.ndarray): Ground-truth boxes [n, 4].
        gt_bboxes_ignore (np.ndarray, optional): Ignored boxes [k, 4]. Defaults to None.
        iou_thr (float): IoU needed for a match. Defaults to 0.5.
        area_ranges (list[tuple], optional): ``(min_area, max_area)`` ranges; None means
            one range holding everything.
        use_legacy_coordinate (bool): Widths and heights are ``x2 - x1 + 1``.
        **kwargs: Ignored (arguments of other tp/fp functions).

    Returns:
        tuple[np.ndarray, np.ndarray]: ``tp`` and ``fp``, float32 0/1 of shape
        [num_scales, m].
    """
    extra = 1. if use_legacy_coordinate else 0.
    if gt_bboxes_ignore is None:
        gt_bboxes_ignore = np.zeros((0, 4), dtype=np.float32)
    is_ignored = np.concatenate([np.zeros(len(gt_bboxes), dtype=bool),
                                 np.ones(len(gt_bboxes_ignore), dtype=bool)])
    all_gts = np.vstack([gt_bboxes, gt_bboxes_ignore])
    num_scales = 1 if area_ranges is None else len(area_ranges)
    tp = np.zeros((num_scales, det_bboxes.shape[0]), dtype=np.float32)
    if all_gts.shape[0] == 0:
        return tp, _unmatched_dets_fp(det_bboxes, area_ranges, extra)
    fp = np.zeros_like(tp)
    ious = bbox_overlaps(det_bboxes[:, :4], all_gts,
                         use_legacy_coordinate=use_legacy_coordinate)
    best_iou, best_gt = ious.max(axis=1), ious.argmax(axis=1)
    order = np.argsort(-det_bboxes[:, -1])
    det_areas = _box_areas(det_bboxes, extra)
    gt_areas = _box_areas(all_gts, extra)
    for k, (lo, hi) in enumerate(area_ranges or [(None, None)]):
        covered = np.zeros(all_gts.shape[0], dtype=bool)
        out_of_range = (np.zeros(all_gts.shape[0], dtype=bool) if lo is None else
                        (gt_areas < lo) | (gt_areas >= hi))
        for i in order:
            if best_iou[i] >= iou_thr:
                j = best_gt[i]
                if is_ignored[j] or out_of_range[j]:
                    continue  # neither TP nor FP
                if covered[j]:
                    fp[k, i] = 1
                else:
                    covered[j] = True
                    tp[k, i] = 1
            elif lo is None or lo <= det_areas[i] < hi:
                fp[k, i] = 1
    return tp, fp


def tpfp_imagenet(det_bboxes: np.ndarray,
                  gt_bboxes: np.ndarray,
                  gt_bboxes_ignore: Optional[np.ndarray] = None,
                  default_iou_thr: float = 0.5,
                  area_ranges: AreaRanges = None,
                  use_legacy_coordinate: bool = False,
                  **kwargs) -> Tuple[np.ndarray, np.ndarray]:
    """True / false positive flags with ImageNet DET's rule.

    Differs from :func:`tpfp_default` in two ways: small boxes need less overlap (the
    threshold of a ``w x h`` box is ``min(w*h / ((w+10)(h+10)), default_iou_thr)``), and a
    detection takes the best-overlapping box not matched yet instead of only the best one.
    As in mmdetection, the IoUs are computed against the ground truth shifted by -1.

    Args:
        det_bboxes (np.ndarray): Detections [m, 5].
        gt_bboxes (np.ndarray): Ground-truth boxes [n, 4].
        gt_bboxes_ignore (np.ndarray, optional): Ignored boxes [k, 4].
        default_iou_thr (float): IoU threshold of medium and large boxes. Defaults to 0.5.
        area_ranges (list[tuple], optional): ``(min_area, max_area)`` ranges.
        use_legacy_coordinate (bool): Widths and heights are ``x2 - x1 + 1``.
        **kwargs: Ignored.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``tp`` and ``fp`` of shape [num_scales, m].
    """
    extra = 1. if use_legacy_coordinate else 0.
    if gt_bboxes_ignore is None:
        gt_bboxes_ignore = np.zeros((0, 4), dtype=np.float32)
    is_ignored = np.concatenate([np.zeros(len(gt_bboxes), dtype=bool),
                                 np.ones(len(gt_bboxes_ignore), dtype=bool)])
    all_gts = np.vstack([gt_bboxes, gt_bboxes_ignore])
    num_scales = 1 if area_ranges is None else len(area_ranges)
    tp = np.zeros((num_scales, det_bboxes.shape[0]), dtype=np.float32)
    if all_gts.shape[0] == 0:
        return tp, _unmatched_dets_fp(det_bboxes, area_ranges, extra)
    fp = np.zeros_like(tp)
    ious = bbox_overlaps(det_bboxes[:, :4], all_gts - 1,
                         use_legacy_coordinate=use_legacy_coordinate)
    gt_w = all_gts[:, 2] - all_gts[:, 0] + extra
    gt_h = all_gts[:, 3] - all_gts[:, 1] + extra
    thrs = np.minimum(gt_w * gt_h / ((gt_w + 10.0) * (gt_h + 10.0)), default_iou_thr)
    det_areas = _box_areas(det_bboxes, extra)
    order = np.argsort(-det_bboxes[:, -1])
    for k, (lo, hi) in enumerate(area_ranges or [(None, None)]):
        covered = np.zeros(all_gts.shape[0], dtype=bool)
        out_of_range = (np.zeros(all_gts.shape[0], dtype=bool) if lo is None else
                        (gt_w * gt_h < lo) | (gt_w * gt_h >= hi))
        for i in order:
            candidates = np.flatnonzero(~covered & (ious[i] >= thrs))
            if candidates.size:
                j = candidates[np.argmax(ious[i, candidates])]
                covered[j] = True
                if not (is_ignored[j] or out_of_range[j]):
                    tp[k, i] = 1
            elif lo is None or lo <= det_areas[i] < hi:
                fp[k, i] = 1
    return tp, fp


def get_cls_results(det_results: Sequence[Sequence[np.ndarray]], annotations: Sequence[dict],
                    class_id: int) -> Tuple[list, list, list]:
    """Detections, ground-truth boxes and ignored boxes of one class, per image.

    Args:
        det_results (Sequence[Sequence[np.ndarray]]): As in :func:`eval_map`.
        annotations (Sequence[dict]): As in :func:`eval_map`.
        class_id (int): The class index.

    Returns:
        tuple[list, list, list]: Per image: detections [m, 5], boxes [n, 4], ignored
        boxes [k, 4].
    """
    dets = [img_dets[class_id] for img_dets in det_results]
    gts, gts_ignore = [], []
    for ann in annotations:
        gts.append(ann['bboxes'][ann['labels'] == class_id, :])
        if ann.get('labels_ignore') is not None:
            gts_ignore.append(ann['bboxes_ignore'][ann['labels_ignore'] == class_id, :])
        else:
            gts_ignore.append(np.empty((0, 4), dtype=np.float32))
    return dets, gts, gts_ignore


def eval_map(det_results: Sequence[Sequence[np.ndarray]],
             annotations: Sequence[dict],
             scale_ranges: Optional[List[Tuple[float, float]]] = None,
             iou_thr: float = 0.5,
             ioa_thr: Optional[float] = None,
             dataset: Optional[Union[str, Sequence[str]]] = None,
             logger=None,
             tpfp_fn: Optional[Callable] = None,
             nproc: int = 4,
             use_legacy_coordinate: bool = False,
             use_group_of: bool = False,
             eval_mode: str = 'area') -> Tuple[Union[float, list], List[dict]]:
    """Mean AP over classes, as mmdetection's ``eval_map``; logs a per-class table.

    Args:
        det_results (Sequence[Sequence[np.ndarray]]): Per image, per class, detections
            [m, 5] (x1, y1, x2, y2, score).
        annotations (Sequence[dict]): Per image: ``bboxes`` [n, 4], ``labels`` [n] and
            optionally ``bboxes_ignore`` [k, 4] and ``labels_ignore`` [k].
        scale_ranges (list[tuple], optional): ``(min_side, max_side)`` ranges; the AP of
            range ``(a, b)`` counts boxes with area in ``[a**2, b**2)``. None: all boxes.
        iou_thr (float): IoU needed for a match. Defaults to 0.5.
        ioa_thr (float, optional): Open Images group-of threshold; unsupported, must be None.
        dataset (str | Sequence[str], optional): Class names for the table, or a dataset
            name: ``'voc'`` / ``'coco'`` (their class names) or ``'det'`` / ``'vid'``
            (ImageNet's tp/fp rule, :func:`tpfp_imagenet`). None: class indices.
        logger (logging.Logger | str, optional): Where the table goes (``print_log``);
            ``'silent'`` prints nothing.
        tpfp_fn (callable, optional): Replaces the tp/fp rule.
        nproc (int): Accepted for mmdetection compatibility; images are processed in this
            process (the numbers do not depend on it).
        use_legacy_coordinate (bool): Widths and heights are ``x2 - x1 + 1`` (VOC devkit).
        use_group_of (bool): Open Images group-of boxes; unsupported, must be False.
        eval_mode (str): ``'area'`` or ``'11points'``. Defaults to ``'area'``.

    Returns:
        tuple: ``(mean_ap, results)``. ``mean_ap`` is the mean AP of the classes that have
        ground truth (0.0 if none), a float, or a list of one per scale range. ``results``
        has one dict per class: ``num_gts``, ``num_dets``, ``recall``, ``precision``, ``ap``.
    """
    if len(det_results) != len(annotations):
        raise NumImagesError(f'det_results has {len(det_results)} images but annotations '
                             f'has {len(annotations)}')
    if eval_mode not in EVAL_MODES:
        raise EvalModeError(f'eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}')
    if use_group_of or ioa_thr is not None:
        raise NotImplementedError('eval_map: Open Images group-of evaluation (use_group_of, '
                                  'ioa_thr) is not supported by mmdet_lite')
    extra = 1. if use_legacy_coordinate else 0.
    num_scales = 1 if scale_ranges is None else len(scale_ranges)
    area_ranges = (None if scale_ranges is None else
                   [(lo**2, hi**2) for lo, hi in scale_ranges])
    if tpfp_fn is None:
        tpfp_fn = tpfp_imagenet if dataset in ('det', 'vid') else tpfp_default
    if not callable(tpfp_fn):
        raise ValueError(f'tpfp_fn has to be a function or None, but got {tpfp_fn}')

    results = []
    for class_id in range(len(det_results[0])):
        dets, gts, gts_ignore = get_cls_results(det_results, annotations, class_id)
        flags = [tpfp_fn(d, g, gi, iou_thr, area_ranges, use_legacy_coordinate)
                 for d, g, gi in zip(dets, gts, gts_ignore)]
        num_gts = np.zeros(num_scales, dtype=int)
        for boxes in gts:
            if area_ranges is None:
                num_gts[0] += boxes.shape[0]
                continue
            areas = _box_areas(boxes, extra)
            for k, (lo, hi) in enumerate(area_ranges):
                num_gts[k] += np.sum((areas >= lo) & (areas < hi))
        all_dets = np.vstack(dets)
        order = np.argsort(-all_dets[:, -1])
        tp = np.cumsum(np.hstack([f[0] for f in flags])[:, order], axis=1)
        fp = np.cumsum(np.hstack([f[1] for f in flags])[:, order], axis=1)
        eps = np.finfo(np.float32).eps
        recalls = tp / np.maximum(num_gts[:, None], eps)
        precisions = tp / np.maximum(tp + fp, eps)
        if scale_ranges is None:
            recalls, precisions, num_gts = recalls[0], precisions[0], num_gts.item()
        results.append(dict(num_gts=num_gts, num_dets=all_dets.shape[0], recall=recalls,
                            precision=precisions,
                            ap=average_precision(recalls, precisions, eval_mode)))

    if scale_ranges is None:
        aps = [r['ap'] for r in results if r['num_gts'] > 0]
        mean_ap = np.array(aps).mean().item() if aps else 0.0
    else:
        all_ap = np.vstack([r['ap'] for r in results])
        all_num_gts = np.vstack([r['num_gts'] for r in results])
        mean_ap = [all_ap[all_num_gts[:, k] > 0, k].mean() if np.any(all_num_gts[:, k] > 0)
                   else 0.0 for k in range(num_scales)]
    print_map_summary(mean_ap, results, dataset, area_ranges, logger=logger)
    return mean_ap, results


def _label_names(dataset: Optional[Union[str, Sequence[str]]], num_classes: int) -> list:
    if dataset is None:
        return [str(i) for i in range(num_classes)]
    if isinstance(dataset, str):
        # imported here: the class lists live with their datasets
        from mmdet_lite.datasets.coco import COCO_CLASSES
        from mmdet_lite.datasets.voc import VOC_CLASSES
        known = dict(voc=VOC_CLASSES, pascal_voc=VOC_CLASSES, coco=COCO_CLASSES,
                     mscoco=COCO_CLASSES, ms_coco=COCO_CLASSES)
        if dataset.lower() not in known:
            raise ValueError(f'Unrecognized dataset {dataset!r}: give its class names, or one '
                             f'of {sorted(known)}')
        return list(known[dataset.lower()])
    return list(dataset)


def print_map_summary(mean_ap: Union[float, list],
                      results: List[dict],
                      dataset: Optional[Union[str, Sequence[str]]] = None,
                      scale_ranges: AreaRanges = None,
                      logger=None) -> None:
    """Log the per-class table of :func:`eval_map` (class, gts, dets, recall, ap, mAP).

    Args:
        mean_ap (float | list): ``eval_map``'s mean AP (a list with scale ranges).
        results (list[dict]): ``eval_map``'s per-class results.
        dataset (str | Sequence[str], optional): Class names or a dataset name.
        scale_ranges (list[tuple], optional): The evaluated ranges, one table each.
        logger (logging.Logger | str, optional): ``print_log`` target; ``'silent'`` skips.
    """
    if logger == 'silent':
        return
    num_scales = len(results[0]['ap']) if isinstance(results[0]['ap'], np.ndarray) else 1
    if scale_ranges is not None and len(scale_ranges) != num_scales:
        raise ValueError(f'{len(scale_ranges)} scale ranges for {num_scales} AP values')
    num_classes = len(results)
    recalls = np.zeros((num_scales, num_classes), dtype=np.float32)
    aps = np.zeros((num_scales, num_classes), dtype=np.float32)
    num_gts = np.zeros((num_scales, num_classes), dtype=int)
    for j, result in enumerate(results):
        if result['recall'].size > 0:
            recalls[:, j] = np.array(result['recall'], ndmin=2)[:, -1]
        aps[:, j] = result['ap']
        num_gts[:, j] = result['num_gts']
    names = _label_names(dataset, num_classes)
    mean_aps = mean_ap if isinstance(mean_ap, list) else [mean_ap]
    for i in range(num_scales):
        if scale_ranges is not None:
            print_log(f'Scale range {scale_ranges[i]}', logger=logger)
        rows = [['class', 'gts', 'dets', 'recall', 'ap']]
        rows += [[names[j], num_gts[i, j], results[j]['num_dets'], f'{recalls[i, j]:.3f}',
                  f'{aps[i, j]:.3f}'] for j in range(num_classes)]
        rows.append(['mAP', '', '', '', f'{mean_aps[i]:.3f}'])
        print_log('\n' + ascii_table(rows, footer_border=True), logger=logger)
