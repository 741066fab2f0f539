"""RTMDet-Ins mask layers: the prototype branch and the per-instance dynamic convolutions.

RTMDet-Ins predicts masks as in CondInst: a shared branch (:class:`MaskFeatModule`) turns the
neck features into a few *prototype* maps at the finest level (stride 8); every detection
carries a vector of convolution parameters (the head's ``rtm_kernel`` output at its prior)
that defines a small stack of 1x1 convolutions. Each instance runs its own stack over the
prototypes plus two channels of coordinates relative to its prior, and the result is the
instance's mask logits::

    prototypes [P, H, W] + relative (x, y) [N, 2, H, W] -> N dynamic 1x1 conv stacks -> [N, H, W]

The parameter vector of an instance is laid out as every layer's weights, then every layer's
biases; a layer's weights are ``[out, in]`` in row-major order.
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.utils import ConfigType

# Relative coordinates are divided by ``prior stride * 8``, so a prior's own neighbourhood
# spans roughly [-1, 1] whatever its level.
COORD_NORM_STRIDES = 8


class MaskFeatModule(BaseModule):
    """Prototype branch of RTMDet-Ins: fuse all levels at the finest resolution, then
    ``stacked_convs`` 3x3 convs and a 1x1 projection to ``num_prototypes`` maps.

    Not registered (as in mmdetection): the head builds it directly, under ``mask_head``.

    Args:
        in_channels (int): Channels of every input level.
        feat_channels (int): Channels of the hidden convs. Defaults to 256.
        stacked_convs (int): Number of 3x3 convs. Defaults to 4.
        num_levels (int): Number of input levels fused (the first ``num_levels``).
            Defaults to 3.
        num_prototypes (int): Output channels. Defaults to 8.
        act_cfg (dict): Activation of the 3x3 convs. Defaults to ReLU(inplace=True).
        norm_cfg (dict): Normalization of the 3x3 convs. Defaults to BN.
    """

    def __init__(self,
                 in_channels: int,
                 feat_channels: int = 256,
                 stacked_convs: int = 4,
                 num_levels: int = 3,
                 num_prototypes: int = 8,
                 act_cfg: ConfigType = dict(type='ReLU', inplace=True),
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__(init_cfg=None)
        self.num_levels = num_levels
        self.fusion_conv = nn.Conv2d(num_levels * in_channels, in_channels, 1)
        self.stacked_convs = nn.Sequential(*[
            ConvModule(in_channels if i == 0 else feat_channels, feat_channels, 3, padding=1,
                       act_cfg=act_cfg, norm_cfg=norm_cfg) for i in range(stacked_convs)
        ])
        self.projection = nn.Conv2d(feat_channels, num_prototypes, kernel_size=1)

    def forward(self, features: Tuple[Tensor, ...]) -> Tensor:
        """Compute the prototypes.

        Args:
            features (tuple[Tensor]): Neck levels, finest first, each [B, C, H_l, W_l].

        Returns:
            Tensor: Prototypes [B, num_prototypes, H_0, W_0].
        """
        size = features[0].shape[-2:]
        # Coarser levels are brought to the finest grid and stacked along channels.
        fused = [features[0]] + [
            F.interpolate(features[i], size=size, mode='bilinear', align_corners=False)
            for i in range(1, self.num_levels)
        ]
        fused = self.fusion_conv(torch.cat(fused, dim=1))  # [B, C, H_0, W_0]
        return self.projection(self.stacked_convs(fused))  # [B, num_prototypes, H_0, W_0]


def dynamic_conv_param_nums(num_prototypes: int, dyconv_channels: int,
                            num_dyconvs: int) -> Tuple[List[int], List[int]]:
    """Number of weights and of biases of each dynamic conv layer.

    The first layer reads the prototypes plus the two coordinate channels, the last one
    writes the single mask logit, the others map ``dyconv_channels`` to itself. (With
    ``num_dyconvs=1`` the single layer is a "first" layer, writing ``dyconv_channels``
    channels, as in mmdetection; such a stack cannot produce a mask.)

    Args:
        num_prototypes (int): Prototype channels P.
        dyconv_channels (int): Hidden channels C of the dynamic convs.
        num_dyconvs (int): Number of dynamic conv layers.

    Returns:
        tuple[list[int], list[int]]: ``weight_nums`` and ``bias_nums``, one per layer; e.g.
        P=8, C=8, 3 layers: ``[80, 64, 8]`` and ``[8, 8, 1]`` (169 parameters).
    """
    weight_nums, bias_nums = [], []
    for i in range(num_dyconvs):
        if i == 0:
            in_channels, out_channels = num_prototypes + 2, dyconv_channels
        elif i == num_dyconvs - 1:
            in_channels, out_channels = dyconv_channels, 1
        else:
            in_channels, out_channels = dyconv_channels, dyconv_channels
        weight_nums.append(in_channels * out_channels)
        bias_nums.append(out_channels)
    return weight_nums, bias_nums


def split_dynamic_params(kernels: Tensor, weight_nums: List[int], bias_nums: List[int],
                         dyconv_channels: int) -> Tuple[List[Tensor], List[Tensor]]:
    """Cut per-instance parameter vectors into grouped-conv weights and biases.

    Args:
        kernels (Tensor): Parameter vectors [N, sum(weight_nums) + sum(bias_nums)].
        weight_nums (list[int]): Weights of each layer (:func:`dynamic_conv_param_nums`).
        bias_nums (list[int]): Biases of each layer.
        dyconv_channels (int): Hidden channels C.

    Returns:
        tuple[list[Tensor], list[Tensor]]: Per layer, the weights of all instances stacked
        for a grouped conv, [N * C, in, 1, 1] ([N, C, 1, 1] for the last layer), and the
        biases [N * C] ([N] for the last layer).
    """
    num_inst = kernels.size(0)
    num_layers = len(weight_nums)
    splits = list(torch.split_with_sizes(kernels, weight_nums + bias_nums, dim=1))
    weights, biases = splits[:num_layers], splits[num_layers:]
    for i in range(num_layers):
        out_channels = dyconv_channels if i < num_layers - 1 else 1
        weights[i] = weights[i].reshape(num_inst * out_channels, -1, 1, 1)
        biases[i] = biases[i].reshape(num_inst * out_channels)
    return weights, biases


def relative_coordinates(priors: Tensor, points: Tensor, height: int, width: int) -> Tensor:
    """Offsets from every mask-grid point to each instance's prior, in ``8 * stride`` units.

    Args:
        priors (Tensor): Priors of the instances [N, 4] as (x, y, stride_w, stride_h).
        points (Tensor): Mask-grid points [H * W, 2] as (x, y), row ``y * W + x``.
        height (int): H of the mask grid.
        width (int): W of the mask grid.

    Returns:
        Tensor: [N, 2, H, W]; channel 0 is ``prior_x - point_x``, channel 1 the same in y.
    """
    num_inst = priors.shape[0]
    offsets = priors[:, None, :2] - points[None]  # [N, H*W, 2]
    norm = priors[:, 2].reshape(-1, 1, 1) * COORD_NORM_STRIDES  # stride_w of each prior
    return (offsets.permute(0, 2, 1) / norm).reshape(num_inst, 2, height, width)


def dynamic_mask_convs(mask_inputs: Tensor, weights: List[Tensor],
                       biases: List[Tensor]) -> Tensor:
    """Run every instance's own 1x1 conv stack (ReLU between layers) over its inputs.

    All instances go through one grouped convolution per layer: the instances are stacked
    along channels and each group only sees its own channels.

    Args:
        mask_inputs (Tensor): Per-instance inputs [N, 2 + P, H, W].
        weights (list[Tensor]): From :func:`split_dynamic_params`.
        biases (list[Tensor]): From :func:`split_dynamic_params`.

    Returns:
        Tensor: Mask logits [N, H, W].
    """
    num_inst, _, height, width = mask_inputs.shape
    x = mask_inputs.reshape(1, -1, height, width)  # [1, N * (2 + P), H, W]
    for i, (weight, bias) in enumerate(zip(weights, biases)):
        x = F.conv2d(x, weight, bias=bias, stride=1, padding=0, groups=num_inst)
        if i < len(weights) - 1:
            x = F.relu(x)
    return x.reshape(num_inst, height, width)


def mask_logits_to_image(mask_logits: Tensor, stride: int, threshold: float,
                         img_meta: Optional[dict] = None, rescale: bool = False) -> Tensor:
    """Binary masks at the input (or original) image size from mask logits on the prototype
    grid.

    The logits are upsampled (bilinear) by ``stride`` to the padded input size; with
    ``rescale`` they are resized by ``1 / scale_factor`` and cropped to ``ori_shape``, then
    thresholded after a sigmoid.

    Args:
        mask_logits (Tensor): [K, H, W] on the stride-``stride`` prototype grid.
        stride (int): Stride of the prototype grid (8 in RTMDet-Ins).
        threshold (float): Probability above which a pixel is in the mask.
        img_meta (dict, optional): ``scale_factor`` (w, h) and ``ori_shape``; needed with
            ``rescale``.
        rescale (bool): Map the masks back to the original image.

    Returns:
        Tensor: Bool masks [K, stride * H, stride * W], or [K, ori_h, ori_w] with ``rescale``.
    """
    mask_logits = F.interpolate(mask_logits.unsqueeze(0), scale_factor=stride, mode='bilinear',
                                align_corners=False)  # [1, K, stride * H, stride * W]
    if rescale:
        inv_w, inv_h = [1 / s for s in img_meta['scale_factor']]
        ori_h, ori_w = img_meta['ori_shape'][:2]
        # mmdetection sizes the height with the width factor too; both agree for the
        # aspect-preserving resizes of its pipelines, and the numbers stay the same.
        size = [math.ceil(mask_logits.shape[-2] * inv_w),
                math.ceil(mask_logits.shape[-1] * inv_h)]
        mask_logits = F.interpolate(mask_logits, size=size, mode='bilinear',
                                    align_corners=False)[..., :ori_h, :ori_w]
    return mask_logits.sigmoid().squeeze(0) > threshold
