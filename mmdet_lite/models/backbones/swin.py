"""Swin Transformer backbone (`Liu et al. 2021 <https://arxiv.org/abs/2103.14030>`_).

A patch embedding (stride ``patch_size``) followed by stages of window-attention blocks; each
stage but the last ends with a ``PatchMerging`` that halves the token grid and doubles the
channels. Stage ``i`` outputs ``embed_dims * 2**i`` channels at stride ``patch_size * 2**i``,
normalized by ``norm{i}``.

Names, arguments, defaults and state_dict keys are mmdetection 3.3's
(``mmdet.models.backbones.swin``): ``patch_embed.projection``, ``stages.{i}.blocks.{j}.attn
.w_msa.{qkv,proj,relative_position_bias_table,relative_position_index}``,
``stages.{i}.blocks.{j}.ffn.layers.{0.0,1}``, ``stages.{i}.downsample.{norm,reduction}``,
``norm{i}`` for each ``i`` in ``out_indices``. The blocks live in ``swin_blocks.py`` and the
official-checkpoint converter in ``swin_converter.py``; both are re-exported here, under
mmdetection's module path.
"""
import os
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.logging import MMLogger
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import constant_init, trunc_normal_, trunc_normal_init
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import to_2tuple
from torch import Tensor, nn

from mmdet_lite.models.layers.transformer.patch_embed import PatchEmbed, PatchMerging
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptMultiConfig

from .swin_blocks import (ShiftWindowMSA, SwinArgumentError, SwinBlock, SwinBlockSequence,
                          WindowMSA)
from .swin_converter import swin_converter

__all__ = [
    'SwinTransformer', 'SwinBlock', 'SwinBlockSequence', 'WindowMSA', 'ShiftWindowMSA',
    'SwinArgumentError', 'swin_converter'
]


@MODELS.register_module()
class SwinTransformer(BaseModule):
    """Swin Transformer returning the normalized feature maps of the selected stages.

    Swin-T (the defaults) on [B, 3, 512, 512] gives [B, 96, 128, 128], [B, 192, 64, 64],
    [B, 384, 32, 32], [B, 768, 16, 16]. Inputs of any size work: the patch embedding and
    every merging pad bottom/right, so stage ``i`` has ``ceil(H / (4 * 2**i))`` rows.

    Args:
        pretrain_img_size (int | tuple[int]): Image size of pretraining; sizes the absolute
            position embedding. Defaults to 224.
        in_channels (int): Input image channels. Defaults to 3.
        embed_dims (int): Channels of the first stage. Defaults to 96.
        patch_size (int | tuple[int]): Patch embedding kernel. Defaults to 4.
        window_size (int): Attention window side. Defaults to 7.
        mlp_ratio (int): FFN hidden channels / token channels. Defaults to 4.
        depths (Sequence[int]): Blocks per stage. Defaults to (2, 2, 6, 2).
        num_heads (Sequence[int]): Attention heads per stage. Defaults to (3, 6, 12, 24).
        strides (Sequence[int]): Patch embedding stride (must equal ``patch_size``), then the
            stride of each merging. Defaults to (4, 2, 2, 2).
        out_indices (Sequence[int]): Stages whose outputs are returned.
            Defaults to (0, 1, 2, 3).
        qkv_bias (bool): Bias of the ``qkv`` Linears. Defaults to True.
        qk_scale (float, optional): Logit scale override. Defaults to None.
        patch_norm (bool): Norm in the patch embedding and mergings. Defaults to True.
        drop_rate (float): Dropout rate. Defaults to 0.
        attn_drop_rate (float): Attention dropout rate. Defaults to 0.
        drop_path_rate (float): Stochastic depth of the last block; it grows linearly from 0
            over all blocks. Defaults to 0.1.
        use_abs_pos_embed (bool): Add a learned absolute position embedding
            (``absolute_pos_embed``, [1, num_patches, embed_dims]) to the patch tokens; the
            input must then be ``pretrain_img_size``. Defaults to False.
        act_cfg (dict): FFN activation. Defaults to dict(type='GELU').
        norm_cfg (dict): Norm layers. Defaults to dict(type='LN').
        with_cp (bool): Activation checkpointing in every block. Defaults to False.
        pretrained (str, optional): Deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``. Defaults to None.
        convert_weights (bool): The checkpoint is in the official Swin layout: convert it with
            ``swin_converter`` before loading. Defaults to False.
        frozen_stages (int): In ``train()``, freeze (eval mode, no gradient) the patch
            embedding and, for k >= 1, stages 1..k with their output norms; -1 freezes
            nothing. Defaults to -1.
        init_cfg (dict, optional): None (truncated-normal Linears, unit LayerNorms) or
            dict(type='Pretrained', checkpoint=PATH). Defaults to None.
    """

    def __init__(self,
                 pretrain_img_size: Union[int, Tuple[int, ...]] = 224,
                 in_channels: int = 3,
                 embed_dims: int = 96,
                 patch_size: Union[int, Tuple[int, int]] = 4,
                 window_size: int = 7,
                 mlp_ratio: int = 4,
                 depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24),
                 strides: Sequence[int] = (4, 2, 2, 2),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 patch_norm: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 use_abs_pos_embed: bool = False,
                 act_cfg: ConfigType = dict(type='GELU'),
                 norm_cfg: ConfigType = dict(type='LN'),
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 convert_weights: bool = False,
                 frozen_stages: int = -1,
                 init_cfg: OptMultiConfig = None) -> None:
        if isinstance(pretrain_img_size, int):
            pretrain_img_size = to_2tuple(pretrain_img_size)
        elif isinstance(pretrain_img_size, tuple):
            if len(pretrain_img_size) == 1:
                pretrain_img_size = to_2tuple(pretrain_img_size[0])
            if len(pretrain_img_size) != 2:
                raise SwinArgumentError(f'pretrain_img_size should have length 1 or 2, got '
                                        f'{len(pretrain_img_size)}: {pretrain_img_size}.')
        if init_cfg and pretrained:
            raise SwinArgumentError('init_cfg and pretrained cannot be specified at the same '
                                    "time; use init_cfg=dict(type='Pretrained', "
                                    'checkpoint=...) only.')
        if pretrained is not None and not isinstance(pretrained, str):
            raise TypeError(f'pretrained must be a str or None, got '
                            f'{type(pretrained).__name__}.')
        if strides[0] != patch_size:
            raise SwinArgumentError(f'Use non-overlapping patch embed: strides[0] '
                                    f'({strides[0]}) must equal patch_size ({patch_size}).')
        super().__init__(init_cfg=init_cfg)
        if pretrained is not None:
            warnings.warn('DeprecationWarning: pretrained is deprecated, please use '
                          '"init_cfg" instead')
            self.init_cfg = dict(type='Pretrained', checkpoint=pretrained)

        self.convert_weights = convert_weights
        self.frozen_stages = frozen_stages
        self.out_indices = out_indices
        self.use_abs_pos_embed = use_abs_pos_embed

        self.patch_embed = PatchEmbed(
            in_channels=in_channels,
            embed_dims=embed_dims,
            conv_type='Conv2d',
            kernel_size=patch_size,
            stride=strides[0],
            norm_cfg=norm_cfg if patch_norm else None)
        if use_abs_pos_embed:
            num_patches = ((pretrain_img_size[0] // patch_size) *
                           (pretrain_img_size[1] // patch_size))
            self.absolute_pos_embed = nn.Parameter(torch.zeros((1, num_patches, embed_dims)))
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        # Stochastic depth grows linearly from 0 (first block) to drop_path_rate (last).
        block_drop_path = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.stages = ModuleList()
        channels = embed_dims
        for i, depth in enumerate(depths):
            downsample = None
            if i < len(depths) - 1:
                downsample = PatchMerging(
                    in_channels=channels,
                    out_channels=2 * channels,
                    stride=strides[i + 1],
                    norm_cfg=norm_cfg if patch_norm else None)
            first = sum(depths[:i])
            self.stages.append(
                SwinBlockSequence(
                    embed_dims=channels,
                    num_heads=num_heads[i],
                    feedforward_channels=mlp_ratio * channels,
                    depth=depth,
                    window_size=window_size,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=block_drop_path[first:first + depth],
                    downsample=downsample,
                    act_cfg=act_cfg,
                    norm_cfg=norm_cfg,
                    with_cp=with_cp))
            if downsample:
                channels = downsample.out_channels

        self.num_features = [int(embed_dims * 2**i) for i in range(len(depths))]
        for i in out_indices:
            self.add_module(f'norm{i}', build_norm_layer(norm_cfg, self.num_features[i])[1])

    def train(self, mode: bool = True) -> 'SwinTransformer':
        """Set the training mode, keeping the frozen stages in eval mode."""
        super().train(mode)
        self._freeze_stages()
        return self

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            for param in self.patch_embed.parameters():
                param.requires_grad = False
            if self.use_abs_pos_embed:
                self.absolute_pos_embed.requires_grad = False
            self.drop_after_pos.eval()
        for i in range(self.frozen_stages):
            frozen = [self.stages[i]]
            if i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
            for module in frozen:
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def init_weights(self) -> None:
        """Initialize from scratch (``init_cfg`` None) or from a ``Pretrained`` checkpoint.

        From scratch, as mmdetection 3.3: Linears truncated-normal (std 0.02, zero bias),
        LayerNorms (1, 0), ``absolute_pos_embed`` truncated-normal; the convs keep PyTorch's
        init and the ``relative_position_bias_table`` its zeros (this override does not run
        the submodules' ``init_weights``).

        From a checkpoint: its ``state_dict`` / ``model`` entry (or the whole file),
        converted by ``swin_converter`` when ``convert_weights``; only ``backbone.``-prefixed
        keys are loaded (prefix stripped, then a ``module.`` prefix), non-strictly. A bias
        table of another window size is resized bicubically.

        Raises:
            FileNotFoundError: A local checkpoint path that does not exist.
            SwinArgumentError: ``init_cfg`` without a ``checkpoint``.
            KeyError: A checkpoint without any ``backbone.`` key.
        """
        logger = MMLogger.get_current_instance()
        if self.init_cfg is None:
            logger.warning(f'No pre-trained weights for {type(self).__name__}, training '
                           'start from scratch')
            if self.use_abs_pos_embed:
                trunc_normal_(self.absolute_pos_embed, std=0.02)
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    trunc_normal_init(module, std=.02, bias=0.)
                elif isinstance(module, nn.LayerNorm):
                    constant_init(module, 1.0)
            return

        if not isinstance(self.init_cfg, dict) or 'checkpoint' not in self.init_cfg:
            raise SwinArgumentError(f'Only support specify `Pretrained` in `init_cfg` in '
                                    f'{type(self).__name__}, got {self.init_cfg!r}.')
        state_dict = self._load_backbone_state_dict(self.init_cfg['checkpoint'], logger)
        self._adapt_position_embeddings(state_dict, logger)
        result = self.load_state_dict(state_dict, strict=False)
        logger.info(f'{type(self).__name__} loaded {self.init_cfg["checkpoint"]}: missing '
                    f'keys {result.missing_keys}, unexpected keys {result.unexpected_keys}')

    def _load_backbone_state_dict(self, path: str, logger: MMLogger) -> Dict[str, Tensor]:
        """Read ``path`` and return its backbone weights under this module's key names."""
        if isinstance(path, str) and '://' not in path and not os.path.isfile(
                os.path.expanduser(path)):
            raise FileNotFoundError(
                f'{type(self).__name__} init_cfg checkpoint file not found: {path!r} '
                f'(relative to {os.getcwd()}). Set backbone.init_cfg.checkpoint to an '
                'existing file, or backbone.init_cfg=None to start from random weights.')
        # Local files go through CheckpointLoader's '' scheme: torch.load, weights only.
        ckpt = CheckpointLoader.load_checkpoint(path, logger=logger, map_location='cpu')
        if 'state_dict' in ckpt:
            ckpt = ckpt['state_dict']
        elif 'model' in ckpt:
            ckpt = ckpt['model']
        if self.convert_weights:
            ckpt = swin_converter(ckpt)

        state_dict = OrderedDict(
            (key[len('backbone.'):], value) for key, value in ckpt.items()
            if key.startswith('backbone.'))
        if not state_dict:
            raise KeyError(f'{path!r} has no "backbone."-prefixed weights; for an official '
                           'Swin checkpoint set convert_weights=True.')
        if next(iter(state_dict)).startswith('module.'):
            state_dict = OrderedDict((key[len('module.'):], value)
                                     for key, value in state_dict.items())
        return state_dict

    def _adapt_position_embeddings(self, state_dict: Dict[str, Tensor],
                                   logger: MMLogger) -> None:
        """Fit the checkpoint's position embeddings to this model, in place.

        ``relative_position_bias_table`` of another window size is resized as a
        [heads, S1, S1] image to [heads, S2, S2] (bicubic; square windows, as mmdetection
        assumes) and its ``relative_position_index`` buffers are left to this model's.
        Tables with another head count, and an ``absolute_pos_embed`` of another shape, are
        dropped with a warning (they cannot load).
        """
        own = self.state_dict()
        pos_embed = state_dict.get('absolute_pos_embed')
        if pos_embed is not None and ('absolute_pos_embed' not in own or
                                      pos_embed.shape != own['absolute_pos_embed'].shape):
            logger.warning('Error in loading absolute_pos_embed, pass')
            del state_dict['absolute_pos_embed']

        # The index buffers follow from the window size: a checkpoint's of another window
        # would not load (size mismatch), and this model's own are right.
        for key in [k for k in state_dict if 'relative_position_index' in k]:
            if key in own and state_dict[key].shape != own[key].shape:
                del state_dict[key]

        for key in [k for k in state_dict if 'relative_position_bias_table' in k]:
            if key not in own:
                continue  # an unexpected key: load_state_dict(strict=False) ignores it
            table = state_dict[key]
            rows, heads = table.shape
            new_rows, new_heads = own[key].shape
            if heads != new_heads:
                logger.warning(f'Error in loading {key}, pass')
                del state_dict[key]
            elif rows != new_rows:
                side, new_side = int(rows**0.5), int(new_rows**0.5)
                image = table.permute(1, 0).reshape(1, heads, side, side)
                resized = F.interpolate(image, size=(new_side, new_side), mode='bicubic')
                state_dict[key] = resized.view(new_heads, new_rows).permute(1, 0).contiguous()

    def forward(self, x: Tensor) -> List[Tensor]:
        """Compute the normalized outputs of the stages in ``out_indices``.

        Args:
            x (Tensor): Images [B, in_channels, H, W].

        Returns:
            list[Tensor]: For each ``i`` in ``out_indices``, [B, embed_dims * 2**i, H_i, W_i]
            with ``H_i = ceil(H / (patch_size * 2**i))`` (default strides).
        """
        x, hw_shape = self.patch_embed(x)
        if self.use_abs_pos_embed:
            x = x + self.absolute_pos_embed
        x = self.drop_after_pos(x)

        outs = []
        for i, stage in enumerate(self.stages):
            x, hw_shape, out, out_hw_shape = stage(x, hw_shape)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(out)
                out = out.view(-1, *out_hw_shape, self.num_features[i])
                outs.append(out.permute(0, 3, 1, 2).contiguous())
        return outs
