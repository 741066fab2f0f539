"""Per-class AP and precision-recall curves from pycocotools' ``COCOeval``.

``COCOeval.accumulate`` leaves ``eval['precision']``, an array
``[num_iou_thrs, num_recall_thrs, num_classes, num_area_ranges, num_max_dets]`` of the
interpolated precision at each recall threshold (-1 where a class has no ground truth).
A class's AP is the mean of its entries over IoU thresholds and recall thresholds (area
'all', the largest detection limit), as ``CocoMetric(classwise=True)`` reports it; one IoU
row of it is the precision-recall curve at that IoU.

The ground truth comes from the dataset (``get_data_info``: the annotations in original
pixels the model is tested against), converted with the coco helpers ``CocoMetric`` uses
when it has no annotation file.
"""
import contextlib
import io
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmdet_lite.evaluation.functional.coco_utils import (gt_to_coco_dict, quiet_coco,
                                                         results_to_coco, to_numpy)
from mmdet_lite.evaluation.metrics.coco_eval_backend import build_coco_eval
from mmdet_lite.structures.mask import encode_mask_results
from mmdet_lite.structures.mask.segmentation_check import box_polygon

# The detection limits CocoMetric gives COCOeval (its default proposal_nums); AP is read
# at the largest.
MAX_DETS = (100, 300, 1000)
PR_IOUS = (0.5, 0.75)  # the IoUs of the precision-recall curves


@dataclass
class ClassEval:
    """Per-class results of one ``COCOeval`` (``iou_type`` 'bbox' or 'segm').

    Attributes:
        iou_type (str): 'bbox' or 'segm'.
        classes (list[str]): Class names, index = label.
        ap (np.ndarray): [num_classes] AP@[.5:.95]; NaN for a class without ground truth.
        ap50 (np.ndarray): [num_classes] AP at IoU 0.5.
        ap75 (np.ndarray): [num_classes] AP at IoU 0.75.
        num_gts (np.ndarray): [num_classes] non-crowd ground-truth objects per class.
        recall_thrs (np.ndarray): [num_recall_thrs] recall of each curve point (0:0.01:1).
        pr_curves (dict[float, np.ndarray]): IoU -> [num_classes, num_recall_thrs]
            precision; -1 for a class without ground truth.
    """
    iou_type: str
    classes: List[str]
    ap: np.ndarray
    ap50: np.ndarray
    ap75: np.ndarray
    num_gts: np.ndarray
    recall_thrs: np.ndarray
    pr_curves: Dict[float, np.ndarray]


def dataset_gt_dicts(dataset, img_ids: Sequence[int]) -> List[dict]:
    """Ground truth of the images ``img_ids`` in the form :func:`gt_to_coco_dict` reads.

    Raises:
        KeyError: An id is not an image of the dataset.
    """
    infos = {}
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        infos[info['img_id']] = info
    gts = []
    for img_id in img_ids:
        if img_id not in infos:
            raise KeyError(f'the results have img_id {img_id!r}, which is not an image of the '
                           'test dataset of the config (a pkl of another dataset?)')
        info = infos[img_id]
        anns = [dict(bbox=ann['bbox'], bbox_label=ann['bbox_label'],
                     ignore_flag=ann.get('ignore_flag', 0), mask=ann.get('mask'))
                for ann in info.get('instances', [])]
        gts.append(dict(img_id=img_id, width=info['width'], height=info['height'], anns=anns))
    return gts


def _mask_rles(masks) -> List[dict]:
    """Bool masks [N, H, W] (as dumped) or RLEs -> RLEs with str counts."""
    if not isinstance(masks, (list, tuple)):
        return encode_mask_results(masks)
    return [dict(m, counts=m['counts'].decode()) if isinstance(m['counts'], bytes) else m
            for m in masks]


def prediction_dicts(results: Sequence[dict]) -> List[dict]:
    """The dumped results (``tools/test.py --out``) as :func:`results_to_coco` reads them:
    arrays, and masks as RLEs with str counts."""
    preds = []
    for result in results:
        pred = result['pred_instances']
        entry = dict(img_id=result['img_id'],
                     bboxes=to_numpy(pred['bboxes'], np.float32).reshape(-1, 4),
                     scores=to_numpy(pred['scores'], np.float32).reshape(-1),
                     labels=to_numpy(pred['labels'], np.int64).reshape(-1))
        if 'masks' in pred:
            entry['masks'] = _mask_rles(pred['masks'])
        if 'mask_scores' in pred:
            entry['mask_scores'] = to_numpy(pred['mask_scores'], np.float32).reshape(-1)
        preds.append(entry)
    return preds


def _for_segm(coco_dict: dict) -> dict:
    """Annotations without a mask become crowd regions covering their box, as
    ``CocoMetric`` evaluates segm (pycocotools cannot read a missing segmentation)."""
    anns = []
    for ann in coco_dict['annotations']:
        if ann.get('segmentation'):
            anns.append(ann)
        elif box_polygon(ann['bbox']) is not None:
            anns.append(dict(ann, iscrowd=1, segmentation=box_polygon(ann['bbox'])))
    return dict(coco_dict, annotations=anns)


def evaluate_classes(dataset, results: Sequence[dict],
                     iou_types: Optional[Sequence[str]] = None) -> List[ClassEval]:
    """Run ``COCOeval`` on the dumped results and keep its per-class numbers.

    Args:
        dataset: The test dataset (``metainfo['classes']``, ``get_data_info``).
        results (Sequence[dict]): One dumped dict per image (``img_id``,
            ``pred_instances`` with ``bboxes``, ``scores``, ``labels``, optional ``masks``).
        iou_types (Sequence[str], optional): Defaults to 'bbox', plus 'segm' when the
            predictions have masks.

    Returns:
        list[ClassEval]: One per IoU type.
    """
    classes = list(dataset.metainfo['classes'])
    preds = prediction_dicts(results)
    img_ids = [pred['img_id'] for pred in preds]
    coco_dict = gt_to_coco_dict(dataset_gt_dicts(dataset, img_ids), classes)
    bbox_dets, segm_dets = results_to_coco(preds, list(range(len(classes))))
    if iou_types is None:
        iou_types = ['bbox'] + (['segm'] if segm_dets is not None else [])
    evals = []
    for iou_type in iou_types:
        if iou_type == 'segm':
            coco_gt = quiet_coco(_for_segm(coco_dict))
            # without 'bbox', loadRes takes each detection's area from its mask
            dets = [{k: v for k, v in d.items() if k != 'bbox'} for d in segm_dets or []]
        else:
            coco_gt, dets = quiet_coco(coco_dict), bbox_dets
        evals.append(_class_eval(coco_gt, dets, iou_type, classes))
    return evals


def _class_eval(coco_gt, detections: List[dict], iou_type: str,
                classes: List[str]) -> ClassEval:
    coco_eval = build_coco_eval('pycocotools', coco_gt, detections, iou_type)
    coco_eval.params.catIds = list(range(len(classes)))
    coco_eval.params.imgIds = list(coco_gt.imgs)
    coco_eval.params.maxDets = list(MAX_DETS)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    precision = coco_eval.eval['precision'][:, :, :, 0, -1]  # [T, R, K]: area all, 1000 dets
    iou_thrs = coco_eval.params.iouThrs

    def mean_ap(rows: np.ndarray) -> np.ndarray:  # [t, R, K] -> [K], NaN without gt
        out = np.full(rows.shape[-1], np.nan)
        for k in range(rows.shape[-1]):
            valid = rows[..., k][rows[..., k] > -1]
            if valid.size:
                out[k] = valid.mean()
        return out

    iou_index = {iou: int(np.argmin(np.abs(iou_thrs - iou))) for iou in PR_IOUS}
    num_gts = np.zeros(len(classes), dtype=np.int64)
    for ann in coco_gt.dataset['annotations']:
        if not ann.get('iscrowd', 0):
            num_gts[ann['category_id']] += 1
    return ClassEval(
        iou_type=iou_type, classes=classes, ap=mean_ap(precision),
        ap50=mean_ap(precision[iou_index[0.5]][None]),
        ap75=mean_ap(precision[iou_index[0.75]][None]), num_gts=num_gts,
        recall_thrs=np.asarray(coco_eval.params.recThrs),
        pr_curves={iou: precision[i].T.copy() for iou, i in iou_index.items()})
