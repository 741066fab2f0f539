"""Switch a test run to the CPU inference fast path once the checkpoint is loaded."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet_lite.models.utils import compile_detector, optimize_for_inference
from mmdet_lite.registry import HOOKS


@HOOKS.register_module()
class FastInferenceHook(Hook):
    """Fold BN, go channels-last, predict under ``torch.inference_mode`` (and optionally
    ``torch.compile``) for ``runner.test()``; ``tools/test.py`` registers it by default.

    ``before_test`` runs after mmengine's Runner has loaded the checkpoint, so the BN
    statistics folded are the trained ones. It changes the model in place: register it
    only for a test run, never in training (the validation loop would then train on a
    folded model).

    Args:
        fuse_bn (bool): Fold eval BatchNorm into the conv before it. Defaults to True.
        channels_last (bool): Channels-last parameters and inputs. Defaults to True.
        inference_mode (bool): Run ``test_step`` under ``torch.inference_mode`` instead of
            the test loop's ``torch.no_grad``. Defaults to True.
        compile (bool): ``torch.compile`` the backbone, neck and dense heads. Defaults to
            False (minutes of compilation, paid back only on long test sets).
        compile_cfg (dict, optional): ``torch.compile`` keyword arguments.
    """

    priority = 'LOW'  # after the checkpoint-fit check, before the loop starts

    def __init__(self, fuse_bn: bool = True, channels_last: bool = True,
                 inference_mode: bool = True, compile: bool = False,
                 compile_cfg: Optional[dict] = None) -> None:
        self.fuse_bn = fuse_bn
        self.channels_last = channels_last
        self.inference_mode = inference_mode
        self.compile = compile
        self.compile_cfg = dict(compile_cfg or {})

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        detector = getattr(model, 'module', model)  # DetTTAModel wraps the detector
        optimize_for_inference(detector, fuse_bn=self.fuse_bn,
                               channels_last=self.channels_last)
        if self.compile:
            compiled = compile_detector(detector, **self.compile_cfg)
            runner.logger.info(f'torch.compile: {", ".join(compiled)}')
        if self.inference_mode:
            test_step = runner.model.test_step

            def test_step_in_inference_mode(data):
                with torch.inference_mode():
                    return test_step(data)

            # an instance attribute: the class's test_step stays as it is
            runner.model.test_step = test_step_in_inference_mode
        runner.logger.info(
            f'fast inference path: fuse_bn {self.fuse_bn}, channels_last '
            f'{self.channels_last}, inference_mode {self.inference_mode}, '
            f'compile {self.compile}')
