"""Drop ground-truth instances too small to learn from."""
from typing import Optional, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import BaseBoxes, autocast_box_type

from .transform_arg_errors import MissingResultKeyError, check_arg

# Every key holding one entry per instance; they are filtered together to stay aligned.
_INSTANCE_KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_masks', 'gt_ignore_flags')


@TRANSFORMS.register_module()
class FilterAnnotations(BaseTransform):
    """Keep instances whose box is wider and taller than ``min_gt_bbox_wh`` and/or whose
    mask has at least ``min_gt_mask_area`` pixels.

    ``gt_bboxes`` may be a box object or a float32 array [N, 4] and keeps its kind.

    Modified keys: ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_masks``, ``gt_ignore_flags``.

    Args:
        min_gt_bbox_wh (tuple[float, float]): Box width and height must be strictly
            greater than these. Defaults to (1, 1).
        min_gt_mask_area (int): Mask area (pixels) must be at least this.
            Defaults to 1.
        by_box (bool): Filter by box size. Defaults to True.
        by_mask (bool): Filter by mask area (needs ``gt_masks``). Defaults to False.
        keep_empty (bool): mmdetection's (inverted-sounding) flag: when True, a sample
            left with no instance is dropped by returning None; when False it is
            returned with no instances. A sample that had no instance to begin with
            is always returned. Defaults to True.
    """

    def __init__(self,
                 min_gt_bbox_wh: Tuple[float, float] = (1, 1),
                 min_gt_mask_area: int = 1,
                 by_box: bool = True,
                 by_mask: bool = False,
                 keep_empty: bool = True) -> None:
        check_arg(by_box or by_mask,
                  'FilterAnnotations: at least one of `by_box` and `by_mask` must be True.')
        self.min_gt_bbox_wh = min_gt_bbox_wh
        self.min_gt_mask_area = min_gt_mask_area
        self.by_box = by_box
        self.by_mask = by_mask
        self.keep_empty = keep_empty

    @autocast_box_type()
    def transform(self, results: dict) -> Optional[dict]:
        """Filter the instances of ``results``.

        Args:
            results (dict): Pipeline results with ``gt_bboxes`` (and ``gt_masks`` when
                ``by_mask``).

        Returns:
            dict | None: The filtered results, or None when every instance was removed
            and ``keep_empty`` is True.
        """
        if 'gt_bboxes' not in results:
            raise MissingResultKeyError("FilterAnnotations needs results['gt_bboxes'] "
                                        '(run LoadAnnotations first).')
        bboxes = results['gt_bboxes']
        if len(bboxes) == 0:
            return results
        keep = np.ones(len(bboxes), dtype=bool)
        if self.by_box:
            keep &= ((bboxes.widths > self.min_gt_bbox_wh[0]).numpy()
                     & (bboxes.heights > self.min_gt_bbox_wh[1]).numpy())
        if self.by_mask:
            if 'gt_masks' not in results:
                raise MissingResultKeyError(
                    "FilterAnnotations(by_mask=True) needs results['gt_masks'] "
                    '(LoadAnnotations with with_mask=True).')
            keep &= np.asarray(results['gt_masks'].areas) >= self.min_gt_mask_area
        if not keep.any() and self.keep_empty:
            return None
        for key in _INSTANCE_KEYS:
            if key in results:
                results[key] = _take(results[key], keep)
        return results

    def __repr__(self) -> str:
        # mmdetection's repr shows only these two arguments.
        return (f'{self.__class__.__name__}(min_gt_bbox_wh={self.min_gt_bbox_wh}, '
                f'keep_empty={self.keep_empty})')


def _take(values: Union[np.ndarray, object], keep: np.ndarray):
    """Index arrays and box objects with the boolean ``keep``; masks take integer indices."""
    if isinstance(values, (np.ndarray, BaseBoxes)):
        return values[keep]
    return values[keep.nonzero()[0]]
