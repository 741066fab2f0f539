"""TaskDecomposition: the layer attention of TOOD's task-aligned head (Feng et al., 2021:
"TOOD: Task-aligned One-stage Object Detection").

The T-head runs one stack of ``N = stacked_convs`` convs shared by both tasks and keeps every
intermediate map. Each task (classification, localization) then builds its own feature from
the concatenation ``X = [X_1, ..., X_N]`` [B, N * C, H, W]: a small MLP on the global average
of ``X`` gives one weight per conv level, ``w = sigmoid(mlp(avgpool(X)))`` [B, N], and the task
feature is a 1x1 conv (``reduction_conv``) of the re-weighted stack::

    task_feat = act(norm(sum_k W_k @ (w_k * X_k)))        W_k: the 1x1 weights of level k

Scaling the level blocks of the 1x1 weights by ``w`` (per image) and applying the result as a
batched matrix product gives the same numbers with fewer operations than scaling the much larger
feature map, so ``reduction_conv`` is never called as a module; only its parameters, norm and
activation are used.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import normal_init
from torch import Tensor, nn

from mmdet_lite.utils import OptConfigType


class TaskDecomposition(nn.Module):
    """Layer attention over the stacked conv outputs of a T-head, then a 1x1 reduction.

    State dict: ``layer_attention.0`` (1x1, N * C -> N * C // la_down_rate),
    ``layer_attention.2`` (1x1, -> N), and ``reduction_conv`` (a ConvModule, 1x1,
    N * C -> C: ``conv`` with a bias only without norm, plus ``gn`` / ``bn`` with a norm).

    Args:
        feat_channels (int): Channels C of each conv level (and of the output).
        stacked_convs (int): Number N of conv levels concatenated in the input.
        la_down_rate (int): Channel reduction of the attention MLP's hidden layer.
            Defaults to 8.
        conv_cfg (dict, optional): Conv layer config of ``reduction_conv``. Defaults to None.
        norm_cfg (dict, optional): Norm layer config of ``reduction_conv``. Defaults to None.
    """

    def __init__(self,
                 feat_channels: int,
                 stacked_convs: int,
                 la_down_rate: int = 8,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None) -> None:
        super().__init__()
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.in_channels = feat_channels * stacked_convs
        self.norm_cfg = norm_cfg
        hidden = self.in_channels // la_down_rate
        self.layer_attention = nn.Sequential(
            nn.Conv2d(self.in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, stacked_convs, 1, padding=0),
            nn.Sigmoid())
        self.reduction_conv = ConvModule(self.in_channels, feat_channels, 1, stride=1,
                                         padding=0, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                                         bias=norm_cfg is None)

    def init_weights(self) -> None:
        """Normal init: std 0.001 for the attention convs, 0.01 for the reduction conv
        (biases zero); the norm keeps its construction-time init."""
        for module in self.layer_attention.modules():
            if isinstance(module, nn.Conv2d):
                normal_init(module, std=0.001)
        normal_init(self.reduction_conv.conv, std=0.01)

    def forward(self, feat: Tensor, avg_feat: Optional[Tensor] = None) -> Tensor:
        """Task feature from the stacked conv outputs.

        Args:
            feat (Tensor): The N conv outputs concatenated, [B, N * C, H, W].
            avg_feat (Tensor, optional): Its global average [B, N * C, 1, 1] (computed here
                when None; the head computes it once for both tasks).

        Returns:
            Tensor: [B, C, H, W].
        """
        b, _, h, w = feat.shape
        if avg_feat is None:
            avg_feat = F.adaptive_avg_pool2d(feat, (1, 1))
        level_weights = self.layer_attention(avg_feat)  # [B, N, 1, 1]

        # 1x1 weights [C, N * C] seen as N blocks [C, C], each scaled by its level's weight.
        conv_weight = self.reduction_conv.conv.weight.reshape(
            1, self.feat_channels, self.stacked_convs, self.feat_channels)
        conv_weight = level_weights.reshape(b, 1, self.stacked_convs, 1) * conv_weight
        conv_weight = conv_weight.reshape(b, self.feat_channels, self.in_channels)  # [B, C, N*C]
        out = torch.bmm(conv_weight, feat.reshape(b, self.in_channels, h * w))  # [B, C, H*W]
        out = out.reshape(b, self.feat_channels, h, w)
        # As mmdetection: the conv's bias (present without a norm) is not added.
        if self.norm_cfg is not None:
            out = self.reduction_conv.norm(out)
        return self.reduction_conv.activate(out)
