"""Proposal recall at several proposal counts and IoU thresholds (mmdetection's
``eval_recalls``), in numpy."""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.logging import print_log

from .ascii_table import ascii_table
from .bbox_overlaps import bbox_overlaps


class NumImagesMismatch(ValueError, AssertionError):
    """Ground truth and proposals of a different number of images."""


def _greedy_match_ious(ious: np.ndarray) -> np.ndarray:
    """IoUs of a greedy one-to-one matching of boxes (rows) and proposals (columns).

    The best remaining (box, proposal) pair is taken and both are removed, once per box;
    a box left without proposals gets -1 (never recalled).

    Args:
        ious (np.ndarray): IoU matrix [num_gts, num_proposals].

    Returns:
        np.ndarray: One matched IoU per box, in the order they were matched, [num_gts].
    """
    if ious.size == 0:
        return np.zeros(ious.shape[0])
    ious = ious.copy()
    matched = np.zeros(ious.shape[0])
    for j in range(ious.shape[0]):
        best_box = ious.argmax(axis=1)
        best_iou = ious[np.arange(ious.shape[0]), best_box]
        gt_idx = best_iou.argmax()
        matched[j] = best_iou[gt_idx]
        ious[gt_idx, :] = -1
        ious[:, best_box[gt_idx]] = -1
    return matched


def _recalls(all_ious: List[np.ndarray], proposal_nums: np.ndarray,
             thrs: np.ndarray) -> np.ndarray:
    """Recall [len(proposal_nums), len(thrs)] from per-image IoU matrices [n_i, k_i]."""
    total_gts = sum(ious.shape[0] for ious in all_ious)
    matched = np.zeros((proposal_nums.size, total_gts), dtype=np.float32)
    for k, num in enumerate(proposal_nums):
        matched[k] = np.concatenate(
            [_greedy_match_ious(ious[:, :num]) for ious in all_ious] or [np.zeros(0)])
    recalls = np.zeros((proposal_nums.size, thrs.size))
    with np.errstate(invalid='ignore', divide='ignore'):  # no ground truth: nan
        for i, thr in enumerate(thrs):
            recalls[:, i] = (matched >= thr).sum(axis=1) / float(total_gts)
    return recalls


def set_recall_param(proposal_nums: Optional[Union[int, Sequence[int], np.ndarray]],
                     iou_thrs: Optional[Union[float, Sequence[float], np.ndarray]]
                     ) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """``proposal_nums`` and ``iou_thrs`` as 1-D arrays (``iou_thrs`` None means 0.5)."""
    if proposal_nums is not None:
        proposal_nums = np.atleast_1d(np.asarray(proposal_nums))
    iou_thrs = np.array([0.5]) if iou_thrs is None else np.atleast_1d(np.asarray(iou_thrs))
    return proposal_nums, iou_thrs


def eval_recalls(gts: Sequence[Optional[np.ndarray]],
                 proposals: Sequence[np.ndarray],
                 proposal_nums: Optional[Union[int, Sequence[int]]] = None,
                 iou_thrs: Union[float, Sequence[float]] = 0.5,
                 logger=None,
                 use_legacy_coordinate: bool = False) -> np.ndarray:
    """Recall of the ground truth by the top proposals of each image; logs a table.

    Proposals with a score column are ranked by it (descending); the first
    ``proposal_num`` are matched one-to-one with the ground truth, greedily by IoU.

    Args:
        gts (Sequence[np.ndarray | None]): Per image, boxes [n, 4] (None: no boxes).
        proposals (Sequence[np.ndarray]): Per image, proposals [k, 4] or [k, 5] (score).
        proposal_nums (int | Sequence[int], optional): Proposal counts to evaluate; None
            uses all proposals.
        iou_thrs (float | Sequence[float]): IoU thresholds. Defaults to 0.5.
        logger (logging.Logger | str, optional): ``print_log`` target of the table;
            ``'silent'`` prints nothing.
        use_legacy_coordinate (bool): Widths and heights are ``x2 - x1 + 1``.

    Returns:
        np.ndarray: Recall [len(proposal_nums), len(iou_thrs)] (nan without ground truth).
    """
    if len(gts) != len(proposals):
        raise NumImagesMismatch(f'gts has {len(gts)} images but proposals has '
                                f'{len(proposals)}')
    proposal_nums, iou_thrs = set_recall_param(proposal_nums, iou_thrs)
    if proposal_nums is None:
        proposal_nums = np.array([max([len(p) for p in proposals] + [0])])
    all_ious = []
    for gt, props in zip(gts, proposals):
        props = np.asarray(props)
        if props.ndim == 2 and props.shape[1] == 5:
            props = props[np.argsort(props[:, 4])[::-1]]
        num = min(props.shape[0], int(proposal_nums[-1]))
        if gt is None or gt.shape[0] == 0:
            all_ious.append(np.zeros((0, props.shape[0]), dtype=np.float32))
        else:
            all_ious.append(bbox_overlaps(gt, props[:num, :4],
                                          use_legacy_coordinate=use_legacy_coordinate))
    recalls = _recalls(all_ious, proposal_nums, iou_thrs)
    print_recall_summary(recalls, proposal_nums, iou_thrs, logger=logger)
    return recalls


def print_recall_summary(recalls: np.ndarray,
                         proposal_nums: Union[Sequence[int], np.ndarray],
                         iou_thrs: Union[Sequence[float], np.ndarray],
                         row_idxs: Optional[np.ndarray] = None,
                         col_idxs: Optional[np.ndarray] = None,
                         logger=None) -> None:
    """Log recalls as a table: one row per proposal count, one column per IoU threshold.

    Args:
        recalls (np.ndarray): [len(proposal_nums), len(iou_thrs)].
        proposal_nums (Sequence[int]): Row labels.
        iou_thrs (Sequence[float]): Column labels.
        row_idxs (np.ndarray, optional): Rows to print (default all).
        col_idxs (np.ndarray, optional): Columns to print (default all).
        logger (logging.Logger | str, optional): ``print_log`` target; ``'silent'`` skips.
    """
    if logger == 'silent':
        return
    proposal_nums = np.array(proposal_nums, dtype=np.int32)
    iou_thrs = np.array(iou_thrs)
    row_idxs = np.arange(proposal_nums.size) if row_idxs is None else row_idxs
    col_idxs = np.arange(iou_thrs.size) if col_idxs is None else col_idxs
    rows = [[''] + iou_thrs[col_idxs].tolist()]
    for i, num in zip(row_idxs, proposal_nums[row_idxs]):
        rows.append([int(num)] + [f'{v:.3f}' for v in recalls[i, col_idxs].tolist()])
    print_log('\n' + ascii_table(rows), logger=logger)
