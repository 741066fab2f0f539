# Runtime settings shared by every config (mmdetection 3.x values, scope mmdet_lite).
default_scope = 'mmdet_lite'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False

# Fail fast, naming the config keys to change, when a head's num_classes does not match the
# dataset's classes (num_classes counts object classes only; no background).
# Stop at the first NaN/inf loss, naming the iteration and the loss terms, instead of
# training on with NaN weights (skip_nonfinite=True skips such steps and counts them).
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='NonFiniteLossHook', skip_nonfinite=False),
    # a progress bar over validation/test batches (the logger prints only every 50)
    dict(type='EvalProgressBarHook'),
]
