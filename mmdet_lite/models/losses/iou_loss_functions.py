"""Element-wise IoU-family box regression losses (weighted and reduced by ``weighted_loss``).

Every function takes aligned boxes ``pred`` and ``target`` of shape [N, 4] in (x1, y1, x2, y2)
format and returns one loss per box pair, [N] (``bounded_iou_loss``: [N, 4]). The decorator
adds ``weight``, ``reduction`` and ``avg_factor``.
"""
import math
import warnings
from typing import Callable, Tuple

import torch
from torch import Tensor

from mmdet_lite.structures.bbox import bbox_overlaps
from .utils import LossArgumentError, weighted_loss

IOU_LOSS_MODES = ('linear', 'square', 'log')


def check_iou_loss_mode(mode: str) -> None:
    """Raise unless ``mode`` is one of ``IOU_LOSS_MODES``."""
    if mode not in IOU_LOSS_MODES:
        raise LossArgumentError(f'IoU loss mode must be one of {IOU_LOSS_MODES}, '
                                f'but got {mode!r}')


def _in_float32_if_half(overlap_fn: Callable[[Tensor], Tensor], pred: Tensor) -> Tensor:
    """Run ``overlap_fn(pred)`` in float32 when ``pred`` is float16 and cast the result back.

    Box areas of a few hundred pixels squared overflow float16.
    """
    if pred.dtype != torch.float16:
        return overlap_fn(pred)
    return overlap_fn(pred.float()).half()


def _graph_connected_empty(pred: Tensor) -> Tensor:
    """Loss [0] of no boxes that is still attached to ``pred``, so backward works."""
    return pred.sum(dim=-1) * 0


@weighted_loss
def iou_loss(pred: Tensor,
             target: Tensor,
             linear: bool = False,
             mode: str = 'log',
             eps: float = 1e-6) -> Tensor:
    """IoU loss: ``-log(IoU)`` (``'log'``), ``1 - IoU`` (``'linear'``) or ``1 - IoU**2``.

    Args:
        pred (Tensor): Predicted boxes [N, 4].
        target (Tensor): Target boxes [N, 4].
        linear (bool): Deprecated; True means ``mode='linear'``. Defaults to False.
        mode (str): ``'linear'``, ``'square'`` or ``'log'``. Defaults to ``'log'``.
        eps (float): Lower bound of the IoU (keeps the log finite). Defaults to 1e-6.

    Returns:
        Tensor: Loss per box pair [N].
    """
    check_iou_loss_mode(mode)
    if linear:
        mode = 'linear'
        warnings.warn('DeprecationWarning: Setting "linear=True" in iou_loss is deprecated, '
                      'please use "mode=`linear`" instead.')
    if pred.numel() == 0 and target.numel() == 0:
        return _graph_connected_empty(pred)
    ious = _in_float32_if_half(
        lambda boxes: bbox_overlaps(boxes, target.type_as(boxes), is_aligned=True).clamp(min=eps),
        pred)
    if mode == 'linear':
        return 1 - ious
    if mode == 'square':
        return 1 - ious**2
    return -ious.log()


@weighted_loss
def bounded_iou_loss(pred: Tensor, target: Tensor, beta: float = 0.2, eps: float = 1e-3) -> Tensor:
    """Bounded IoU loss (Tychsen-Smith & Petersson, 2018).

    Each of centre x, centre y, width and height gets an upper bound of ``1 - IoU`` as if the
    other three were exact; the four bounds go through a smooth L1 with threshold ``beta``.
    The target only enters as a constant.

    Args:
        pred (Tensor): Predicted boxes [N, 4].
        target (Tensor): Target boxes [N, 4].
        beta (float): Smooth L1 threshold. Defaults to 0.2.
        eps (float): Added to the denominators. Defaults to 1e-3.

    Returns:
        Tensor: Loss per box and term [N, 4] (dx, dy, dw, dh).
    """
    pred_cx = (pred[:, 0] + pred[:, 2]) * 0.5
    pred_cy = (pred[:, 1] + pred[:, 3]) * 0.5
    pred_w = pred[:, 2] - pred[:, 0]
    pred_h = pred[:, 3] - pred[:, 1]
    with torch.no_grad():
        target_cx = (target[:, 0] + target[:, 2]) * 0.5
        target_cy = (target[:, 1] + target[:, 3]) * 0.5
        target_w = target[:, 2] - target[:, 0]
        target_h = target[:, 3] - target[:, 1]

    shift_x = (target_cx - pred_cx).abs()
    shift_y = (target_cy - pred_cy).abs()
    zeros = torch.zeros_like(shift_x)
    loss_dx = 1 - torch.max((target_w - 2 * shift_x) / (target_w + 2 * shift_x + eps), zeros)
    loss_dy = 1 - torch.max((target_h - 2 * shift_y) / (target_h + 2 * shift_y + eps), zeros)
    loss_dw = 1 - torch.min(target_w / (pred_w + eps), pred_w / (target_w + eps))
    loss_dh = 1 - torch.min(target_h / (pred_h + eps), pred_h / (target_h + eps))
    # flatten(1) rather than view(N, -1): the latter fails on N == 0.
    terms = torch.stack([loss_dx, loss_dy, loss_dw, loss_dh], dim=-1).flatten(1)
    return torch.where(terms < beta, 0.5 * terms * terms / beta, terms - 0.5 * beta)


@weighted_loss
def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """``1 - GIoU`` (Rezatofighi et al., 2019).

    Args:
        pred (Tensor): Predicted boxes [N, 4].
        target (Tensor): Target boxes [N, 4].
        eps (float): Lower bound of the union and enclosing-area denominators.

    Returns:
        Tensor: Loss per box pair [N], in [0, 2].
    """
    if pred.numel() == 0 and target.numel() == 0:
        return _graph_connected_empty(pred)
    gious = _in_float32_if_half(
        lambda boxes: bbox_overlaps(boxes, target.type_as(boxes), mode='giou', is_aligned=True,
                                    eps=eps), pred)
    return 1 - gious


def _overlap_terms(pred: Tensor, target: Tensor, eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Shared pieces of DIoU, CIoU and SIoU.

    Returns:
        tuple[Tensor]: IoU [N] (``eps`` added to the union), the enclosing box's width and
        height before clamping [N, 2], and the centre offset target - pred [N, 2].
    """
    inter_wh = (torch.min(pred[:, 2:], target[:, 2:]) -
                torch.max(pred[:, :2], target[:, :2])).clamp(min=0)
    overlap = inter_wh[:, 0] * inter_wh[:, 1]
    pred_area = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    target_area = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    ious = overlap / (pred_area + target_area - overlap + eps)
    enclose_wh = torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])
    centre_offset = ((target[:, :2] + target[:, 2:]) - (pred[:, :2] + pred[:, 2:])) / 2
    return ious, enclose_wh, centre_offset


def _centre_distance_penalty(enclose_wh: Tensor, centre_offset: Tensor, eps: float) -> Tensor:
    """Squared centre distance over the squared enclosing-box diagonal [N]."""
    enclose_wh = enclose_wh.clamp(min=0)
    diag2 = enclose_wh[:, 0]**2 + enclose_wh[:, 1]**2 + eps
    return (centre_offset[:, 0]**2 + centre_offset[:, 1]**2) / diag2


@weighted_loss
def diou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """``1 - DIoU``: IoU loss plus the normalised centre distance (Zheng et al., 2020).

    Args:
        pred (Tensor): Predicted boxes [N, 4].
        target (Tensor): Target boxes [N, 4].
        eps (float): Added to the union and to the squared diagonal.

    Returns:
        Tensor: Loss per box pair [N].
    """
    ious, enclose_wh, centre_offset = _overlap_terms(pred, target, eps)
    return 1 - (ious - _centre_distance_penalty(enclose_wh, centre_offset, eps))


@weighted_loss
def ciou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """``1 - CIoU``: DIoU plus an aspect-ratio term (Zheng et al., 2021).

    The aspect-ratio trade-off ``alpha`` is a constant (no gradient) and is only switched on
    where IoU > 0.5; the CIoU is clamped to [-1, 1].

    Args:
        pred (Tensor): Predicted boxes [N, 4].
        target (Tensor): Target boxes [N, 4].
        eps (float): Added to the union, the squared diagonal and the box heights.

    Returns:
        Tensor: Loss per box pair [N], in [0, 2].
    """
    ious, enclose_wh, centre_offset = _overlap_terms(pred, target, eps)
    pred_w, pred_h = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1] + eps
    target_w, target_h = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1] + eps
    aspect = (4 / math.pi**2) * (torch.atan(target_w / target_h) -
                                 torch.atan(pred_w / pred_h))**2
    with torch.no_grad():
        alpha = (ious > 0.5).float() * aspect / (1 - ious + aspect)
    cious = ious - (_centre_distance_penalty(enclose_wh, centre_offset, eps) + alpha * aspect)
    return 1 - cious.clamp(min=-1.0, max=1.0)


@weighted_loss
def eiou_loss(pred: Tensor, target: Tensor, smooth_point: float = 0.1,
              eps: float = 1e-7) -> Tensor:
    """Smooth extended-IoU loss (Peng & Yu, 2021), as in libfacedetection.train.

    The "intersection" is extended past disjoint boxes, where it turns negative, so the loss
    keeps a gradient; ``1 - intersection / union`` then goes through a smooth L1 with
    threshold ``smooth_point``.

    Args:
        pred (Tensor): Predicted boxes [N, 4].
        target (Tensor): Target boxes [N, 4].
        smooth_point (float): Smooth L1 threshold. Defaults to 0.1.
        eps (float): Added to the union. Defaults to 1e-7.

    Returns:
        Tensor: Loss per box pair [N].
    """
    px1, py1, px2, py2 = pred.unbind(dim=1)
    tx1, ty1, tx2, ty2 = target.unbind(dim=1)
    # Coordinates relative to the top-left corner of the enclosing box.
    left, top = torch.min(px1, tx1), torch.min(py1, ty1)
    ix1, iy1 = torch.max(px1, tx1) - left, torch.max(py1, ty1) - top
    ix2, iy2 = torch.min(px2, tx2) - left, torch.min(py2, ty2) - top
    # Overlapping boxes: (ix2 - ix1) * (iy2 - iy1). Disjoint ones: the same expression with
    # the swapped corners sorted, which is negative and grows with the gap.
    intersection = (ix2 * iy2 + torch.min(ix1, ix2) * torch.min(iy1, iy2) -
                    ix1 * torch.max(iy1, iy2) - torch.max(ix1, ix2) * iy1)
    union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - intersection + eps
    distance = 1 - intersection / union
    quadratic = (distance < smooth_point).detach().float()
    return (0.5 * quadratic * distance**2 / smooth_point + (1 - quadratic) *
            (distance - 0.5 * smooth_point))


@weighted_loss
def siou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7, neg_gamma: bool = False) -> Tensor:
    """``1 - SIoU``: IoU with angle, distance and shape costs (Gevorgyan, 2022), as YOLOv6.

    Args:
        pred (Tensor): Predicted boxes [N, 4].
        target (Tensor): Target boxes [N, 4].
        eps (float): Added to the union, heights and centre offsets; lower bound of the
            enclosing box's sides. Defaults to 1e-7.
        neg_gamma (bool): Use the paper's ``gamma = angle_cost - 2``; the default
            ``2 - angle_cost`` trains more stably. Defaults to False.

    Returns:
        Tensor: Loss per box pair [N], in [0, 2].
    """
    ious, enclose_wh, centre_offset = _overlap_terms(pred, target, eps)
    enclose_wh = enclose_wh.clamp(min=eps)  # eps, not 0: the distance cost divides by it
    pred_w, pred_h = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1] + eps
    target_w, target_h = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1] + eps

    offset_x, offset_y = centre_offset[:, 0] + eps, centre_offset[:, 1] + eps
    centre_dist = torch.sqrt(offset_x**2 + offset_y**2)
    sin_x, sin_y = offset_x.abs() / centre_dist, offset_y.abs() / centre_dist
    # The angle to the nearer axis: its sine is at most sqrt(2) / 2.
    sin_alpha = torch.where(sin_x > math.sqrt(2) / 2, sin_y, sin_x)
    angle_cost = torch.cos(torch.asin(sin_alpha) * 2 - math.pi / 2)

    gamma = angle_cost - 2 if neg_gamma else 2 - angle_cost
    rho_x = (offset_x / enclose_wh[:, 0])**2
    rho_y = (offset_y / enclose_wh[:, 1])**2
    distance_cost = 2 - torch.exp(gamma * rho_x) - torch.exp(gamma * rho_y)

    omega_w = (pred_w - target_w).abs() / torch.max(pred_w, target_w)
    omega_h = (pred_h - target_h).abs() / torch.max(pred_h, target_h)
    shape_cost = (1 - torch.exp(-omega_w))**4 + (1 - torch.exp(-omega_h))**4

    sious = ious - 0.5 * (distance_cost + shape_cost)
    return 1 - sious.clamp(min=-1.0, max=1.0)
