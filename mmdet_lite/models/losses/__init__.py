"""Losses (registered in MODELS) and their reduction helpers."""
from .accuracy import Accuracy, accuracy
from .balanced_l1_loss import BalancedL1Loss, balanced_l1_loss
from .cross_entropy_loss import (CrossEntropyCustomLoss, CrossEntropyLoss, binary_cross_entropy,
                                 cross_entropy, mask_cross_entropy)
from .dice_loss import DiceLoss, dice_loss
from .focal_loss import FocalCustomLoss, FocalLoss, sigmoid_focal_loss
from .gaussian_focal_loss import GaussianFocalLoss, gaussian_focal_loss
from .gfocal_loss import (DistributionFocalLoss, QualityFocalLoss, distribution_focal_loss,
                          quality_focal_loss)
from .ghm_loss import GHMC, GHMR
from .iou_loss import (BoundedIoULoss, CIoULoss, DIoULoss, EIoULoss, GIoULoss, IoULoss,
                       SIoULoss, bounded_iou_loss, ciou_loss, diou_loss, eiou_loss, giou_loss,
                       iou_loss, siou_loss)
from .kd_loss import KnowledgeDistillationKLDivLoss, knowledge_distillation_kl_div_loss
from .l2_loss import L2Loss, l2_loss
from .mse_loss import MSELoss, mse_loss
from .seesaw_loss import SeesawLoss, seesaw_ce_loss
from .smooth_l1_loss import L1Loss, SmoothL1Loss, l1_loss, smooth_l1_loss
from .utils import (LossArgumentError, check_reduction_override, reduce_loss,
                    weight_reduce_loss, weighted_loss, zero_weight_loss)
from .varifocal_loss import VarifocalLoss, varifocal_loss

__all__ = [
    'Accuracy', 'accuracy', 'BalancedL1Loss', 'balanced_l1_loss', 'CrossEntropyLoss',
    'CrossEntropyCustomLoss', 'FocalCustomLoss',
    'binary_cross_entropy', 'cross_entropy', 'mask_cross_entropy', 'DiceLoss', 'dice_loss',
    'FocalLoss', 'sigmoid_focal_loss', 'GaussianFocalLoss', 'gaussian_focal_loss',
    'DistributionFocalLoss', 'QualityFocalLoss', 'distribution_focal_loss',
    'quality_focal_loss', 'GHMC', 'GHMR', 'BoundedIoULoss', 'CIoULoss', 'DIoULoss', 'EIoULoss',
    'GIoULoss', 'IoULoss', 'SIoULoss', 'bounded_iou_loss', 'ciou_loss', 'diou_loss',
    'eiou_loss', 'giou_loss', 'iou_loss', 'siou_loss', 'KnowledgeDistillationKLDivLoss',
    'knowledge_distillation_kl_div_loss', 'L2Loss', 'l2_loss', 'MSELoss', 'mse_loss',
    'SeesawLoss', 'seesaw_ce_loss', 'L1Loss', 'SmoothL1Loss', 'l1_loss', 'smooth_l1_loss',
    'LossArgumentError', 'check_reduction_override', 'reduce_loss', 'weight_reduce_loss',
    'weighted_loss', 'zero_weight_loss', 'VarifocalLoss', 'varifocal_loss'
]
