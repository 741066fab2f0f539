"""Second-stage mask heads."""
from .fcn_mask_head import FCNMaskHead, paste_masks_in_image

__all__ = ['FCNMaskHead', 'paste_masks_in_image']
