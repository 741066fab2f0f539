"""ChannelsLastHook: channels-last parameters and input, the same losses and gradients."""
import copy
from types import SimpleNamespace

import torch
from mmengine.logging import MMLogger

from mmdet_lite.analysis.benchmark import synthetic_gt
from mmdet_lite.analysis.benchmark_modes.random_detector import (build_random_detector,
                                                                 detector_inputs)
from mmdet_lite.apis.cli import load_config
from mmdet_lite.engine.hooks import ChannelsLastHook
from mmdet_lite.registry import HOOKS

CONFIG = 'configs/shapes/faster-rcnn_r18_fpn_shapes.py'
SHAPE = (128, 128)


def _losses_and_grads(model, inputs, samples):
    torch.manual_seed(0)  # the same RPN / RoI sampling in both models
    model.zero_grad()
    losses = model(inputs, samples, mode='loss')
    total, log_vars = model.parse_losses(losses)
    total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return log_vars, grads


def test_hook_trains_in_channels_last_with_the_plain_losses_and_gradients():
    model_cfg = load_config(CONFIG, None).model
    torch.manual_seed(1)
    plain = build_random_detector(model_cfg).train()
    converted = copy.deepcopy(plain)
    params_before = [id(p) for p in converted.parameters()]
    hook = HOOKS.build(dict(type='ChannelsLastHook'))
    assert isinstance(hook, ChannelsLastHook)
    hook.before_run(SimpleNamespace(model=converted, logger=MMLogger.get_current_instance()))

    # the same parameter objects (an optimizer built before keeps them), now NHWC
    assert [id(p) for p in converted.parameters()] == params_before
    convs = [p for p in converted.parameters() if p.dim() == 4]
    assert convs
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    # (a 1x1 kernel is both; every 3x3 kernel now has the channels innermost)
    assert all(p.stride(1) == 1 for p in convs if p.shape[1] > 1 and p.shape[2] > 1)
    seen = []
    converted.backbone.conv1.register_forward_pre_hook(lambda m, args: seen.append(
        args[0].is_contiguous(memory_format=torch.channels_last)))

    gt = synthetic_gt(2, 3, SHAPE, model_cfg.roi_head.bbox_head.num_classes)
    inputs, samples = detector_inputs(gt, SHAPE, with_masks=False)
    expected_losses, expected_grads = _losses_and_grads(plain, inputs, samples)
    losses, grads = _losses_and_grads(converted, inputs, samples)
    assert seen == [True]  # the input reached the backbone channels-last
    assert losses.keys() == expected_losses.keys() and 'loss_cls' in losses
    for key, value in expected_losses.items():
        assert abs(losses[key] - value) <= 1e-4 * max(1.0, abs(value)), key
    assert grads.keys() == expected_grads.keys()
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)

    # the checkpoint of a channels-last run loads into a plain model
    fresh = build_random_detector(model_cfg)
    fresh.load_state_dict(converted.state_dict(), strict=True)
    assert all(p.is_contiguous() for p in fresh.parameters())
