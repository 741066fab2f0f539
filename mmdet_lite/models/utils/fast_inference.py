"""The CPU inference fast path: fold BatchNorm, run in channels-last, optionally compile.

What a trained detector in eval mode computes does not change, only how:

- **BatchNorm folded** into the conv before it (:func:`fuse_conv_bn`): one pass less over
  every feature map of the backbone, neck and head towers. Convs shared between several
  BNs (RTMDetSepBNHead's ``share_conv``: one conv per tower position for all levels, one
  BN per level) are first given a copy each (:func:`untie_shared_convs`), so that each
  level's statistics go into its own copy.
- **channels-last** (NHWC) parameters and input: oneDNN's CPU convolutions and pools run
  their fastest kernels on this layout, and no layout conversion happens between layers.
- **torch.compile** (opt-in, :func:`compile_detector`): the backbone, neck and dense
  heads' forward compiled with inductor; post-processing (data-dependent shapes: top-k,
  NMS) stays eager.

``torch.inference_mode`` (no autograd bookkeeping at all, stronger than ``no_grad``) is
the caller's to use around ``predict``; :func:`inference_context` picks it.

Measured effects (Faster/Mask R-CNN, RetinaNet R-50-FPN at 640x640, 2 threads) are in
docs/benchmark.md; detections equal the plain model's within float noise
(tests/test_models/test_utils/test_fast_inference.py).
"""
import copy
from typing import Any, ContextManager, Dict, List

import torch
from torch import Tensor, nn

from .fuse_conv_bn import _is_plain_conv, fuse_conv_bn

# Sub-modules compiled by compile_detector, when the detector has them: everything whose
# forward has shapes fixed by the input size.
COMPILED_PARTS = ('backbone', 'neck', 'rpn_head', 'bbox_head')


def untie_shared_convs(model: nn.Module) -> int:
    """Give every parent of a shared plain conv its own deep copy, in place.

    A conv module registered under two parents computes the same function in both places,
    so copying it changes no output; it only matters before folding different BNs into it.

    Args:
        model (nn.Module): Any model.

    Returns:
        int: How many copies were made.
    """
    seen, copies = set(), 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if not _is_plain_conv(child):
                continue
            if id(child) in seen:
                setattr(parent, name, copy.deepcopy(child))
                copies += 1
            else:
                seen.add(id(child))
    return copies


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: 4-D tensor inputs in channels-last memory format."""
    return tuple(a.contiguous(memory_format=torch.channels_last)
                 if isinstance(a, Tensor) and a.dim() == 4 else a for a in args)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Channels-last (NHWC) parameters, buffers and backbone input, in place.

    Values, parameter objects (an optimizer built before keeps working) and ``state_dict``
    names stay; only the memory layout of 4-D tensors changes. The input is converted by a
    forward pre-hook on ``model.backbone`` (on ``model`` itself when it has none). Used by
    the inference fast path and, for training, by ``ChannelsLastHook``.

    Args:
        model (nn.Module): A detector or any model.

    Returns:
        nn.Module: ``model``.
    """
    model.to(memory_format=torch.channels_last)
    entry = getattr(model, 'backbone', model)
    entry.register_forward_pre_hook(_to_channels_last)
    return model


def optimize_for_inference(model: nn.Module, fuse_bn: bool = True,
                           channels_last: bool = True) -> nn.Module:
    """Turn an eval-mode detector into its inference fast path, in place.

    Args:
        model (nn.Module): A detector (anything with a ``backbone`` for the channels-last
            input hook; other modules are only folded / converted). It is put in eval
            mode: folding uses the BN running statistics.
        fuse_bn (bool): Fold every eval BatchNorm (and FrozenBatchNorm2d) into the conv
            before it. The model's ``state_dict`` loses those BN keys, so save weights
            from an unfused model. Defaults to True.
        channels_last (bool): Move 4-D parameters and buffers to channels-last and convert
            the backbone's input on the way in. Defaults to True.

    Returns:
        nn.Module: ``model``, changed in place; ``model.fast_path`` records what was done.
    """
    model.eval()
    applied: Dict[str, Any] = dict(fuse_bn=False, channels_last=False)
    if fuse_bn:
        untie_shared_convs(model)
        fuse_conv_bn(model)
        applied['fuse_bn'] = True
    if channels_last:
        to_channels_last(model)
        applied['channels_last'] = True
    # a plain attribute (not a buffer): it never reaches the state_dict
    model.__dict__['fast_path'] = applied
    return model


def compile_detector(model: nn.Module, **compile_kwargs) -> List[str]:
    """``torch.compile`` the detector's fixed-shape parts in place (``nn.Module.compile``:
    parameter names and the ``state_dict`` stay as they are).

    Args:
        model (nn.Module): A detector.
        **compile_kwargs: Passed to ``torch.compile`` (``backend``, ``mode``, ``dynamic``).

    Returns:
        list[str]: The names of the compiled sub-modules (of :data:`COMPILED_PARTS`).
    """
    compiled = []
    for name in COMPILED_PARTS:
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            part.compile(**compile_kwargs)
            compiled.append(name)
    return compiled


def inference_context(inference_mode: bool = True) -> ContextManager:
    """``torch.inference_mode()`` or ``torch.no_grad()``: the grad mode to predict in."""
    return torch.inference_mode() if inference_mode else torch.no_grad()


__all__ = ['optimize_for_inference', 'compile_detector', 'untie_shared_convs',
           'to_channels_last', 'inference_context', 'COMPILED_PARTS']
