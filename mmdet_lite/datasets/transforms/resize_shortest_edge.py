"""ResizeShortestEdge: detectron2-style "short side to S, long side at most M" resizing."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform

from mmdet_lite.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ResizeShortestEdge(BaseTransform):
    """Resize so the short edge becomes ``scale``, unless the long edge would exceed
    ``max_size``, in which case the long edge becomes ``max_size``.

    The aspect ratio is kept; the target (w, h) (sides rounded to the nearest pixel) is
    handed to an inner resize transform (``Resize`` by default, built from this registry
    with ``resize_kwargs``), which resizes the image, boxes, masks, semantic map and records
    ``homography_matrix``.

    Modified keys: those of the inner resize (``img``, ``img_shape``, ``gt_bboxes`` ...).
    Added keys: ``scale``, ``scale_factor``, ``keep_ratio``, ``homography_matrix``.

    Args:
        scale (int | tuple[int, int]): Target short edge; for a tuple its minimum.
        max_size (int, optional): Largest allowed long edge. Defaults to None (no limit).
        resize_type (str): Registered type of the inner resize. Defaults to 'Resize'.
        **resize_kwargs: Other arguments of the inner resize (``interpolation`` ...).
    """

    def __init__(self,
                 scale: Union[int, Tuple[int, int]],
                 max_size: Optional[int] = None,
                 resize_type: str = 'Resize',
                 **resize_kwargs) -> None:
        super().__init__()
        self.scale = scale
        self.max_size = max_size
        self.resize_cfg = dict(type=resize_type, **resize_kwargs)
        # Built with scale=0 as a placeholder: the target is set before each call.
        self.resize = TRANSFORMS.build({'scale': 0, **self.resize_cfg})

    def _get_output_shape(self, img: np.ndarray,
                          short_edge_length: Union[int, Sequence[int]]) -> Tuple[int, int]:
        """Target (w, h) for ``img`` [H, W, ...].

        Args:
            img (np.ndarray): The image.
            short_edge_length (int | Sequence[int]): Wanted short edge; for a sequence,
                its minimum.

        Returns:
            tuple[int, int]: (new_w, new_h).
        """
        h, w = img.shape[:2]
        size = float(short_edge_length if isinstance(short_edge_length, (int, float))
                     else min(short_edge_length))
        factor = size / min(h, w)
        new_h, new_w = (size, factor * w) if h < w else (factor * h, size)
        if self.max_size and max(new_h, new_w) > self.max_size:
            shrink = self.max_size / max(new_h, new_w)
            new_h, new_w = new_h * shrink, new_w * shrink
        return int(new_w + 0.5), int(new_h + 0.5)

    def transform(self, results: dict) -> dict:
        """Resize ``results`` with the inner resize set to the computed (w, h).

        Args:
            results (dict): Pipeline results with ``img``.

        Returns:
            dict: The inner resize's output.
        """
        self.resize.scale = self._get_output_shape(results['img'], self.scale)
        return self.resize(results)
