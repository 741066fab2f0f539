"""Parameter schedulers of mmdetection that mmengine does not provide."""
from .quadratic_warmup import (QuadraticWarmupLR, QuadraticWarmupMomentum,
                               QuadraticWarmupParamScheduler, SchedulerArgumentError)

__all__ = ['QuadraticWarmupParamScheduler', 'QuadraticWarmupLR', 'QuadraticWarmupMomentum',
           'SchedulerArgumentError']
