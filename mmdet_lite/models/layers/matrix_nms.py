"""Matrix NMS (SOLOv2): soft suppression of overlapping masks, computed for all pairs at once.

Instead of NMS's sequential "drop anything overlapping a kept mask", every mask's score is
multiplied by a decay factor read off the pairwise IoU matrix. For mask ``j`` and each
higher-scoring mask ``i`` of the same class:

- ``iou[i, j]`` says how much ``i`` suppresses ``j``;
- ``comp[i] = max_k iou[k, i]`` (over masks ``k`` above ``i``) says how suppressed ``i`` is
  itself, so a mask that is probably a duplicate suppresses others less.

``decay[j] = min_i f(iou[i, j]) / f(comp[i])`` with ``f(x) = 1 - x`` (linear) or
``f(x) = exp(-sigma * x**2)`` (gaussian), where ``iou`` only counts same-class pairs with
``i`` above ``j``. The best mask has ``comp = 0``, so its term is ``f(iou[0, j]) <= 1``: scores
never grow.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor


class MatrixNMSArgumentError(ValueError, AssertionError):
    """Bad input to :func:`mask_matrix_nms` (an AssertionError in mmdetection)."""


def _empty(masks: Tensor, labels: Tensor, scores: Tensor) -> Tuple[Tensor, ...]:
    return (scores.new_zeros(0), labels.new_zeros(0), masks.new_zeros(0, *masks.shape[-2:]),
            labels.new_zeros(0))


def mask_matrix_nms(masks: Tensor,
                    labels: Tensor,
                    scores: Tensor,
                    filter_thr: float = -1,
                    nms_pre: int = -1,
                    max_num: int = -1,
                    kernel: str = 'gaussian',
                    sigma: float = 2.0,
                    mask_area: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Decay the scores of overlapping same-class masks (Matrix NMS of SOLOv2).

    Args:
        masks (Tensor): Binary masks [N, H, W] (bool or 0/1).
        labels (Tensor): Class of each mask [N].
        scores (Tensor): Score of each mask [N].
        filter_thr (float): Drop masks whose decayed score is below it; <= 0 keeps all.
            Defaults to -1.
        nms_pre (int): Keep the ``nms_pre`` best masks before the decay; <= 0 keeps all.
            Defaults to -1.
        max_num (int): Keep the ``max_num`` best masks after it; <= 0 keeps all.
            Defaults to -1.
        kernel (str): ``'gaussian'`` or ``'linear'`` decay. Defaults to ``'gaussian'``.
        sigma (float): Width of the gaussian kernel. Defaults to 2.0.
        mask_area (Tensor, optional): Foreground pixels of each mask [N]; computed from
            ``masks`` when None.

    Returns:
        tuple[Tensor]: Best first:

        - scores (Tensor): Decayed scores [K].
        - labels (Tensor): Their classes [K].
        - masks (Tensor): Their masks [K, H, W].
        - keep_inds (Tensor): Their indices into the input masks [K].
    """
    if not len(labels) == len(masks) == len(scores):
        raise MatrixNMSArgumentError(
            f'mask_matrix_nms needs one label and one score per mask, got {len(masks)} '
            f'masks, {len(labels)} labels and {len(scores)} scores')
    if len(labels) == 0:
        return _empty(masks, labels, scores)
    if mask_area is None:
        mask_area = masks.sum((1, 2)).float()
    elif len(mask_area) != len(masks):
        raise MatrixNMSArgumentError(f'mask_area must have one value per mask ({len(masks)}), '
                                     f'got {len(mask_area)}')

    scores, order = torch.sort(scores, descending=True)
    if 0 < nms_pre < len(order):
        order, scores = order[:nms_pre], scores[:nms_pre]
    keep_inds = order
    masks, mask_area, labels = masks[order], mask_area[order], labels[order]

    # Pairwise IoU and same-class flags, upper triangle only: row i (higher score) acts on
    # column j (lower score).
    num = len(labels)
    flat = masks.reshape(num, -1).float()
    inter = flat @ flat.t()  # [K, K]
    area = mask_area.expand(num, num)  # area[i, j] = area of j
    iou = (inter / (area + area.t() - inter)).triu(diagonal=1)
    same_label = (labels[None, :] == labels[:, None]).triu(diagonal=1)
    decay_iou = iou * same_label  # [K, K]
    # How much each mask is itself suppressed, broadcast along its row (it acts on its row).
    comp_iou = decay_iou.max(0)[0].expand(num, num).t()  # comp[i, j] = comp of i

    if kernel == 'gaussian':
        ratio = torch.exp(-sigma * decay_iou**2) / torch.exp(-sigma * comp_iou**2)
    elif kernel == 'linear':
        ratio = (1 - decay_iou) / (1 - comp_iou)
    else:
        raise NotImplementedError(f'{kernel} kernel is not supported in matrix nms!')
    scores = scores * ratio.min(0)[0]

    if filter_thr > 0:
        keep = scores >= filter_thr
        if not keep.any():
            return _empty(masks, labels, scores)
        keep_inds, masks, scores, labels = keep_inds[keep], masks[keep], scores[keep], \
            labels[keep]

    scores, order = torch.sort(scores, descending=True)
    if 0 < max_num < len(order):
        order, scores = order[:max_num], scores[:max_num]
    return scores, labels[order], masks[order], keep_inds[order]
