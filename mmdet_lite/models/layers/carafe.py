"""CARAFE, content-aware upsampling (Wang et al., https://arxiv.org/abs/1905.02188), in torch.

CARAFE upsamples by ``scale_factor`` s: every output pixel is a weighted sum of the
k x k input neighbourhood around the input pixel it falls into, with weights (a
"reassembly kernel") predicted from the content and normalised by a softmax.

mmcv ships the reassembly as a compiled op (``mmcv.ops.carafe``); :func:`carafe` here is
the same computation in plain torch (differentiable by autograd, any device), and
:class:`CARAFEPack` is mmcv's upsampler module with the same arguments and parameter
names (``channel_compressor``, ``content_encoder``), so mmdetection checkpoints load.

``CARAFEPack`` is registered as ``'carafe'`` in mmdet_lite's ``MODELS`` and, as mmcv does,
in mmengine's root ``MODELS``, where ``mmcv.cnn.build_upsample_layer`` looks when no
default scope is set, so ``upsample_cfg=dict(type='carafe', ...)`` works anywhere.
"""
import torch.nn.functional as F
from mmengine.model import normal_init, xavier_init
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import Tensor, nn

from mmdet_lite.registry import MODELS


class CARAFEArgumentError(ValueError, AssertionError):
    """A CARAFE argument or input shape mmcv asserts against."""


def _check_carafe_inputs(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
                         scale_factor: int) -> None:
    """Raise :class:`CARAFEArgumentError` where mmcv's op asserts."""
    if not scale_factor >= 1:
        raise CARAFEArgumentError(f'carafe scale_factor must be >= 1, got {scale_factor}.')
    if not (kernel_size >= 1 and (kernel_size - 1) % 2 == 0):
        raise CARAFEArgumentError(f'carafe kernel_size must be odd and >= 1, got '
                                  f'{kernel_size}.')
    if features.dim() != 4 or masks.dim() != 4:
        raise CARAFEArgumentError('carafe features and masks must be 4-D [N, C, H, W], got '
                                  f'{tuple(features.shape)} and {tuple(masks.shape)}.')
    if features.size(1) % group_size != 0:
        raise CARAFEArgumentError(f'carafe feature channels ({features.size(1)}) must be '
                                  f'divisible by group_size ({group_size}).')
    expected = (features.size(0), kernel_size * kernel_size * group_size,
                features.size(2) * scale_factor, features.size(3) * scale_factor)
    if tuple(masks.shape) != expected:
        raise CARAFEArgumentError(
            f'carafe masks must have shape [N, kernel_size**2 * group_size, H * s, W * s] = '
            f'{list(expected)} for features {tuple(features.shape)}, got '
            f'{list(masks.shape)}.')


def carafe(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
           scale_factor: int) -> Tensor:
    """Reassemble ``features`` into an s-times larger map with per-pixel kernels.

    Output pixel (y, x) of channel c is
    ``sum_{dy, dx} masks[g, dy, dx, y, x] * features[c, y // s + dy - r, x // s + dx - r]``
    with r = (k - 1) // 2, g the group of channel c (channels split into ``group_size``
    contiguous blocks) and zero outside the input.

    Args:
        features (Tensor): Input map, shape [N, C, H, W].
        masks (Tensor): Reassembly kernels, shape [N, k*k*G, H*s, W*s]; channel
            ``g*k*k + dy*k + dx`` is tap (dy, dx) of group g (mmcv's layout).
        kernel_size (int): k, odd.
        group_size (int): G, number of channel groups sharing a kernel.
        scale_factor (int): s, the upsampling ratio.

    Returns:
        Tensor: Upsampled map, shape [N, C, H*s, W*s].
    """
    _check_carafe_inputs(features, masks, kernel_size, group_size, scale_factor)
    n, c, h, w = features.shape
    k, g, s = kernel_size, group_size, scale_factor
    r = (k - 1) // 2
    padded = F.pad(features, (r, r, r, r))  # zeros stand for taps outside the input
    # [N, G, k*k, H, s, W, s]: each output pixel split into (input pixel, sub-position).
    kernels = masks.reshape(n, g, k * k, h, s, w, s)
    out = features.new_zeros(n, g, c // g, h, s, w, s)
    # One pass per tap keeps memory at the output size, where unfolding all k*k taps at
    # once would hold k*k shifted copies of the input.
    for dy in range(k):
        for dx in range(k):
            shifted = padded[:, :, dy:dy + h, dx:dx + w].reshape(n, g, c // g, h, 1, w, 1)
            out = out + shifted * kernels[:, :, None, dy * k + dx]
    return out.reshape(n, c, h * s, w * s)


class CARAFE(nn.Module):
    """Module wrapper of :func:`carafe`, as ``mmcv.ops.CARAFE``.

    Args:
        kernel_size (int): Reassembly kernel size k (odd).
        group_size (int): Number of channel groups G.
        scale_factor (int): Upsampling ratio s.
    """

    def __init__(self, kernel_size: int, group_size: int, scale_factor: int) -> None:
        super().__init__()
        for name, value in (('kernel_size', kernel_size), ('group_size', group_size),
                            ('scale_factor', scale_factor)):
            if not isinstance(value, int):
                raise CARAFEArgumentError(f'CARAFE {name} must be an int, got {value!r}.')
        self.kernel_size = kernel_size
        self.group_size = group_size
        self.scale_factor = scale_factor

    def forward(self, features: Tensor, masks: Tensor) -> Tensor:
        """Reassemble [N, C, H, W] features with [N, k*k*G, H*s, W*s] masks."""
        return carafe(features, masks, self.kernel_size, self.group_size, self.scale_factor)


@MODELS.register_module(name='carafe')
class CARAFEPack(nn.Module):
    """CARAFE upsampler: channel compressor, content encoder and reassembly.

    The compressor (1x1 conv) shrinks the input to ``compressed_channels``; the content
    encoder (``encoder_kernel`` conv) predicts ``up_kernel**2 * up_group`` kernel weights
    for each of the s*s output positions of every input pixel; the weights are
    pixel-shuffled to the output resolution, softmax-normalised per kernel and used by
    :func:`carafe`.

    Args:
        channels (int): Input (and output) channels C.
        scale_factor (int): Upsampling ratio s.
        up_kernel (int): Reassembly kernel size k. Defaults to 5.
        up_group (int): Reassembly channel groups G. Defaults to 1.
        encoder_kernel (int): Kernel size of the content encoder. Defaults to 3.
        encoder_dilation (int): Dilation of the content encoder. Defaults to 1.
        compressed_channels (int): Output channels of the compressor. Defaults to 64.
    """

    def __init__(self,
                 channels: int,
                 scale_factor: int,
                 up_kernel: int = 5,
                 up_group: int = 1,
                 encoder_kernel: int = 3,
                 encoder_dilation: int = 1,
                 compressed_channels: int = 64) -> None:
        super().__init__()
        self.channels = channels
        self.scale_factor = scale_factor
        self.up_kernel = up_kernel
        self.up_group = up_group
        self.encoder_kernel = encoder_kernel
        self.encoder_dilation = encoder_dilation
        self.compressed_channels = compressed_channels
        self.channel_compressor = nn.Conv2d(channels, compressed_channels, 1)
        self.content_encoder = nn.Conv2d(
            compressed_channels,
            up_kernel * up_kernel * up_group * scale_factor * scale_factor,
            encoder_kernel,
            padding=int((encoder_kernel - 1) * encoder_dilation / 2),
            dilation=encoder_dilation)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform convs; a near-zero encoder so kernels start close to uniform."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                xavier_init(m, distribution='uniform')
        normal_init(self.content_encoder, std=0.001)

    def kernel_normalizer(self, mask: Tensor) -> Tensor:
        """Raw encoder output to reassembly kernels.

        Args:
            mask (Tensor): [N, k*k*G*s*s, H, W] from the content encoder.

        Returns:
            Tensor: [N, k*k*G, H*s, W*s], each kernel (k*k taps) summing to 1.
        """
        mask = F.pixel_shuffle(mask, self.scale_factor)
        n, mask_c, h, w = mask.shape
        groups = mask_c // (self.up_kernel**2)
        mask = F.softmax(mask.view(n, groups, -1, h, w), dim=2, dtype=mask.dtype)
        return mask.view(n, mask_c, h, w).contiguous()

    def feature_reassemble(self, x: Tensor, mask: Tensor) -> Tensor:
        """Apply :func:`carafe` with this module's kernel size, groups and scale."""
        return carafe(x, mask, self.up_kernel, self.up_group, self.scale_factor)

    def forward(self, x: Tensor) -> Tensor:
        """Upsample ``x``.

        Args:
            x (Tensor): [N, channels, H, W].

        Returns:
            Tensor: [N, channels, H*s, W*s].
        """
        mask = self.kernel_normalizer(self.content_encoder(self.channel_compressor(x)))
        return self.feature_reassemble(x, mask)


# mmcv registers its CARAFEPack as 'carafe' in the root registry; do the same unless a
# full mmcv already did.
if 'carafe' not in MMENGINE_MODELS.module_dict:
    MMENGINE_MODELS.register_module('carafe', module=CARAFEPack)

__all__ = ['carafe', 'CARAFE', 'CARAFEPack', 'CARAFEArgumentError']
