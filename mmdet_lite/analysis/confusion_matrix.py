"""Confusion matrix of a detector's saved predictions against a dataset's ground truth.

The counting follows mmdetection 3.3's ``tools/analysis_tools/confusion_matrix.py``; the
matrix is ``[num_classes + 1, num_classes + 1]``, rows are ground-truth classes and columns
predicted classes, the extra row and column stand for background:

- a prediction (score >= ``score_thr``) adds 1 to ``[gt_label, pred_label]`` for *every*
  ground-truth box it overlaps with IoU >= ``tp_iou_thr``, whatever the two classes;
- a prediction that overlaps no ground-truth box that much is a false positive:
  ``[background, pred_label]``;
- a ground-truth box that no prediction *of its own class* overlaps that much is missed:
  ``[gt_label, background]`` (so a box found only with the wrong class counts twice, in
  ``[gt_label, wrong_label]`` and as missed).

Ground-truth boxes marked ``ignore_flag=1`` are counted like any other: mmdetection reads
every entry of ``instances`` here, so we do too (the flag is not consulted).
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from mmdet_lite.evaluation.functional import bbox_overlaps
from mmdet_lite.models.utils import batched_nms

MIN_FIGURE_INCHES = 5.0  # width of the plot for few classes


class NumResultsError(ValueError, AssertionError):
    """The predictions do not have one entry per dataset image; also an ``AssertionError``
    as in mmdetection."""


def to_numpy(value) -> np.ndarray:
    """A tensor, array or list as a numpy array (tensors moved to the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def gt_boxes_and_labels(instances: Sequence[dict]) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes and labels of a dataset image's ``instances`` (``data_info['instances']``).

    Args:
        instances (Sequence[dict]): Each with ``bbox`` (x1, y1, x2, y2) and ``bbox_label``.

    Returns:
        tuple[np.ndarray, np.ndarray]: Boxes [n, 4] float32 and labels [n] int64 (shape
        [0, 4] / [0] for an image without objects).
    """
    bboxes = np.array([inst['bbox'] for inst in instances], dtype=np.float32).reshape(-1, 4)
    labels = np.array([inst['bbox_label'] for inst in instances], dtype=np.int64)
    return bboxes, labels


def pred_boxes_scores_labels(pred_instances) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``bboxes`` [N, 4] float32, ``scores`` [N] float32 and ``labels`` [N] int64 of one
    image's predictions (a dict from a ``tools/test.py --out`` file, or InstanceData)."""
    bboxes = to_numpy(pred_instances['bboxes']).astype(np.float32).reshape(-1, 4)
    scores = to_numpy(pred_instances['scores']).astype(np.float32).reshape(-1)
    labels = to_numpy(pred_instances['labels']).astype(np.int64).reshape(-1)
    return bboxes, scores, labels


def check_num_results(dataset, results: Sequence) -> None:
    """Raise :class:`NumResultsError` unless ``results`` has one entry per dataset image."""
    if len(dataset) != len(results):
        raise NumResultsError(f'the predictions hold {len(results)} images but the test '
                              f'dataset has {len(dataset)}: they must come from '
                              'tools/test.py --out on this same dataset')


def _nms_per_class(bboxes: np.ndarray, scores: np.ndarray, iou_thr: float,
                   score_thr: float) -> Tuple[np.ndarray, np.ndarray]:
    """NMS of one class's predictions as ``mmcv.ops.nms(..., score_threshold=score_thr)``:
    scores must be *above* a positive ``score_thr``; the kept boxes come highest score
    first, with their own scores."""
    if score_thr > 0:
        keep = scores > score_thr
        bboxes, scores = bboxes[keep], scores[keep]
    boxes_t, scores_t = torch.from_numpy(bboxes), torch.from_numpy(scores)
    dets, _ = batched_nms(boxes_t, scores_t, torch.zeros_like(scores_t, dtype=torch.long),
                          dict(type='nms', iou_threshold=iou_thr))
    dets = dets.numpy()  # [K, 5] x1, y1, x2, y2, score
    return dets[:, :4], dets[:, 4]


def analyze_per_img_dets(confusion_matrix: np.ndarray,
                         gts: Sequence[dict],
                         result,
                         score_thr: float = 0,
                         tp_iou_thr: float = 0.5,
                         nms_iou_thr: Optional[float] = None) -> None:
    """Add one image's predictions to ``confusion_matrix`` (in place).

    Args:
        confusion_matrix (np.ndarray): [num_classes + 1, num_classes + 1] counts.
        gts (Sequence[dict]): The image's ``instances`` (``bbox``, ``bbox_label``).
        result (dict | InstanceData): The image's ``pred_instances``: ``bboxes`` [N, 4],
            ``scores`` [N], ``labels`` [N].
        score_thr (float): Predictions scoring below this are left out. Defaults to 0.
        tp_iou_thr (float): IoU at which a prediction and a ground-truth box match.
            Defaults to 0.5.
        nms_iou_thr (float, optional): Run NMS again per class at this IoU first (a falsy
            value, None or 0, skips it, as in mmdetection). Defaults to None.
    """
    gt_bboxes, gt_labels = gt_boxes_and_labels(gts)
    found = np.zeros(len(gt_labels), dtype=bool)  # matched by a prediction of its class
    bboxes, scores, labels = pred_boxes_scores_labels(result)
    for pred_label in np.unique(labels):
        in_class = labels == pred_label
        cls_bboxes, cls_scores = bboxes[in_class], scores[in_class]
        if nms_iou_thr:
            # mmdetection pairs the boxes kept by NMS with the scores from before it (an
            # IndexError once NMS removes a box); each kept box keeps its own score here.
            cls_bboxes, cls_scores = _nms_per_class(cls_bboxes, cls_scores, nms_iou_thr,
                                                    score_thr)
        ious = bbox_overlaps(cls_bboxes, gt_bboxes)  # [num_preds, num_gts]
        for pred_ious, score in zip(ious, cls_scores):
            if score < score_thr:
                continue
            hits = pred_ious >= tp_iou_thr  # [num_gts]
            if not hits.any():
                confusion_matrix[-1, pred_label] += 1  # false positive on background
                continue
            # one count per overlapped gt box: np.add.at adds repeated labels each time
            np.add.at(confusion_matrix, (gt_labels[hits], pred_label), 1)
            found |= hits & (gt_labels == pred_label)
    np.add.at(confusion_matrix, (gt_labels[~found], -1), 1)  # missed gt boxes


def calculate_confusion_matrix(dataset,
                               results: Sequence[dict],
                               score_thr: float = 0,
                               nms_iou_thr: Optional[float] = None,
                               tp_iou_thr: float = 0.5,
                               progress: bool = False) -> np.ndarray:
    """Confusion matrix of saved predictions over a whole dataset.

    Args:
        dataset: A built dataset (``metainfo['classes']``, ``len``, ``get_data_info(i)``
            with ``instances``), the one the predictions were made on.
        results (Sequence[dict]): One dict per image in dataset order, each with
            ``pred_instances`` (the list ``tools/test.py --out`` writes).
        score_thr (float): Predictions scoring below this are left out. Defaults to 0.
        nms_iou_thr (float, optional): Run NMS again per class at this IoU (None: the
            predictions are used as they are). Defaults to None.
        tp_iou_thr (float): IoU at which a prediction and a ground-truth box match.
            Defaults to 0.5.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        np.ndarray: float64 counts [num_classes + 1, num_classes + 1]; rows: ground-truth
        class (last row: background, i.e. false positives), columns: predicted class (last
        column: background, i.e. missed ground truth).

    Raises:
        NumResultsError: ``results`` does not have one entry per dataset image.
        KeyError: An entry has no ``pred_instances``.
    """
    num_classes = len(dataset.metainfo['classes'])
    confusion_matrix = np.zeros((num_classes + 1, num_classes + 1))
    check_num_results(dataset, results)
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(results))
    for index, result in enumerate(results):
        if 'pred_instances' not in result:
            raise KeyError(f'prediction {index} has no pred_instances (keys: '
                           f'{sorted(result)}); expected the output of tools/test.py --out '
                           'of a detection model')
        gts = dataset.get_data_info(index)['instances']
        analyze_per_img_dets(confusion_matrix, gts, result['pred_instances'], score_thr,
                             tp_iou_thr, nms_iou_thr)
        if bar is not None:
            bar.update()
    return confusion_matrix


def plot_confusion_matrix(confusion_matrix: np.ndarray,
                          labels: Sequence[str],
                          save_dir: Optional[str] = None,
                          show: bool = True,
                          title: str = 'Normalized Confusion Matrix',
                          color_theme: str = 'plasma') -> Optional[str]:
    """Draw the confusion matrix, each row normalised to percentages of its total.

    A row without any count (e.g. a class absent from the dataset) shows ``-1%``, as in
    mmdetection. The figure is ``0.5 * len(labels)`` inches wide (4/5 of that high) at
    180 dpi as there, but at least 5 inches: mmdetection's 2 inches for 3 classes cannot
    hold the title and labels.

    Args:
        confusion_matrix (np.ndarray): Counts [C + 1, C + 1] from
            :func:`calculate_confusion_matrix`.
        labels (Sequence[str]): The C class names followed by ``'background'``.
        save_dir (str, optional): Write ``confusion_matrix.png`` into this folder (made if
            missing). Defaults to None.
        show (bool): Show the figure in a window. Defaults to True.
        title (str): Figure title. Defaults to 'Normalized Confusion Matrix'.
        color_theme (str): A matplotlib colour map name. Defaults to 'plasma'.

    Returns:
        str | None: The PNG's path, or None without ``save_dir``.
    """
    import matplotlib
    if not show:
        matplotlib.use('Agg')  # a file only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MultipleLocator

    with np.errstate(invalid='ignore', divide='ignore'):  # empty rows become nan
        percent = (confusion_matrix.astype(np.float32) /
                   confusion_matrix.sum(axis=1)[:, np.newaxis] * 100)

    num_labels = len(labels)
    width = max(0.5 * num_labels, MIN_FIGURE_INCHES)
    fig, ax = plt.subplots(figsize=(width, width * 0.8), dpi=180)
    image = ax.imshow(percent, cmap=plt.get_cmap(color_theme))
    fig.colorbar(mappable=image, ax=ax)
    ax.set_title(title, fontdict={'weight': 'bold', 'size': 12})
    ax.set_ylabel('Ground Truth Label', fontdict={'size': 10})
    ax.set_xlabel('Prediction Label', fontdict={'size': 10})

    # a grid line between cells (on the half-integer minor ticks), a label at each cell
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MultipleLocator(1))
        axis.set_minor_locator(MultipleLocator(0.5))
    ax.grid(True, which='minor', linestyle='-')
    ax.set_xticks(np.arange(num_labels))
    ax.set_yticks(np.arange(num_labels))
    ax.set_xticklabels(labels)
    ax.set_yticklabels(labels)
    ax.tick_params(axis='x', bottom=False, top=True, labelbottom=False, labeltop=True)
    plt.setp(ax.get_xticklabels(), rotation=45, ha='left', rotation_mode='anchor')

    for row in range(num_labels):
        for col in range(num_labels):
            value = percent[row, col]
            text = -1 if np.isnan(value) else int(value)  # truncated, as mmdetection
            ax.text(col, row, f'{text}%', ha='center', va='center', color='w', size=7)
    ax.set_ylim(num_labels - 0.5, -0.5)  # row 0 on top (matplotlib > 3.1.1 needs this)
    fig.tight_layout()

    path = None
    if save_dir is not None:
        os.makedirs(save_dir, exist_ok=True)
        path = osp.join(save_dir, 'confusion_matrix.png')
        fig.savefig(path, format='png')
    if show:
        plt.show()
    plt.close(fig)
    return path
