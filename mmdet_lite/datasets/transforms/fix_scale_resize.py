"""FixScaleResize: ``Resize`` whose ``keep_ratio`` size truncates instead of rounding."""
from typing import Tuple

from mmdet_lite.registry import TRANSFORMS

from .resize import Resize


@TRANSFORMS.register_module()
class FixScaleResize(Resize):
    """:class:`Resize` with mmdetection's fixed ``keep_ratio`` rounding.

    With ``keep_ratio``, ``Resize`` sizes the output as ``int(side * factor + 0.5)``, which
    can overshoot the requested scale by a pixel; this transform truncates instead
    (``int(side * factor)``), so a (w, h) ``scale`` is never exceeded. Everything else
    (arguments, keys, boxes, masks, ``homography_matrix``, repr) is :class:`Resize`'s.
    """

    def _keep_ratio_size(self, w: int, h: int, scale: Tuple[int, int]) -> Tuple[int, int]:
        """(w, h) fitting ``scale`` (long edge <= max, short edge <= min), truncated."""
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
        return int(w * float(factor)), int(h * float(factor))
