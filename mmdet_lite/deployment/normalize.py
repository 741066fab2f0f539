"""The data preprocessor's per-pixel work, as a module the exported graph starts with."""
from typing import List, Optional

import torch
from torch import Tensor, nn


class InputNormalizer(nn.Module):
    """Channel swap and ``(x - mean) / std`` of a fixed-size image batch.

    ``DetDataPreprocessor`` (mmengine's ``ImgDataPreprocessor``) swaps BGR<->RGB first, then
    converts to float and normalizes, then pads; this module does the first steps in the same
    order, on a batch already of the exported size, so an exported graph takes raw pixel
    values as loaded (BGR for ``LoadImageFromFile``).

    Padding is the caller's: to match the eager preprocessor, pad with :meth:`raw_pad_value`
    (the raw value that normalizes to the preprocessor's ``pad_value``, i.e. the mean for the
    default ``pad_value=0``).

    Args:
        mean (list[float], optional): Per-channel mean in the channel order after the swap;
            None: no normalization.
        std (list[float], optional): Per-channel std.
        swap_channels (bool): Reverse the channel order (``bgr_to_rgb`` or ``rgb_to_bgr``).
        pad_value (float): The preprocessor's ``pad_value`` (after normalization).
    """

    def __init__(self, mean: Optional[List[float]] = None, std: Optional[List[float]] = None,
                 swap_channels: bool = False, pad_value: float = 0.0) -> None:
        super().__init__()
        self.normalize = mean is not None
        self.swap_channels = swap_channels
        self.pad_value = float(pad_value)
        if self.normalize:
            self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1),
                                 persistent=False)
            self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1),
                                 persistent=False)

    @classmethod
    def from_data_preprocessor(cls, preprocessor: nn.Module) -> 'InputNormalizer':
        """The normalization a ``DetDataPreprocessor`` applies in test mode."""
        normalize = getattr(preprocessor, '_enable_normalize', False)
        return cls(mean=preprocessor.mean.flatten().tolist() if normalize else None,
                   std=preprocessor.std.flatten().tolist() if normalize else None,
                   swap_channels=bool(getattr(preprocessor, '_channel_conversion', False)),
                   pad_value=float(getattr(preprocessor, 'pad_value', 0)))

    def forward(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] raw pixels -> [B, 3, H, W] normalized float."""
        if self.swap_channels:
            images = images[:, [2, 1, 0]]
        images = images.float()
        if self.normalize:
            images = (images - self.mean) / self.std
        return images

    def raw_pad_value(self) -> List[float]:
        """Per-channel raw value (input channel order) that becomes ``pad_value``."""
        if not self.normalize:
            return [self.pad_value] * 3
        values = (self.pad_value * self.std + self.mean).flatten().tolist()
        return values[::-1] if self.swap_channels else values
