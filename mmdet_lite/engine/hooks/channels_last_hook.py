"""Train in channels-last (NHWC) memory format."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet_lite.models.utils import to_channels_last
from mmdet_lite.registry import HOOKS


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Move the model's parameters and its backbone input to channels-last before training.

    oneDNN's CPU convolutions (and cuDNN's under AMP) run their fastest kernels on NHWC
    tensors: a Faster R-CNN R-50-FPN train step at 640x640 on 2 CPU threads took 12% less
    time (docs/benchmark.md). The values computed are the same up to float rounding; the
    parameter objects, ``state_dict`` names and checkpoints do not change, and a checkpoint
    saved from a channels-last run loads into a plain model.

    ``tools/train.py --channels-last`` adds it; in a config:
    ``custom_hooks = [dict(type='ChannelsLastHook')]``. Under DDP the model is converted
    after wrapping (``before_run``), so DDP's gradient buckets keep the NCHW layout and
    gradients are copied into them; that combination is not covered by the tests.
    """

    priority = 'VERY_HIGH'  # before any other hook runs the model

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        to_channels_last(model)
        runner.logger.info('channels-last memory format: parameters and backbone input')
