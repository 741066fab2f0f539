"""Top-k classification accuracy, reported next to the classification loss."""
from typing import List, Optional, Tuple, Union

from torch import Tensor, nn

from .utils import LossArgumentError


class TopkTypeError(TypeError, AssertionError):
    """``topk`` is neither an int nor a tuple of ints (an AssertionError as in mmdetection)."""


def accuracy(pred: Tensor,
             target: Tensor,
             topk: Union[int, Tuple[int, ...]] = 1,
             thresh: Optional[float] = None) -> Union[Tensor, List[Tensor]]:
    """Percentage of samples whose target is among the top-k predictions.

    Args:
        pred (Tensor): Scores [N, C].
        target (Tensor): Labels [N].
        topk (int | tuple[int]): k, or several k values. Defaults to 1.
        thresh (float, optional): A top-k hit also needs a score above this. Defaults to None.

    Returns:
        Tensor | list[Tensor]: Accuracy in percent, shape [1] (one per k for a tuple); 0 for
        empty input.
    """
    if isinstance(topk, int):
        topks, return_single = (topk, ), True
    elif isinstance(topk, tuple) and all(isinstance(k, int) for k in topk):
        topks, return_single = topk, False
    else:
        raise TopkTypeError(f'topk must be an int or a tuple of ints, but got {topk!r}')
    if pred.size(0) == 0:
        accs = [pred.new_tensor(0.) for _ in topks]
        return accs[0] if return_single else accs
    if pred.dim() != 2 or target.dim() != 1 or pred.size(0) != target.size(0):
        raise LossArgumentError(f'accuracy expects pred [N, C] and target [N], but got '
                                f'{tuple(pred.shape)} and {tuple(target.shape)}')
    maxk = max(topks)
    if maxk > pred.size(1):
        raise LossArgumentError(f'topk {maxk} exceeds the number of classes {pred.size(1)}')
    pred_value, pred_label = pred.topk(maxk, dim=1)  # [N, maxk] each
    correct = pred_label.t() == target.view(1, -1)  # [maxk, N]
    if thresh is not None:
        correct = correct & (pred_value > thresh).t()
    accs = [correct[:k].reshape(-1).float().sum(0, keepdim=True) * (100.0 / pred.size(0))
            for k in topks]
    return accs[0] if return_single else accs


class Accuracy(nn.Module):
    """Module form of :func:`accuracy`.

    Args:
        topk (int | tuple[int]): k values. Defaults to (1, ).
        thresh (float, optional): Score threshold for a hit. Defaults to None.
    """

    def __init__(self, topk: Union[int, Tuple[int, ...]] = (1, ),
                 thresh: Optional[float] = None) -> None:
        super().__init__()
        self.topk = topk
        self.thresh = thresh

    def forward(self, pred: Tensor, target: Tensor) -> Union[Tensor, List[Tensor]]:
        """Return the accuracy (percent) of ``pred`` [N, C] against ``target`` [N]."""
        return accuracy(pred, target, self.topk, self.thresh)
