"""Losses (registered in MODELS) and their reduction helpers."""
from .accuracy import Accuracy, accuracy
from .cross_entropy_loss import (CrossEntropyLoss, binary_cross_entropy, cross_entropy,
                                 mask_cross_entropy)
from .focal_loss import FocalLoss, sigmoid_focal_loss
from .iou_loss import GIoULoss, giou_loss
from .smooth_l1_loss import L1Loss, SmoothL1Loss, l1_loss, smooth_l1_loss
from .utils import reduce_loss, weight_reduce_loss, weighted_loss, zero_weight_loss

__all__ = [
    'Accuracy', 'accuracy', 'CrossEntropyLoss', 'binary_cross_entropy', 'cross_entropy',
    'mask_cross_entropy', 'FocalLoss', 'sigmoid_focal_loss', 'GIoULoss', 'giou_loss', 'L1Loss',
    'SmoothL1Loss', 'l1_loss', 'smooth_l1_loss', 'reduce_loss', 'weight_reduce_loss',
    'weighted_loss', 'zero_weight_loss'
]
