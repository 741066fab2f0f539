"""Building blocks of the Swin Transformer: (shifted-)window attention, blocks and stages.

``WindowMSA`` attends within one window of ``Wh x Ww`` tokens and adds a learned bias per
relative offset (``relative_position_bias_table``, indexed by the fixed
``relative_position_index`` buffer). ``ShiftWindowMSA`` pads a token map to whole windows,
optionally rolls it by ``shift_size`` so that the windows straddle the previous ones, and masks
attention between tokens that were not neighbours before the roll. ``SwinBlock`` is
pre-norm attention + FFN; ``SwinBlockSequence`` is one stage (blocks alternate plain and
shifted windows) with an optional ``PatchMerging`` downsample.

Names, arguments, defaults and state_dict keys are mmdetection 3.3's
(``mmdet.models.backbones.swin``); this module is re-exported there.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from mmengine.utils import to_2tuple
from torch import Tensor, nn
from torch.nn import functional as F

from mmdet_lite.models.layers.transformer.bricks import FFN, _build_dropout
from mmdet_lite.utils import ConfigType, OptMultiConfig

__all__ = [
    'WindowMSA', 'ShiftWindowMSA', 'SwinBlock', 'SwinBlockSequence', 'SwinArgumentError',
    'relative_position_index', 'shifted_window_mask'
]

# Added to the attention logits of token pairs from different regions of a shifted window:
# large enough that softmax gives them ~0 weight (exp(-100) ~ 4e-44), finite so that no row is
# all -inf. The value is the official Swin one.
MASK_VALUE = -100.0


class SwinArgumentError(ValueError, AssertionError):
    """A Swin argument or input that mmdetection rejects with an assert (hence also an
    AssertionError)."""


def relative_position_index(window_size: Sequence[int]) -> Tensor:
    """Bias-table row of every (query, key) token pair of a window.

    Tokens are numbered row-major. For query (i1, j1) and key (i2, j2) the offset
    (i1 - i2, j1 - j2) lies in [-(Wh-1), Wh-1] x [-(Ww-1), Ww-1] and maps to row
    ``(i1 - i2 + Wh - 1) * (2 * Ww - 1) + (j1 - j2 + Ww - 1)`` of a
    ``(2 * Wh - 1) * (2 * Ww - 1)``-row table.

    Args:
        window_size (Sequence[int]): (Wh, Ww).

    Returns:
        Tensor: int64 [Wh * Ww, Wh * Ww].
    """
    height, width = window_size
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
    coords = torch.stack([rows.flatten(), cols.flatten()], dim=1)  # [N, 2]
    offsets = coords[:, None, :] - coords[None, :, :]  # [N, N, 2], query minus key
    return (offsets[..., 0] + height - 1) * (2 * width - 1) + (offsets[..., 1] + width - 1)


def shifted_window_mask(padded_hw: Sequence[int], window_size: int, shift_size: int,
                        device: Optional[torch.device] = None) -> Tensor:
    """Additive attention mask of the windows of a map rolled by ``-shift_size``.

    After the roll, the last ``window_size`` rows (and columns) hold tokens from two
    regions that were not adjacent: rows [-window_size, -shift_size) and the wrapped rows
    [-shift_size, end). Each token gets a region label (3 row bands x 3 column bands);
    pairs with different labels are masked with ``MASK_VALUE``.

    Args:
        padded_hw (Sequence[int]): (H, W) of the padded map, multiples of ``window_size``.
        window_size (int): Window side.
        shift_size (int): Roll, 0 < shift_size < window_size.
        device (torch.device, optional): Device of the result.

    Returns:
        Tensor: [num_windows, window_size**2, window_size**2] of 0 and ``MASK_VALUE``,
        windows in row-major order.
    """
    height, width = padded_hw
    labels = torch.zeros((1, height, width, 1), device=device)
    bands = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    for i, row_band in enumerate(bands):
        for j, col_band in enumerate(bands):
            labels[:, row_band, col_band, :] = i * 3 + j
    windows = window_partition(labels, window_size).reshape(-1, window_size * window_size)
    different = windows[:, None, :] != windows[:, :, None]
    return torch.zeros_like(different, dtype=labels.dtype).masked_fill(different, MASK_VALUE)


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """[B, H, W, C] -> [B * num_windows, window_size, window_size, C], windows row-major."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window_size, window_size, width // window_size, window_size,
               channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, channels)


def window_reverse(windows: Tensor, height: int, width: int, window_size: int) -> Tensor:
    """Inverse of :func:`window_partition`: -> [B, H, W, C]."""
    num_windows = (height // window_size) * (width // window_size)
    batch = windows.shape[0] // num_windows
    x = windows.view(batch, height // window_size, width // window_size, window_size,
                     window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, -1)


class WindowMSA(BaseModule):
    """Multi-head self-attention inside windows, with a relative position bias.

    ``softmax(q k^T * scale + bias[relative_position_index] + mask) v``, per head, then a
    Linear ``proj``.

    Args:
        embed_dims (int): Token channels.
        num_heads (int): Attention heads.
        window_size (tuple[int]): (Wh, Ww).
        qkv_bias (bool): Bias of the ``qkv`` Linear. Defaults to True.
        qk_scale (float, optional): Logit scale; ``head_dims ** -0.5`` when None (or 0).
            Defaults to None.
        attn_drop_rate (float): Dropout on the attention weights. Defaults to 0.
        proj_drop_rate (float): Dropout after ``proj``. Defaults to 0.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: Sequence[int],
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop_rate: float = 0.,
                 proj_drop_rate: float = 0.,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5

        table_rows = (2 * window_size[0] - 1) * (2 * window_size[1] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_rows, num_heads))
        # A persistent buffer, as in mmdetection: checkpoints carry it.
        self.register_buffer('relative_position_index', relative_position_index(window_size))

        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def init_weights(self) -> None:
        """Truncated-normal bias table (std 0.02)."""
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Attend within each window.

        Args:
            x (Tensor): [B * num_windows, N, C] with ``N = Wh * Ww`` tokens per window.
            mask (Tensor, optional): [num_windows, N, N] additive mask, values in
                (-inf, 0]; window ``k`` of every image uses ``mask[k]``. Defaults to None.

        Returns:
            Tensor: [B * num_windows, N, C].
        """
        batch_windows, num_tokens, channels = x.shape
        head_dims = channels // self.num_heads
        qkv = self.qkv(x).reshape(batch_windows, num_tokens, 3, self.num_heads, head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B*nW, heads, N, head_dims]

        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B*nW, heads, N, N]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(num_tokens, num_tokens, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            num_windows = mask.shape[0]
            attn = attn.view(-1, num_windows, self.num_heads, num_tokens, num_tokens)
            attn = (attn + mask[None, :, None]).view(-1, self.num_heads, num_tokens,
                                                     num_tokens)
        attn = self.attn_drop(attn.softmax(dim=-1))

        x = (attn @ v).transpose(1, 2).reshape(batch_windows, num_tokens, channels)
        return self.proj_drop(self.proj(x))


class ShiftWindowMSA(BaseModule):
    """Window attention over a token map, windows optionally shifted.

    Args:
        embed_dims (int): Token channels.
        num_heads (int): Attention heads.
        window_size (int): Window side.
        shift_size (int): Roll towards top-left before partitioning, in [0, window_size);
            0 gives plain window attention. Defaults to 0.
        qkv_bias (bool): Bias of the ``qkv`` Linear. Defaults to True.
        qk_scale (float, optional): Logit scale override. Defaults to None.
        attn_drop_rate (float): Dropout on the attention weights. Defaults to 0.
        proj_drop_rate (float): Dropout after the projection. Defaults to 0.
        dropout_layer (dict): Dropout on the output (the residual branch).
            Defaults to dict(type='DropPath', drop_prob=0.).
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int,
                 shift_size: int = 0,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop_rate: float = 0,
                 proj_drop_rate: float = 0,
                 dropout_layer: ConfigType = dict(type='DropPath', drop_prob=0.),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if not 0 <= shift_size < window_size:
            raise SwinArgumentError(f'ShiftWindowMSA: shift_size must be in [0, window_size='
                                    f'{window_size}), got {shift_size}.')
        self.window_size = window_size
        self.shift_size = shift_size
        self.w_msa = WindowMSA(
            embed_dims=embed_dims,
            num_heads=num_heads,
            window_size=to_2tuple(window_size),
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=proj_drop_rate)
        self.drop = _build_dropout(dropout_layer)

    def forward(self, query: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """Attend within (shifted) windows.

        Args:
            query (Tensor): [B, H * W, C], row-major tokens.
            hw_shape (Sequence[int]): (H, W).

        Returns:
            Tensor: [B, H * W, C].
        """
        batch, length, channels = query.shape
        height, width = hw_shape
        if length != height * width:
            raise SwinArgumentError(f'ShiftWindowMSA: input feature has wrong size: {length} '
                                    f'tokens for hw_shape {tuple(hw_shape)}.')
        ws = self.window_size
        query = query.view(batch, height, width, channels)
        # Zero-pad bottom/right to whole windows; the padding is cut off at the end.
        pad_r = (ws - width % ws) % ws
        pad_b = (ws - height % ws) % ws
        query = F.pad(query, (0, 0, 0, pad_r, 0, pad_b))
        padded_h, padded_w = query.shape[1], query.shape[2]

        if self.shift_size > 0:
            query = torch.roll(query, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
            attn_mask = shifted_window_mask((padded_h, padded_w), ws, self.shift_size,
                                            query.device)
        else:
            attn_mask = None

        windows = self.window_partition(query).reshape(-1, ws * ws, channels)
        windows = self.w_msa(windows, mask=attn_mask).view(-1, ws, ws, channels)
        x = self.window_reverse(windows, padded_h, padded_w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x[:, :height, :width, :].reshape(batch, height * width, channels)
        return self.drop(x)

    def window_partition(self, x: Tensor) -> Tensor:
        """[B, H, W, C] -> [B * num_windows, window_size, window_size, C]."""
        return window_partition(x, self.window_size)

    def window_reverse(self, windows: Tensor, H: int, W: int) -> Tensor:  # noqa: N803
        """[B * num_windows, window_size, window_size, C] -> [B, H, W, C]."""
        return window_reverse(windows, H, W, self.window_size)


class SwinBlock(BaseModule):
    """Pre-norm Swin block: ``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``.

    Args:
        embed_dims (int): Token channels.
        num_heads (int): Attention heads.
        feedforward_channels (int): FFN hidden channels.
        window_size (int): Window side. Defaults to 7.
        shift (bool): Shift the windows by ``window_size // 2``. Defaults to False.
        qkv_bias (bool): Bias of the ``qkv`` Linear. Defaults to True.
        qk_scale (float, optional): Logit scale override. Defaults to None.
        drop_rate (float): Dropout after the attention projection and in the FFN.
            Defaults to 0.
        attn_drop_rate (float): Dropout on the attention weights. Defaults to 0.
        drop_path_rate (float): Stochastic depth of both residual branches. Defaults to 0.
        act_cfg (dict): FFN activation. Defaults to dict(type='GELU').
        norm_cfg (dict): Norm layers. Defaults to dict(type='LN').
        with_cp (bool): Activation checkpointing (when the input requires grad).
            Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 window_size: int = 7,
                 shift: bool = False,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 act_cfg: ConfigType = dict(type='GELU'),
                 norm_cfg: ConfigType = dict(type='LN'),
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = ShiftWindowMSA(
            embed_dims=embed_dims,
            num_heads=num_heads,
            window_size=window_size,
            shift_size=window_size // 2 if shift else 0,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=drop_rate,
            dropout_layer=dict(type='DropPath', drop_prob=drop_path_rate))
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=2,
            ffn_drop=drop_rate,
            dropout_layer=dict(type='DropPath', drop_prob=drop_path_rate),
            act_cfg=act_cfg,
            add_identity=True)

    def _inner_forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        x = x + self.attn(self.norm1(x), hw_shape)
        return self.ffn(self.norm2(x), identity=x)

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """Apply the block to ``x`` [B, H * W, C] with ``hw_shape`` (H, W); same shape out."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, hw_shape, use_reentrant=False)
        return self._inner_forward(x, hw_shape)


class SwinBlockSequence(BaseModule):
    """One Swin stage: ``depth`` blocks (odd ones shifted), then an optional downsample.

    Args:
        embed_dims (int): Token channels.
        num_heads (int): Attention heads.
        feedforward_channels (int): FFN hidden channels.
        depth (int): Number of blocks.
        window_size (int): Window side. Defaults to 7.
        qkv_bias (bool): Bias of the ``qkv`` Linears. Defaults to True.
        qk_scale (float, optional): Logit scale override. Defaults to None.
        drop_rate (float): Dropout rate. Defaults to 0.
        attn_drop_rate (float): Attention dropout rate. Defaults to 0.
        drop_path_rate (float | list[float]): Stochastic depth, one value for all blocks or
            one per block. Defaults to 0.
        downsample (nn.Module, optional): Applied after the blocks (``PatchMerging``).
            Defaults to None.
        act_cfg (dict): FFN activation. Defaults to dict(type='GELU').
        norm_cfg (dict): Norm layers. Defaults to dict(type='LN').
        with_cp (bool): Activation checkpointing. Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 depth: int,
                 window_size: int = 7,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: Union[float, List[float]] = 0.,
                 downsample: Optional[nn.Module] = None,
                 act_cfg: ConfigType = dict(type='GELU'),
                 norm_cfg: ConfigType = dict(type='LN'),
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(drop_path_rate, list):
            if len(drop_path_rate) != depth:
                raise SwinArgumentError(
                    f'SwinBlockSequence: drop_path_rate has {len(drop_path_rate)} values, '
                    f'expected one per block (depth={depth}).')
            drop_path_rates = drop_path_rate
        else:
            drop_path_rates = [drop_path_rate] * depth

        self.blocks = ModuleList()
        for i in range(depth):
            self.blocks.append(
                SwinBlock(
                    embed_dims=embed_dims,
                    num_heads=num_heads,
                    feedforward_channels=feedforward_channels,
                    window_size=window_size,
                    shift=i % 2 == 1,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=drop_path_rates[i],
                    act_cfg=act_cfg,
                    norm_cfg=norm_cfg,
                    with_cp=with_cp))
        self.downsample = downsample

    def forward(self, x: Tensor, hw_shape: Sequence[int]
                ) -> Tuple[Tensor, Tuple[int, int], Tensor, Tuple[int, int]]:
        """Run the stage.

        Args:
            x (Tensor): [B, H * W, C].
            hw_shape (Sequence[int]): (H, W).

        Returns:
            tuple: (next-stage tokens, their (H', W'), this stage's output before the
            downsample [B, H * W, C], (H, W)). Without a downsample the first pair equals the
            second.
        """
        for block in self.blocks:
            x = block(x, hw_shape)
        if self.downsample:
            x_down, down_hw_shape = self.downsample(x, hw_shape)
            return x_down, down_hw_shape, x, hw_shape
        return x, hw_shape, x, hw_shape
