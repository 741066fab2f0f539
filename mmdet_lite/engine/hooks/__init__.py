"""Training hooks."""
from .checkloss_hook import CheckInvalidLossHook
from .checkpoint_hook import CheckpointHook
from .mean_teacher_hook import MeanTeacherHook
from .nonfinite_loss_hook import NonFiniteLossHook
from .num_class_check_hook import NumClassCheckHook, check_num_classes
from .pipeline_switch_hook import PipelineSwitchHook
from .progress_bar_hook import EvalProgressBarHook
from .set_epoch_info_hook import SetEpochInfoHook
from .sync_norm_hook import SyncNormHook
from .visualization_hook import DetVisualizationHook
from .yolox_mode_switch_hook import YOLOXModeSwitchHook

__all__ = ['NumClassCheckHook', 'check_num_classes', 'DetVisualizationHook', 'CheckpointHook',
           'NonFiniteLossHook', 'EvalProgressBarHook', 'CheckInvalidLossHook', 'MeanTeacherHook',
           'PipelineSwitchHook', 'SetEpochInfoHook', 'SyncNormHook', 'YOLOXModeSwitchHook']

# The CPU inference fast path for tools/test.py.
from .fast_inference_hook import FastInferenceHook  # noqa: E402

__all__ += ['FastInferenceHook']

# Channels-last training (tools/train.py --channels-last).
from .channels_last_hook import ChannelsLastHook  # noqa: E402

__all__ += ['ChannelsLastHook']
