"""Loss reduction helpers shared by all losses: element-wise weights, avg_factor, reduction."""
import functools
from typing import Callable, Optional

import torch
from torch import Tensor

_REDUCTIONS = ('none', 'mean', 'sum')


class LossArgumentError(ValueError, AssertionError):
    """A bad loss argument or input.

    Also an ``AssertionError``: mmdetection asserts these conditions, and callers (and its
    tests) catch AssertionError.
    """


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise LossArgumentError(f'reduction must be one of {_REDUCTIONS}, but got {reduction!r}')


def check_reduction_override(reduction_override: Optional[str]) -> None:
    """Reject a ``reduction_override`` other than None, ``'none'``, ``'mean'`` or ``'sum'``.

    Losses call this before touching their inputs, so a bad override is reported as such
    even when the inputs are malformed too.

    Args:
        reduction_override (str, optional): The per-call reduction.

    Raises:
        LossArgumentError: For any other value (an AssertionError too, as in mmdetection).
    """
    if reduction_override is not None and reduction_override not in _REDUCTIONS:
        raise LossArgumentError(f'reduction_override must be None or one of {_REDUCTIONS}, '
                                f'but got {reduction_override!r}')


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """Reduce an element-wise loss tensor.

    Args:
        loss (Tensor): Element-wise loss of any shape.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.

    Returns:
        Tensor: ``loss`` itself for ``'none'``, else a scalar. The mean of an empty loss is 0
        (still attached to the graph) rather than NaN, so images without targets train cleanly.
    """
    _check_reduction(reduction)
    if reduction == 'none':
        return loss
    if reduction == 'sum' or loss.numel() == 0:
        return loss.sum()
    return loss.mean()


def weight_reduce_loss(loss: Tensor,
                       weight: Optional[Tensor] = None,
                       reduction: str = 'mean',
                       avg_factor: Optional[float] = None) -> Tensor:
    """Apply element-wise weights, then reduce (mmdet semantics).

    With ``avg_factor`` and reduction ``'mean'`` the weighted sum is divided by ``avg_factor``
    (plus float32 eps) instead of by the number of elements; typically the number of positive
    samples. ``avg_factor`` with ``'sum'`` is ambiguous and rejected.

    Args:
        loss (Tensor): Element-wise loss, e.g. [N, C] or [N].
        weight (Tensor, optional): Weights broadcastable to ``loss``.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        avg_factor (float, optional): Denominator of the mean. Defaults to None.

    Returns:
        Tensor: Reduced loss (scalar) or the weighted element-wise loss for ``'none'``.
    """
    _check_reduction(reduction)
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return reduce_loss(loss, reduction)
    if reduction == 'mean':
        eps = torch.finfo(torch.float32).eps
        return loss.sum() / (avg_factor + eps)
    if reduction == 'sum':
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss


def weighted_loss(loss_func: Callable) -> Callable:
    """Turn an element-wise ``loss_func(pred, target, **kwargs)`` into a weighted, reduced loss.

    The decorated function has the signature
    ``loss_func(pred, target, weight=None, reduction='mean', avg_factor=None, **kwargs)``.

    Example:
        >>> @weighted_loss
        ... def l1(pred, target):
        ...     return (pred - target).abs()
        >>> l1(torch.tensor([0., 2.]), torch.tensor([1., 1.]), avg_factor=4)
        tensor(0.5000)
    """

    @functools.wraps(loss_func)
    def wrapper(pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                reduction: str = 'mean',
                avg_factor: Optional[float] = None,
                **kwargs) -> Tensor:
        loss = loss_func(pred, target, **kwargs)
        return weight_reduce_loss(loss, weight, reduction, avg_factor)

    return wrapper


def zero_weight_loss(pred: Tensor, weight: Optional[Tensor]) -> Optional[Tensor]:
    """A graph-connected zero when every weight is <= 0, else None.

    Regression losses skip the computation when no sample counts (e.g. no positives), and
    ``pred * weight`` keeps the result attached to ``pred`` so backward still works.

    Args:
        pred (Tensor): Predictions [N, 4].
        weight (Tensor, optional): Weights [N, 4] or [N].

    Returns:
        Tensor | None: ``(pred * weight).sum()`` (= 0) or None when some weight is positive.
    """
    if weight is None or torch.any(weight > 0):
        return None
    if pred.dim() == weight.dim() + 1:
        weight = weight.unsqueeze(1)
    return (pred * weight).sum()
