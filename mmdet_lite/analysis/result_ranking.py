"""Rank a dataset's images by how well saved predictions detect their objects.

As mmdetection 3.3's ``tools/analysis_tools/analyze_results.py`` (``bbox_map_eval`` and
``ResultVisualizer.detection_evaluate``): an image's score is its box mAP computed by
:func:`~mmdet_lite.evaluation.functional.eval_map` on that image alone, averaged over the
IoU thresholds 0.5, 0.55, ..., 0.95. ``eval_map`` averages over the classes that have
ground truth in the image, so an image without objects scores 0 whatever was predicted.
All of the image's ``instances`` are ground truth, ``ignore_flag`` or not, as there.
"""
import itertools
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.structures import InstanceData

from mmdet_lite.evaluation.functional import eval_map
from .confusion_matrix import gt_boxes_and_labels, pred_boxes_scores_labels

# 0.5:0.05:0.95, the COCO thresholds mmdetection's bbox_map_eval averages over
COCO_IOU_THRS = np.linspace(.5, .95, int(np.round((.95 - .5) / .05)) + 1, endpoint=True)

Ranking = List[Tuple[int, float]]  # (dataset index, mAP), lowest mAP first

_visualizer_ids = itertools.count()


class TopkError(ValueError, AssertionError):
    """``topk`` is not positive; also an ``AssertionError`` as in mmdetection."""


class PredictionTypeError(ValueError):
    """The saved predictions are not detections (``pred_instances``)."""


def per_class_dets(pred_instances, num_classes: int) -> List[np.ndarray]:
    """One image's predictions split by class, the detections format of ``eval_map``.

    Args:
        pred_instances (dict | InstanceData): ``bboxes`` [N, 4], ``scores`` [N],
            ``labels`` [N].
        num_classes (int): Number of classes.

    Returns:
        list[np.ndarray]: ``num_classes`` arrays [n_c, 5] (x1, y1, x2, y2, score).
    """
    bboxes, scores, labels = pred_boxes_scores_labels(pred_instances)
    dets = np.hstack([bboxes, scores[:, None]])  # [N, 5]
    return [dets[labels == label] for label in range(num_classes)]


def image_map(dets: Sequence[np.ndarray], gt_bboxes: np.ndarray, gt_labels: np.ndarray,
              iou_thrs: Sequence[float] = COCO_IOU_THRS) -> float:
    """Box mAP of one image, averaged over ``iou_thrs`` (mmdetection's ``bbox_map_eval``).

    Args:
        dets (Sequence[np.ndarray]): Per class, detections [n_c, 5].
        gt_bboxes (np.ndarray): Ground-truth boxes [n, 4].
        gt_labels (np.ndarray): Their labels [n].
        iou_thrs (Sequence[float]): IoU thresholds. Defaults to 0.5:0.05:0.95.

    Returns:
        float: The mean of ``eval_map``'s mAP at each threshold.
    """
    annotation = dict(bboxes=gt_bboxes, labels=gt_labels)
    maps = [eval_map([dets], [annotation], iou_thr=thr, logger='silent', nproc=1)[0]
            for thr in iou_thrs]
    return sum(maps) / len(maps)  # a Python sum, as mmdetection (same float rounding)


def _pred_instances(result: dict, index: int):
    if 'pred_instances' not in result:
        if 'pred_panoptic_seg' in result:
            raise PredictionTypeError(
                f'prediction {index} is a panoptic segmentation (pred_panoptic_seg); only '
                'detection results (pred_instances) can be ranked here')
        raise PredictionTypeError(f'prediction {index} has no pred_instances (keys: '
                                  f'{sorted(result)}); expected the output of '
                                  'tools/test.py --out of a detection model')
    return result['pred_instances']


def per_image_map(dataset, results: Sequence[dict],
                  iou_thrs: Sequence[float] = COCO_IOU_THRS,
                  progress: bool = False) -> np.ndarray:
    """The box mAP of each image (see :func:`image_map`).

    Args:
        dataset: A built dataset (``metainfo['classes']``, ``get_data_info(i)`` with
            ``instances``), the one the predictions were made on.
        results (Sequence[dict]): One dict per image with ``pred_instances``, in dataset
            order (``tools/test.py --out``). Fewer entries than images rank the first ones,
            as mmdetection does.
        iou_thrs (Sequence[float]): IoU thresholds. Defaults to 0.5:0.05:0.95.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        np.ndarray: float64 [len(results)], each in [0, 1].

    Raises:
        ValueError: More predictions than images, or an entry that is not a detection.
    """
    if len(results) > len(dataset):
        raise ValueError(f'the predictions hold {len(results)} images but the dataset has '
                         f'only {len(dataset)}: they must come from tools/test.py --out on '
                         'this same dataset')
    num_classes = len(dataset.metainfo['classes'])
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(results))
    maps = np.zeros(len(results))
    for index, result in enumerate(results):
        dets = per_class_dets(_pred_instances(result, index), num_classes)
        gt_bboxes, gt_labels = gt_boxes_and_labels(dataset.get_data_info(index)['instances'])
        maps[index] = image_map(dets, gt_bboxes, gt_labels, iou_thrs)
        if bar is not None:
            bar.update()
    return maps


def rank_results(dataset, results: Sequence[dict], topk: int = 20,
                 progress: bool = False) -> Tuple[Ranking, Ranking]:
    """The ``topk`` best and worst images by per-image mAP.

    As mmdetection's ``evaluate_and_show`` + ``detection_evaluate``: ``topk`` is cut to
    half the dataset when twice it is more than the dataset, images are sorted by mAP
    (ascending, ties in dataset order), the best are the last ``topk`` of that order and
    the worst the first ``topk``. So both lists run from the lowest mAP up, and with a
    single image (``topk`` cut to 0) the best list is that image and the worst is empty
    (Python's ``seq[-0:]`` is the whole list), as in mmdetection.

    Args:
        dataset: See :func:`per_image_map`.
        results (Sequence[dict]): See :func:`per_image_map`.
        topk (int): Images in each list. Defaults to 20.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        tuple[list, list]: ``(good_samples, bad_samples)``, lists of ``(index, mAP)``.

    Raises:
        TopkError: ``topk`` is not positive.
    """
    if topk <= 0:
        raise TopkError(f'topk must be > 0, got {topk}')
    if topk * 2 > len(dataset):
        topk = len(dataset) // 2
    maps = per_image_map(dataset, results, progress=progress)
    order = sorted(range(len(maps)), key=lambda i: maps[i])  # stable: ties by index
    ranked = [(i, float(maps[i])) for i in order]
    return ranked[-topk:], ranked[:topk]


def _gt_instances(gt) -> InstanceData:
    """Ground truth for drawing from a data_info dict, its ``instances`` or InstanceData."""
    if isinstance(gt, InstanceData):
        return gt
    instances = gt['instances'] if isinstance(gt, dict) else gt
    bboxes, labels = gt_boxes_and_labels(instances)
    return InstanceData(bboxes=torch.from_numpy(bboxes), labels=torch.from_numpy(labels))


def draw_gt_and_prediction(img: np.ndarray,
                           gt,
                           pred_instances,
                           classes: Optional[Sequence[str]] = None,
                           score_thr: float = 0,
                           palette=None,
                           visualizer=None) -> np.ndarray:
    """Ground truth (left) and predictions (right) drawn side by side on one image.

    Drawn by :class:`~mmdet_lite.visualization.DetLocalVisualizer` as its
    ``add_datasample`` draws a sample with both: the same boxes, labels and colours.

    Args:
        img (np.ndarray): RGB image [H, W, 3] in the predictions' (original) coordinates.
        gt (dict | list[dict] | InstanceData): The image's ``data_info`` (with
            ``instances``), its ``instances`` list, or InstanceData with ``bboxes`` and
            ``labels``.
        pred_instances (dict | InstanceData): ``bboxes`` [N, 4], ``scores`` [N],
            ``labels`` [N]; masks are not drawn (as mmdetection's analyze_results).
        classes (Sequence[str], optional): Class names for the labels. Defaults to None.
        score_thr (float): Predictions scoring at or below this are not drawn.
            Defaults to 0.
        palette (list[tuple] | str, optional): Box colours per class (the dataset's
            ``palette``). Defaults to None.
        visualizer (DetLocalVisualizer, optional): Draw with this one (its
            ``dataset_meta`` is replaced); a new one when None.

    Returns:
        np.ndarray: RGB uint8 [H, 2W, 3].
    """
    if visualizer is None:
        from mmdet_lite.visualization import DetLocalVisualizer
        visualizer = DetLocalVisualizer(name=f'result_ranking_{next(_visualizer_ids)}')
    visualizer.dataset_meta = dict(classes=classes, palette=palette)
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'img must be an RGB array [H, W, 3], got shape {img.shape}')
    img = img.clip(0, 255).astype(np.uint8) if img.dtype != np.uint8 else img
    bboxes, scores, labels = pred_boxes_scores_labels(pred_instances)
    keep = scores > score_thr  # add_datasample's rule for pred_score_thr
    preds = InstanceData(bboxes=torch.from_numpy(bboxes[keep]),
                         scores=torch.from_numpy(scores[keep]),
                         labels=torch.from_numpy(labels[keep]))
    # add_datasample writes or shows its drawing but does not return it; its per-set
    # drawing step gives the same two halves.
    gt_img = visualizer._draw_instances(img, _gt_instances(gt), classes, palette)
    pred_img = visualizer._draw_instances(img, preds, classes, palette)
    return np.concatenate([gt_img, pred_img], axis=1)  # [H, 2W, 3]

