"""Second-stage mask heads."""
from .fcn_mask_head import FCNMaskHead, paste_masks_in_image

__all__ = ['FCNMaskHead', 'paste_masks_in_image']

# Mask Scoring R-CNN's mask IoU head.
from .maskiou_head import MaskIoUHead  # noqa: E402

__all__ += ['MaskIoUHead']

# Grid R-CNN's grid head.
from .grid_head import GridHead  # noqa: E402

__all__ += ['GridHead']
