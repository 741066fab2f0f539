"""Training hooks."""
from .checkpoint_hook import CheckpointHook
from .nonfinite_loss_hook import NonFiniteLossHook
from .num_class_check_hook import NumClassCheckHook, check_num_classes
from .progress_bar_hook import EvalProgressBarHook
from .visualization_hook import DetVisualizationHook

__all__ = ['NumClassCheckHook', 'check_num_classes', 'DetVisualizationHook', 'CheckpointHook',
           'NonFiniteLossHook', 'EvalProgressBarHook']
