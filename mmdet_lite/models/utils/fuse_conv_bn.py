"""Fold inference-time BatchNorm layers into the convolutions that feed them.

In eval mode a BatchNorm is a fixed per-channel affine map,
``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``, so it can be merged
into the preceding convolution's weight and bias: the network computes the same function
with one layer fewer per conv (faster on CPU, and what deployment exports expect).
"""
from typing import Optional

import torch
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks.wrappers import Conv2d as MMCVConv2d
from mmcv.cnn.bricks.wrappers import Conv3d as MMCVConv3d
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

try:
    from torchvision.ops.misc import FrozenBatchNorm2d
except ImportError:  # torchvision is optional for this helper
    FrozenBatchNorm2d = None

# Convolutions whose forward is exactly F.conv*d(x, weight, bias). Subclasses that rewrite
# the weight in forward (NormedConv2d, ConvWS2d, deformable convs) cannot take a folded BN.
_PLAIN_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, MMCVConv2d, MMCVConv3d)


def fuse_conv_bn(module: nn.Module) -> nn.Module:
    """Fold every foldable BatchNorm of ``module`` into the conv before it, in place.

    Patterns folded, searched recursively through all submodules:

    - a ``ConvModule`` whose ``order`` has ``'norm'`` right after ``'conv'`` (the default
      ``('conv', 'norm', 'act')``): its ``norm`` goes into its ``conv``. A ConvModule with
      the norm first (``('norm', 'conv', 'act')``) normalizes the conv's input and is left
      alone;
    - anywhere else, a BatchNorm child registered directly after a conv child of the same
      parent, as ``nn.Sequential(conv, bn, ...)`` and ResNet's blocks
      (``conv1, bn1, conv2, bn2``, ``downsample = Sequential(conv, bn)``) are laid out.
      A module in between (``conv, relu, bn``) stops the pairing: that BN does not see the
      conv's output directly.

    The BN is any ``torch.nn`` BatchNorm (SyncBatchNorm included) in eval mode with running
    statistics, or torchvision's ``FrozenBatchNorm2d``; BNs in training mode normalize with
    batch statistics and are skipped, so call ``model.eval()`` first. The conv is a plain
    ``nn.Conv1d/2d/3d`` (or mmcv's ``Conv2d``/``Conv3d`` wrappers), with or without a bias,
    with the same number of output channels as the BN has features; convs that change their
    weight in forward (weight standardization, normed or deformable convs, spectral norm)
    are skipped. Each folded BN is replaced by ``nn.Identity`` under its own name, and the
    conv gets the folded weight and a bias, so the state dict loses the BN keys and gains
    ``<conv>.bias`` where the conv had none.

    Args:
        module (nn.Module): The model or block to fold, e.g. a detector in eval mode.

    Returns:
        nn.Module: ``module`` itself, changed in place.

    Example:
        >>> model = init_detector(config, checkpoint)  # in eval mode
        >>> model = fuse_conv_bn(model)  # same outputs, no BatchNorm left in the backbone
    """
    if isinstance(module, ConvModule):  # its order, not its children's, says what follows
        _fuse_conv_module(module)
        return module
    last_conv_name: Optional[str] = None
    for name, child in list(module.named_children()):
        if _is_plain_conv(child):
            last_conv_name = name
        elif last_conv_name is not None and _fold_if_possible(
                getattr(module, last_conv_name), child):
            setattr(module, name, nn.Identity())
            last_conv_name = None
        else:
            fuse_conv_bn(child)
            last_conv_name = None
    return module


def _fuse_conv_module(conv_module: ConvModule) -> None:
    """Fold a ConvModule's norm into its conv when the norm comes right after the conv."""
    order = list(conv_module.order)
    if not conv_module.with_norm or order.index('norm') != order.index('conv') + 1:
        return
    if _fold_if_possible(conv_module.conv, conv_module.norm):
        setattr(conv_module, conv_module.norm_name, nn.Identity())
        # its forward would otherwise hand the Identity to mmcv's efficient conv-bn path
        conv_module.efficient_conv_bn_eval_forward = None


def _is_plain_conv(module: nn.Module) -> bool:
    return (type(module) in _PLAIN_CONVS and not module._forward_pre_hooks
            and not parametrize.is_parametrized(module))


def _is_foldable_bn(module: nn.Module) -> bool:
    """A BN that applies fixed statistics: eval-mode BatchNorm with running stats, or frozen."""
    if isinstance(module, _BatchNorm):
        return (not module.training and module.running_mean is not None
                and module.running_var is not None)
    return FrozenBatchNorm2d is not None and isinstance(module, FrozenBatchNorm2d)


def _fold_if_possible(conv: nn.Module, bn: nn.Module) -> bool:
    """Fold ``bn`` into ``conv`` if both qualify; returns whether it did."""
    if not (_is_plain_conv(conv) and _is_foldable_bn(bn)):
        return False
    if bn.running_mean.numel() != conv.out_channels:
        return False
    _fold_bn_into_conv(conv, bn)
    return True


@torch.no_grad()
def _fold_bn_into_conv(conv: nn.Module, bn: nn.Module) -> None:
    """Set ``conv``'s weight and bias so that ``conv(x)`` equals ``bn(old_conv(x))``.

    Per output channel c: ``scale[c] = gamma[c] / sqrt(var[c] + eps)``,
    ``W'[c] = W[c] * scale[c]``, ``b'[c] = (b[c] - mean[c]) * scale[c] + beta[c]``
    (``b = 0`` without a conv bias, ``gamma = 1, beta = 0`` for a BN without affine).
    """
    weight = conv.weight  # [C_out, C_in / groups, *kernel]
    # in float64, so the folded layer rounds once instead of compounding float32 errors
    mean = bn.running_mean.double()  # [C_out]
    std = (bn.running_var.double() + bn.eps).sqrt()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    conv_bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)

    scale = gamma / std  # [C_out]
    new_weight = weight.double() * scale.reshape(-1, *[1] * (weight.dim() - 1))
    new_bias = (conv_bias - mean) * scale + beta
    conv.weight = nn.Parameter(new_weight.to(weight.dtype), weight.requires_grad)
    conv.bias = nn.Parameter(new_bias.to(weight.dtype), weight.requires_grad)
