"""Seesaw loss for long-tailed instance segmentation (Wang et al., CVPR 2021)."""
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .accuracy import accuracy
from .cross_entropy_loss import cross_entropy
from .utils import LossArgumentError, check_reduction_override, weight_reduce_loss


def seesaw_ce_loss(cls_score: Tensor,
                   labels: Tensor,
                   label_weights: Optional[Tensor],
                   cum_samples: Tensor,
                   num_classes: int,
                   p: float,
                   q: float,
                   eps: float,
                   reduction: str = 'mean',
                   avg_factor: Optional[float] = None) -> Tensor:
    """Softmax cross entropy with the seesaw re-weighting of the negative logits.

    For a sample of class i, the logit of every other class j is shifted by
    ``log(M_ij * C_ij)``: the mitigation factor ``M_ij = (N_j / N_i)**p`` where class j has
    seen fewer samples than i (else 1), and the compensation factor
    ``C_ij = (s_j / s_i)**q`` where j scores higher than i (else 1).

    Args:
        cls_score (Tensor): Class logits [N, C] (foreground classes only).
        labels (Tensor): Class indices [N] in 0..C-1.
        label_weights (Tensor, optional): Per-sample weights [N].
        cum_samples (Tensor): Samples seen so far per class [C].
        num_classes (int): C.
        p (float): Power of the mitigation factor; 0 disables it.
        q (float): Power of the compensation factor; 0 disables it.
        eps (float): Lower bound of the own-class score in the compensation ratio.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        avg_factor (float, optional): Denominator of the mean.

    Returns:
        Tensor: Scalar loss, or [N] for reduction ``'none'``.
    """
    if cls_score.size(-1) != num_classes or len(cum_samples) != num_classes:
        raise LossArgumentError(f'seesaw_ce_loss expects {num_classes} class scores and '
                                f'counts, but got {cls_score.size(-1)} and {len(cum_samples)}')
    onehot_labels = F.one_hot(labels, num_classes)
    seesaw_weights = cls_score.new_ones(onehot_labels.size())
    if p > 0:
        # ratio[i, j] = N_j / N_i
        ratio = cum_samples[None, :].clamp(min=1) / cum_samples[:, None].clamp(min=1)
        rarer = (ratio < 1.0).float()
        mitigation = ratio.pow(p) * rarer + (1 - rarer)
        seesaw_weights = seesaw_weights * mitigation[labels.long(), :]
    if q > 0:
        scores = F.softmax(cls_score.detach(), dim=1)
        own_scores = scores[torch.arange(len(scores), device=scores.device), labels.long()]
        score_ratio = scores / own_scores[:, None].clamp(min=eps)
        higher = (score_ratio > 1.0).float()
        seesaw_weights = seesaw_weights * (score_ratio.pow(q) * higher + (1 - higher))
    cls_score = cls_score + seesaw_weights.log() * (1 - onehot_labels)
    loss = F.cross_entropy(cls_score, labels, weight=None, reduction='none')
    if label_weights is not None:
        label_weights = label_weights.float()
    return weight_reduce_loss(loss, weight=label_weights, reduction=reduction,
                              avg_factor=avg_factor)


@MODELS.register_module()
class SeesawLoss(nn.Module):
    """Seesaw loss: a class-balanced softmax CE plus a 2-way objectness CE.

    The classifier has ``num_classes + 2`` outputs: class logits, then (foreground,
    background) objectness logits. ``custom_cls_channels``, ``custom_activation`` and
    ``custom_accuracy`` tell a bbox head to use :meth:`get_cls_channels`,
    :meth:`get_activation` and :meth:`get_accuracy`.

    Args:
        use_sigmoid (bool): Must be False. Defaults to False.
        p (float): Power of the mitigation factor. Defaults to 0.8.
        q (float): Power of the compensation factor. Defaults to 2.0.
        num_classes (int): Number of classes. Defaults to 1203 (LVIS v1).
        eps (float): Lower bound of the own-class score. Defaults to 1e-2.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        return_dict (bool): Return ``{'loss_cls_objectness', 'loss_cls_classes'}`` rather
            than their sum. Defaults to True.
    """

    def __init__(self,
                 use_sigmoid: bool = False,
                 p: float = 0.8,
                 q: float = 2.0,
                 num_classes: int = 1203,
                 eps: float = 1e-2,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 return_dict: bool = True) -> None:
        super().__init__()
        if use_sigmoid:
            raise LossArgumentError('SeesawLoss only supports use_sigmoid=False')
        self.use_sigmoid = False
        self.p = p
        self.q = q
        self.num_classes = num_classes
        self.eps = eps
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.return_dict = return_dict
        self.cls_criterion = seesaw_ce_loss
        # Samples seen per label, background (index num_classes) included.
        self.register_buffer('cum_samples', torch.zeros(self.num_classes + 1, dtype=torch.float))
        self.custom_cls_channels = True
        self.custom_activation = True
        self.custom_accuracy = True

    def _split_cls_score(self, cls_score: Tensor) -> Tuple[Tensor, Tensor]:
        """Split [..., C + 2] scores into class scores [..., C] and objectness [..., 2]."""
        if cls_score.size(-1) != self.num_classes + 2:
            raise LossArgumentError(f'SeesawLoss expects {self.num_classes + 2} scores per '
                                    f'sample, but got {cls_score.size(-1)}')
        return cls_score[..., :-2], cls_score[..., -2:]

    def get_cls_channels(self, num_classes: int) -> int:
        """Number of classifier outputs for ``num_classes`` classes: ``num_classes + 2``."""
        if num_classes != self.num_classes:
            raise LossArgumentError(f'num_classes {num_classes} differs from the loss\'s '
                                    f'{self.num_classes}')
        return num_classes + 2

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """Scores [..., C + 1]: class softmax times the foreground probability, then the
        background probability.

        Args:
            cls_score (Tensor): Logits [..., C + 2].

        Returns:
            Tensor: Probabilities [..., C + 1] that sum to 1.
        """
        cls_score_classes, cls_score_objectness = self._split_cls_score(cls_score)
        score_classes = F.softmax(cls_score_classes, dim=-1)
        score_objectness = F.softmax(cls_score_objectness, dim=-1)
        score_pos = score_objectness[..., [0]]
        score_neg = score_objectness[..., [1]]
        return torch.cat([score_classes * score_pos, score_neg], dim=-1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """Objectness accuracy over all samples and class accuracy over the foreground ones.

        Args:
            cls_score (Tensor): Logits [N, C + 2].
            labels (Tensor): Labels [N] in 0..C (C = background).

        Returns:
            dict[str, Tensor]: ``acc_objectness`` and ``acc_classes`` (percent).
        """
        pos_inds = labels < self.num_classes
        obj_labels = (labels == self.num_classes).long()
        cls_score_classes, cls_score_objectness = self._split_cls_score(cls_score)
        return dict(
            acc_objectness=accuracy(cls_score_objectness, obj_labels),
            acc_classes=accuracy(cls_score_classes[pos_inds], labels[pos_inds]))

    def forward(self,
                cls_score: Tensor,
                labels: Tensor,
                label_weights: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Union[Tensor, Dict[str, Tensor]]:
        """Compute the loss and update the per-class sample counts.

        Args:
            cls_score (Tensor): Logits [N, C + 2].
            labels (Tensor): Labels [N] in 0..C (C = background).
            label_weights (Tensor, optional): Per-sample weights [N].
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor | dict[str, Tensor]: With ``return_dict``, ``loss_cls_objectness`` and
            ``loss_cls_classes``; otherwise their sum.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        if cls_score.size(-1) != self.num_classes + 2:
            raise LossArgumentError(f'SeesawLoss expects {self.num_classes + 2} scores per '
                                    f'sample, but got {cls_score.size(-1)}')
        pos_inds = labels < self.num_classes
        obj_labels = (labels == self.num_classes).long()  # 0: foreground, 1: background
        self.cum_samples += torch.bincount(
            labels, minlength=self.num_classes + 1).to(self.cum_samples.dtype)
        if label_weights is not None:
            label_weights = label_weights.float()
        else:
            label_weights = labels.new_ones(labels.size(), dtype=torch.float)
        cls_score_classes, cls_score_objectness = self._split_cls_score(cls_score)
        if pos_inds.sum() > 0:
            loss_cls_classes = self.loss_weight * self.cls_criterion(
                cls_score_classes[pos_inds], labels[pos_inds], label_weights[pos_inds],
                self.cum_samples[:self.num_classes], self.num_classes, self.p, self.q,
                self.eps, reduction, avg_factor)
        else:
            loss_cls_classes = cls_score_classes[pos_inds].sum()
        loss_cls_objectness = self.loss_weight * cross_entropy(
            cls_score_objectness, obj_labels, label_weights, reduction, avg_factor)
        if self.return_dict:
            return dict(loss_cls_objectness=loss_cls_objectness,
                        loss_cls_classes=loss_cls_classes)
        return loss_cls_classes + loss_cls_objectness
