# default_runtime.py with the logging and checkpointing of the short shapes runs.
_base_ = './default_runtime.py'

default_hooks = dict(
    logger=dict(interval=20),
    # every epoch, plus the best by the first metric (e.g. coco/bbox_mAP)
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='auto'))
randomness = dict(seed=0)
