"""Cross-entropy losses: softmax CE, sigmoid (binary) CE and per-class mask CE."""
import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .accuracy import accuracy
from .utils import LossArgumentError, check_reduction_override, weight_reduce_loss

# torch's own default for "no ignored label".
_TORCH_IGNORE_INDEX = -100


def cross_entropy(pred: Tensor,
                  label: Tensor,
                  weight: Optional[Tensor] = None,
                  reduction: str = 'mean',
                  avg_factor: Optional[float] = None,
                  class_weight: Optional[Tensor] = None,
                  ignore_index: Optional[int] = -100,
                  avg_non_ignore: bool = False) -> Tensor:
    """Softmax cross entropy.

    Unlike ``F.cross_entropy(weight=class_weight)``, the mean divides by the number of samples
    (or ``avg_factor``), not by the sum of class weights (mmdet semantics).

    Args:
        pred (Tensor): Class logits [N, C].
        label (Tensor): Class indices [N] (int64).
        weight (Tensor, optional): Per-sample weights [N].
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
        avg_factor (float, optional): Denominator of the mean.
        class_weight (Tensor, optional): Per-class weights [C].
        ignore_index (int, optional): Label whose samples get zero loss; None means -100.
        avg_non_ignore (bool): Average over non-ignored samples only (when ``avg_factor`` is
            not given and reduction is ``'mean'``).

    Returns:
        Tensor: Scalar loss, or [N] for reduction ``'none'``.
    """
    ignore_index = _TORCH_IGNORE_INDEX if ignore_index is None else ignore_index
    loss = F.cross_entropy(pred, label, weight=class_weight, reduction='none',
                           ignore_index=ignore_index)  # [N]
    if avg_factor is None and avg_non_ignore and reduction == 'mean':
        avg_factor = label.numel() - (label == ignore_index).sum().item()
    if weight is not None:
        weight = weight.float()
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def _expand_onehot_labels(labels: Tensor, label_weights: Optional[Tensor], label_channels: int,
                          ignore_index: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Turn class indices [N] into one-hot targets [N, C].

    A label equal to ``label_channels`` (the background index) becomes an all-zero row: a
    negative for every class. Ignored (or negative) labels get zero weight.

    Returns:
        tuple: one-hot labels [N, C], their weights [N, C] and the valid mask [N, C] (float).
    """
    bin_labels = labels.new_zeros((labels.size(0), label_channels))
    valid_mask = (labels >= 0) & (labels != ignore_index)
    inds = torch.nonzero(valid_mask & (labels < label_channels), as_tuple=True)[0]
    bin_labels[inds, labels[inds]] = 1
    valid_mask = valid_mask.view(-1, 1).expand(labels.size(0), label_channels).float()
    if label_weights is None:
        bin_label_weights = valid_mask
    else:
        bin_label_weights = label_weights.view(-1, 1).expand(-1, label_channels) * valid_mask
    return bin_labels, bin_label_weights, valid_mask


def binary_cross_entropy(pred: Tensor,
                         label: Tensor,
                         weight: Optional[Tensor] = None,
                         reduction: str = 'mean',
                         avg_factor: Optional[float] = None,
                         class_weight: Optional[Tensor] = None,
                         ignore_index: Optional[int] = -100,
                         avg_non_ignore: bool = False) -> Tensor:
    """Sigmoid (binary) cross entropy on logits.

    Args:
        pred (Tensor): Logits [N, C] (or [N] / [N, 1] for a single class).
        label (Tensor): Either class indices [N], where ``C`` means background, expanded to
            one-hot; or binary targets with the same shape as ``pred``.
        weight (Tensor, optional): Per-sample weights [N] (index labels) or element-wise.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
        avg_factor (float, optional): Denominator of the mean.
        class_weight (Tensor, optional): Weight of the positive term per class [C]
            (``pos_weight`` of ``F.binary_cross_entropy_with_logits``).
        ignore_index (int, optional): Label to ignore; None means -100.
        avg_non_ignore (bool): Average over valid elements only.

    Returns:
        Tensor: Scalar loss, or element-wise [N, C] for reduction ``'none'``.
    """
    ignore_index = _TORCH_IGNORE_INDEX if ignore_index is None else ignore_index
    if pred.dim() != label.dim():
        label, weight, valid_mask = _expand_onehot_labels(label, weight, pred.size(-1),
                                                          ignore_index)
    else:
        valid_mask = ((label >= 0) & (label != ignore_index)).float()
        weight = valid_mask if weight is None else weight * valid_mask
    if avg_factor is None and avg_non_ignore and reduction == 'mean':
        avg_factor = valid_mask.sum().item()
    loss = F.binary_cross_entropy_with_logits(pred, label.float(), pos_weight=class_weight,
                                              reduction='none')
    return weight_reduce_loss(loss, weight.float(), reduction, avg_factor)


def mask_cross_entropy(pred: Tensor,
                       target: Tensor,
                       label: Tensor,
                       reduction: str = 'mean',
                       avg_factor: Optional[float] = None,
                       class_weight: Optional[Tensor] = None,
                       ignore_index: Optional[int] = None,
                       **kwargs) -> Tensor:
    """Binary cross entropy between each RoI's mask logits of its own class and its target.

    Args:
        pred (Tensor): Mask logits [N, C, h, w] (class-specific) or [N, 1, h, w] (agnostic).
        target (Tensor): Binary mask targets [N, h, w].
        label (Tensor): Class of each RoI [N]; selects the channel of ``pred``.
        reduction (str): Only ``'mean'`` is supported.
        avg_factor (float, optional): Not supported (must be None).
        class_weight (Tensor, optional): Element weights passed to BCE.
        ignore_index (int, optional): Not supported (must be None).

    Returns:
        Tensor: Loss of shape [1] (mean over all RoI pixels).
    """
    if ignore_index is not None:
        raise LossArgumentError('mask_cross_entropy does not support ignore_index')
    if reduction != 'mean' or avg_factor is not None:
        raise LossArgumentError('mask_cross_entropy only supports reduction="mean" without '
                                f'avg_factor, but got reduction={reduction!r}, '
                                f'avg_factor={avg_factor}')
    if pred.numel() == 0:
        return pred.sum()[None] * 0
    rois = torch.arange(pred.size(0), dtype=torch.long, device=pred.device)
    pred_slice = pred[rois, label]  # [N, h, w]
    return F.binary_cross_entropy_with_logits(pred_slice, target.float(), weight=class_weight,
                                              reduction='mean')[None]


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Cross-entropy loss module: softmax, sigmoid or mask flavour.

    Args:
        use_sigmoid (bool): Use sigmoid BCE (``binary_cross_entropy``). Defaults to False.
        use_mask (bool): Use ``mask_cross_entropy``. Defaults to False.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        class_weight (list[float], optional): Per-class weights. Defaults to None.
        ignore_index (int, optional): Label to ignore. Defaults to None.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        avg_non_ignore (bool): Average only over non-ignored elements. Defaults to False.
    """

    def __init__(self,
                 use_sigmoid: bool = False,
                 use_mask: bool = False,
                 reduction: str = 'mean',
                 class_weight: Optional[List[float]] = None,
                 ignore_index: Optional[int] = None,
                 loss_weight: float = 1.0,
                 avg_non_ignore: bool = False) -> None:
        super().__init__()
        if use_sigmoid and use_mask:
            raise LossArgumentError(
                'CrossEntropyLoss: use_sigmoid and use_mask can not both be True')
        self.use_sigmoid = use_sigmoid
        self.use_mask = use_mask
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.class_weight = class_weight
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        if ignore_index is not None and not avg_non_ignore and reduction == 'mean':
            warnings.warn('Default ``avg_non_ignore`` is False, if you would like to ignore the '
                          'certain label and average loss over non-ignore labels, which is the '
                          'same with PyTorch official cross_entropy, set '
                          '``avg_non_ignore=True``.')
        if self.use_sigmoid:
            self.cls_criterion = binary_cross_entropy
        elif self.use_mask:
            self.cls_criterion = mask_cross_entropy
        else:
            self.cls_criterion = cross_entropy

    def extra_repr(self) -> str:
        return f'avg_non_ignore={self.avg_non_ignore}'

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = None,
                **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            cls_score (Tensor): Logits, [N, C] (or [N, C, h, w] mask logits with ``use_mask``).
            label (Tensor): Class indices [N], binary targets shaped like ``cls_score``
                (sigmoid), or mask targets [N, h, w] with ``use_mask``.
            weight (Tensor, optional): Per-sample weights; with ``use_mask`` this slot holds
                the RoI class indices [N] that pick the mask channel (mmdet's convention).
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.
            ignore_index (int, optional): Overrides ``self.ignore_index`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        if ignore_index is None:
            ignore_index = self.ignore_index
        class_weight = None
        if self.class_weight is not None:
            class_weight = cls_score.new_tensor(self.class_weight)
        return self.loss_weight * self.cls_criterion(
            cls_score,
            label,
            weight,
            class_weight=class_weight,
            reduction=reduction,
            avg_factor=avg_factor,
            ignore_index=ignore_index,
            avg_non_ignore=self.avg_non_ignore,
            **kwargs)


@MODELS.register_module()
class CrossEntropyCustomLoss(CrossEntropyLoss):
    """Cross entropy whose classifier layout is chosen by the loss (V3Det).

    Softmax: ``num_classes + 1`` outputs (the last is background). Sigmoid: ``num_classes``
    outputs, the background score being ``1 - sum`` of the class probabilities.

    Args:
        use_sigmoid (bool): Use sigmoid BCE. Defaults to False.
        use_mask (bool): Use ``mask_cross_entropy``. Defaults to False.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        num_classes (int): Number of classes; must be set (not -1). Defaults to -1.
        class_weight (list[float], optional): Per-class weights. Defaults to None.
        ignore_index (int, optional): Label to ignore. Defaults to None.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        avg_non_ignore (bool): Average only over non-ignored elements. Defaults to False.
    """

    def __init__(self,
                 use_sigmoid: bool = False,
                 use_mask: bool = False,
                 reduction: str = 'mean',
                 num_classes: int = -1,
                 class_weight: Optional[List[float]] = None,
                 ignore_index: Optional[int] = None,
                 loss_weight: float = 1.0,
                 avg_non_ignore: bool = False) -> None:
        super().__init__(use_sigmoid, use_mask, reduction, class_weight, ignore_index,
                         loss_weight, avg_non_ignore)
        if num_classes == -1:
            raise LossArgumentError('CrossEntropyCustomLoss needs num_classes')
        self.num_classes = num_classes
        self.custom_cls_channels = True
        self.custom_activation = True
        self.custom_accuracy = True

    def get_cls_channels(self, num_classes: int) -> int:
        """Classifier outputs: ``num_classes + 1`` (softmax) or ``num_classes`` (sigmoid)."""
        if num_classes != self.num_classes:
            raise LossArgumentError(f'num_classes {num_classes} differs from the loss\'s '
                                    f'{self.num_classes}')
        return num_classes if self.use_sigmoid else num_classes + 1

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """Probabilities [N, num_classes + 1], background last.

        Args:
            cls_score (Tensor): Logits [N, num_classes (+ 1)].

        Returns:
            Tensor: Class probabilities then the background probability.
        """
        fine_cls_score = cls_score[:, :self.num_classes]
        if not self.use_sigmoid:
            return F.softmax(torch.cat([fine_cls_score, cls_score[:, [-1]]], dim=-1), dim=-1)
        score_classes = fine_cls_score.sigmoid()
        score_neg = (1 - score_classes.sum(dim=1, keepdim=True)).clamp(min=0, max=1)
        return torch.cat([score_classes, score_neg], dim=1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """Top-1 accuracy over the foreground samples: ``{'acc_classes': Tensor}``."""
        pos_inds = labels < self.num_classes
        return dict(acc_classes=accuracy(cls_score[:, :self.num_classes][pos_inds],
                                         labels[pos_inds]))
