"""Distributed helpers shared by the heads (mmdetection's ``mmdet.utils.dist_utils``)."""
from mmengine.dist import all_reduce
from torch import Tensor


def reduce_mean(tensor: Tensor) -> Tensor:
    """Mean of ``tensor`` over the distributed ranks; a copy of it when not distributed.

    Heads normalise their losses by counts (positive samples, avg factors) averaged over
    ranks this way, so that every rank divides by the same number.

    Args:
        tensor (Tensor): Any shape; every rank passes the same shape.

    Returns:
        Tensor: A new tensor of that shape (the input is left unchanged).
    """
    tensor = tensor.clone()
    all_reduce(tensor, op='mean')
    return tensor
