"""Pyramid Vision Transformer backbones: PVT (`Wang et al. 2021
<https://arxiv.org/abs/2102.12122>`_) and PVTv2 (`Wang et al. 2021b
<https://arxiv.org/abs/2106.13797>`_).

Four stages, each a patch embedding (a strided conv + LayerNorm over tokens) followed by
``num_layers[i]`` :class:`PVTEncoderLayer`; stage ``i`` has ``embed_dims * num_heads[i]``
channels and, with the default strides 4, 2, 2, 2, a stride of 4, 8, 16, 32. v1 embeds
non-overlapping patches and adds a learned absolute position embedding; v2 embeds overlapping
patches (7x7 stride 4, then 3x3 stride 2), puts a depthwise conv in every FFN instead of the
position embedding and normalizes each stage's output.

Names, arguments, defaults and state_dict keys are mmdetection 3.3's
(``mmdet.models.backbones.pvt``): stage ``i`` is ``layers.i`` = ``[patch_embed, blocks, norm]``,
so keys read ``layers.i.0.projection.*`` / ``layers.i.0.norm.*`` (patch embedding),
``layers.i.1.j.*`` (the position embedding is ``layers.i.1.0`` in v1, the encoder layers
follow), ``layers.i.2.*`` (v2's stage norm). ``pvt_convert`` maps the official
(whai362/PVT) checkpoints onto these keys; ``init_weights`` applies it to an ``init_cfg``
checkpoint.
"""
import math
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.cnn import build_norm_layer
from mmengine.logging import MMLogger
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import constant_init, normal_init, trunc_normal_init
from mmengine.runner.checkpoint import CheckpointLoader, load_state_dict
from torch import Tensor, nn

from mmdet_lite.models.layers.transformer.patch_embed import PatchEmbed
from mmdet_lite.models.layers.transformer.utils import nlc_to_nchw
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptMultiConfig
from .pvt_layers import (AbsolutePositionEmbedding, MixFFN, PVTArgumentError, PVTEncoderLayer,
                         SpatialReductionAttention, _pair_shape)

__all__ = [
    'PyramidVisionTransformer', 'PyramidVisionTransformerV2', 'pvt_convert', 'MixFFN',
    'SpatialReductionAttention', 'PVTEncoderLayer', 'AbsolutePositionEmbedding',
    'PVTArgumentError'
]


@MODELS.register_module()
class PyramidVisionTransformer(BaseModule):
    """Pyramid Vision Transformer (v1 with the defaults; v2 via the flags below).

    PVT-Tiny (``num_layers=[2, 2, 2, 2]``) on [B, 3, 768, 768] gives [B, 64, 192, 192],
    [B, 128, 96, 96], [B, 320, 48, 48], [B, 512, 24, 24].

    Args:
        pretrain_img_size (int | tuple[int]): Pretraining image size; sizes the v1 position
            tables (``size // prod(patch_sizes[:i + 1])`` per side). Defaults to 224.
        in_channels (int): Image channels. Defaults to 3.
        embed_dims (int): Channels per head; stage ``i`` has ``embed_dims * num_heads[i]``.
            Defaults to 64.
        num_stages (int): Number of stages. Defaults to 4.
        num_layers (Sequence[int]): Encoder layers per stage. Defaults to [3, 4, 6, 3].
        num_heads (Sequence[int]): Attention heads per stage. Defaults to [1, 2, 5, 8].
        patch_sizes (Sequence[int]): Patch-embedding kernel per stage. Defaults to [4, 2, 2, 2].
        strides (Sequence[int]): Patch-embedding stride per stage. Defaults to [4, 2, 2, 2].
        paddings (Sequence[int]): Patch-embedding padding per stage. Defaults to [0, 0, 0, 0].
        sr_ratios (Sequence[int]): Attention spatial reduction per stage.
            Defaults to [8, 4, 2, 1].
        out_indices (Sequence[int]): Stages to output. Defaults to (0, 1, 2, 3).
        mlp_ratios (Sequence[int]): FFN hidden / token channels per stage.
            Defaults to [8, 8, 4, 4].
        qkv_bias (bool): Bias of the query/key/value projections. Defaults to True.
        drop_rate (float): Dropout rate. Defaults to 0.
        attn_drop_rate (float): Attention-weight dropout rate. Defaults to 0.
        drop_path_rate (float): Stochastic depth of the last layer, growing linearly from 0
            over all layers. Defaults to 0.1.
        use_abs_pos_embed (bool): v1's absolute position embedding. Defaults to True.
        norm_after_stage (bool): A LayerNorm on each stage's output (v2). Defaults to False.
        use_conv_ffn (bool): Depthwise 3x3 conv in the FFNs (v2). Defaults to False.
        act_cfg (dict): FFN activation. Defaults to ``dict(type='GELU')``.
        norm_cfg (dict): Norm layers. Defaults to ``dict(type='LN', eps=1e-6)``.
        pretrained (str, optional): Deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``. Defaults to None.
        convert_weights (bool): The ``init_cfg`` checkpoint is in the official layout;
            convert it with :func:`pvt_convert`. Defaults to True.
        init_cfg (dict, optional): None (from scratch) or a dict with a ``checkpoint``.
            Defaults to None.
    """

    def __init__(self,
                 pretrain_img_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 embed_dims: int = 64,
                 num_stages: int = 4,
                 num_layers: Sequence[int] = [3, 4, 6, 3],
                 num_heads: Sequence[int] = [1, 2, 5, 8],
                 patch_sizes: Sequence[int] = [4, 2, 2, 2],
                 strides: Sequence[int] = [4, 2, 2, 2],
                 paddings: Sequence[int] = [0, 0, 0, 0],
                 sr_ratios: Sequence[int] = [8, 4, 2, 1],
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 mlp_ratios: Sequence[int] = [8, 8, 4, 4],
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 use_abs_pos_embed: bool = True,
                 norm_after_stage: bool = False,
                 use_conv_ffn: bool = False,
                 act_cfg: ConfigType = dict(type='GELU'),
                 norm_cfg: ConfigType = dict(type='LN', eps=1e-6),
                 pretrained: Optional[str] = None,
                 convert_weights: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.convert_weights = convert_weights
        pretrain_img_size = _pair_shape(pretrain_img_size, 'pretrain_img_size')
        if init_cfg and pretrained:
            raise PVTArgumentError('init_cfg and pretrained cannot be setting at the same '
                                   "time; use init_cfg=dict(checkpoint=...) only.")
        if isinstance(pretrained, str):
            warnings.warn('DeprecationWarning: pretrained is deprecated, please use '
                          '"init_cfg" instead')
            self.init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        elif pretrained is not None:
            raise TypeError(f'pretrained must be a str or None, got {type(pretrained).__name__}')

        if not (num_stages == len(num_layers) == len(num_heads) == len(patch_sizes)
                == len(strides) == len(sr_ratios)):
            raise PVTArgumentError(
                f'PVT: num_layers, num_heads, patch_sizes, strides and sr_ratios need one '
                f'entry per stage ({num_stages}), got lengths {len(num_layers)}, '
                f'{len(num_heads)}, {len(patch_sizes)}, {len(strides)}, {len(sr_ratios)}.')
        if max(out_indices) >= num_stages:
            raise PVTArgumentError(f'PVT: out_indices {tuple(out_indices)} must be below '
                                   f'num_stages ({num_stages}).')
        self.embed_dims = embed_dims
        self.num_stages = num_stages
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.patch_sizes = patch_sizes
        self.strides = strides
        self.sr_ratios = sr_ratios
        self.out_indices = out_indices
        self.pretrained = pretrained

        # Stochastic depth grows linearly from 0 (first layer) to drop_path_rate (last).
        layer_drop_path = torch.linspace(0, drop_path_rate, sum(num_layers),
                                         device='cpu').tolist()
        self.layers = ModuleList()
        first = 0
        for i, num_layer in enumerate(num_layers):
            stage_dims = embed_dims * num_heads[i]
            patch_embed = PatchEmbed(
                in_channels=in_channels,
                embed_dims=stage_dims,
                kernel_size=patch_sizes[i],
                stride=strides[i],
                padding=paddings[i],
                bias=True,
                norm_cfg=norm_cfg)
            blocks = ModuleList()
            if use_abs_pos_embed:
                # The table covers the pretraining grid of this stage (patch sizes, not
                # strides, as in mmdetection).
                grid = tuple(s // int(np.prod(patch_sizes[:i + 1])) for s in pretrain_img_size)
                blocks.append(AbsolutePositionEmbedding(grid, stage_dims, drop_rate=drop_rate))
            blocks.extend(
                PVTEncoderLayer(
                    embed_dims=stage_dims,
                    num_heads=num_heads[i],
                    feedforward_channels=mlp_ratios[i] * stage_dims,
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=layer_drop_path[first + j],
                    qkv_bias=qkv_bias,
                    act_cfg=act_cfg,
                    norm_cfg=norm_cfg,
                    sr_ratio=sr_ratios[i],
                    use_conv_ffn=use_conv_ffn) for j in range(num_layer))
            norm = build_norm_layer(norm_cfg, stage_dims)[1] if norm_after_stage \
                else nn.Identity()
            self.layers.append(ModuleList([patch_embed, blocks, norm]))
            in_channels = stage_dims
            first += num_layer

    def init_weights(self) -> None:
        """Initialize from scratch (``init_cfg`` None) or from an ``init_cfg`` checkpoint.

        From scratch, as the official PVT: Linears truncated normal (std 0.02, zero bias),
        LayerNorms (1, 0), convs normal with std ``sqrt(2 / fan_out)`` (``fan_out = kh * kw *
        out_channels / groups``) and zero bias, position tables truncated normal (std 0.02).
        ``nn.MultiheadAttention``'s ``in_proj_weight`` is a bare Parameter and keeps its
        PyTorch (Xavier) init.

        From a checkpoint: its ``state_dict`` / ``model`` entry (or the whole file), converted
        by :func:`pvt_convert` when ``convert_weights``, loaded non-strictly. As in
        mmdetection, no ``backbone.`` prefix is stripped: the checkpoint is expected to be a
        classification one.

        Raises:
            PVTArgumentError: ``init_cfg`` without a ``checkpoint``.
        """
        logger = MMLogger.get_current_instance()
        if self.init_cfg is None:
            logger.warning(f'No pre-trained weights for {type(self).__name__}, training start '
                           'from scratch')
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_init(m, std=.02, bias=0.)
                elif isinstance(m, nn.LayerNorm):
                    constant_init(m, 1.0)
                elif isinstance(m, nn.Conv2d):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                    normal_init(m, 0, math.sqrt(2.0 / fan_out))
                elif isinstance(m, AbsolutePositionEmbedding):
                    m.init_weights()
            return

        if not isinstance(self.init_cfg, dict) or 'checkpoint' not in self.init_cfg:
            raise PVTArgumentError(f'Only support specify `Pretrained` in `init_cfg` in '
                                   f'{type(self).__name__}, got {self.init_cfg!r}.')
        checkpoint = CheckpointLoader.load_checkpoint(
            self.init_cfg['checkpoint'], logger=logger, map_location='cpu')
        logger.warning(f'Load pre-trained model for {type(self).__name__} from original repo')
        if 'state_dict' in checkpoint:
            state_dict = checkpoint['state_dict']
        elif 'model' in checkpoint:
            state_dict = checkpoint['model']
        else:
            state_dict = checkpoint
        if self.convert_weights:
            state_dict = pvt_convert(state_dict)
        load_state_dict(self, state_dict, strict=False, logger=logger)

    def forward(self, x: Tensor) -> List[Tensor]:
        """Compute the feature maps of the stages in ``out_indices``.

        Args:
            x (Tensor): Images [B, in_channels, H, W].

        Returns:
            list[Tensor]: Per selected stage ``i``, [B, embed_dims * num_heads[i], H_i, W_i];
            with the default strides ``H_i = H / 4, H / 8, H / 16, H / 32`` (v2 rounds up).
        """
        outs = []
        for i, (patch_embed, blocks, norm) in enumerate(self.layers):
            x, hw_shape = patch_embed(x)  # [B, H_i * W_i, C_i]
            for block in blocks:
                x = block(x, hw_shape)
            x = nlc_to_nchw(norm(x), hw_shape)  # [B, C_i, H_i, W_i]
            if i in self.out_indices:
                outs.append(x)
        return outs


@MODELS.register_module()
class PyramidVisionTransformerV2(PyramidVisionTransformer):
    """PVTv2: :class:`PyramidVisionTransformer` with overlapping patch embeddings (kernels
    7, 3, 3, 3, paddings 3, 1, 1, 1), no absolute position embedding, a depthwise conv in
    every FFN and a LayerNorm after every stage.

    Those five arguments are fixed; passing any of them raises a TypeError, as in
    mmdetection. PVTv2-b0 (``embed_dims=32, num_layers=[2, 2, 2, 2]``) on [B, 3, 768, 768]
    gives [B, 32, 192, 192], [B, 64, 96, 96], [B, 160, 48, 48], [B, 256, 24, 24].

    Args:
        **kwargs: The other :class:`PyramidVisionTransformer` arguments.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(
            patch_sizes=[7, 3, 3, 3],
            paddings=[3, 1, 1, 1],
            use_abs_pos_embed=False,
            norm_after_stage=True,
            use_conv_ffn=True,
            **kwargs)


def _official_mlp_key(key: str, use_conv_ffn: bool) -> str:
    """``...mlp.fc1`` / ``mlp.dwconv.dwconv`` / ``mlp.fc2`` -> MixFFN's ``ffn.layers.N``."""
    key = key.replace('mlp.', 'ffn.layers.')
    key = key.replace('fc1.', '0.').replace('dwconv.dwconv.', '1.')
    # fc2 follows fc1, [dwconv], activation and dropout in MixFFN's Sequential.
    return key.replace('fc2.', '4.' if use_conv_ffn else '3.')


def pvt_convert(ckpt: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Convert an official PVT / PVTv2 classification checkpoint to this backbone's keys.

    ===============================  ==============================================
    official key                     converted key
    ===============================  ==============================================
    ``patch_embed{s}.proj.*``        ``layers.{s-1}.0.projection.*``
    ``patch_embed{s}.norm.*``        ``layers.{s-1}.0.norm.*``
    ``pos_embed{s}``                 ``layers.{s-1}.1.0.pos_embed`` (v1)
    ``block{s}.{j}.attn.q`` + ``kv``  ``layers.{s-1}.1.{j'}.attn.attn.in_proj_*``
    ``block{s}.{j}.attn.proj.*``     ``layers.{s-1}.1.{j'}.attn.attn.out_proj.*``
    ``block{s}.{j}.mlp.fc1/fc2.*``   ``layers.{s-1}.1.{j'}.ffn.layers.{0, 3 or 4}.*``
    ``block{s}.{j}.mlp.dwconv.*``    ``layers.{s-1}.1.{j'}.ffn.layers.1.*`` (v2)
    ``norm{s}.*``                    ``layers.{s-1}.2.*`` (v2)
    ``head.*``, ``norm.*``, ``cls_token``  dropped (classifier parts)
    ===============================  ==============================================

    ``j' = j + 1`` when the checkpoint has position embeddings (v1: entry 0 of a stage's
    blocks is the embedding), else ``j``. The ``q`` and ``kv`` Linears are concatenated
    (rows q, k, v) into the attention's input projection; the fc Linears become 1x1 conv
    weights; v1's last table loses its class-token row when it has 1 + 7 * 7 entries.
    ``sr``, ``norm1``, ``norm2`` and ``attn.norm`` keep their names; any other key passes
    through unchanged.

    Args:
        ckpt (dict[str, Tensor]): The official state dict.

    Returns:
        OrderedDict[str, Tensor]: The converted state dict.
    """
    use_abs_pos_embed = any(k.startswith('pos_embed') for k in ckpt)
    use_conv_ffn = any('dwconv' in k for k in ckpt)
    converted = OrderedDict()
    for key, value in ckpt.items():
        if key.startswith(('head', 'norm.', 'cls_token')):
            continue
        new_key, new_value = key, value
        if key.startswith('pos_embed'):
            stage = int(key[len('pos_embed'):])
            new_key = f'layers.{stage - 1}.1.0.pos_embed'
            if stage == 4 and value.size(1) == 50:  # class token + 7 x 7 table
                new_value = value[:, 1:, :]
        elif key.startswith('patch_embed'):
            head, rest = key.split('.', 1)
            stage = int(head[len('patch_embed'):])
            new_key = f'layers.{stage - 1}.0.{rest}'.replace('proj.', 'projection.')
        elif key.startswith('block'):
            head, layer, rest = key.split('.', 2)
            stage = int(head[len('block'):])
            prefix = f'layers.{stage - 1}.1.{int(layer) + use_abs_pos_embed}'
            if rest.startswith('attn.kv.'):
                continue  # folded into the q entry
            if rest.startswith('attn.q.'):
                param = rest[len('attn.q.'):]  # 'weight' or 'bias'
                new_key = f'{prefix}.attn.attn.in_proj_{param}'
                new_value = torch.cat([value, ckpt[key.replace('attn.q.', 'attn.kv.')]], dim=0)
            elif rest.startswith('attn.proj.'):
                new_key = f'{prefix}.attn.attn.out_proj.{rest[len("attn.proj."):]}'
            elif rest.startswith('mlp.'):
                new_key = _official_mlp_key(f'{prefix}.{rest}', use_conv_ffn)
                if rest in ('mlp.fc1.weight', 'mlp.fc2.weight'):
                    new_value = value.reshape(*value.shape, 1, 1)  # Linear -> 1x1 conv
            else:  # norm1, norm2, attn.sr, attn.norm
                new_key = f'{prefix}.{rest}'
        elif key.startswith('norm'):
            stage = int(key[len('norm')])
            new_key = f'layers.{stage - 1}.2{key[len("norm") + 1:]}'
        converted[new_key] = new_value
    return converted
