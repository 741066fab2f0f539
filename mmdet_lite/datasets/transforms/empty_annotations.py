"""LoadEmptyAnnotations: empty ground truth for unlabeled images (semi-supervised)."""
import numpy as np
from mmcv.transforms import BaseTransform

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.mask import BitmapMasks


@TRANSFORMS.register_module()
class LoadEmptyAnnotations(BaseTransform):
    """Add empty ``gt_*`` entries, as ``LoadAnnotations`` would for an image without
    instances, so unlabeled images go through the same pipeline as labeled ones.

    Added keys: ``gt_bboxes`` (np.float32 [0, 4]), ``gt_ignore_flags`` (bool [0]),
    ``gt_bboxes_labels`` (np.int64 [0]), ``gt_masks`` (BitmapMasks of 0 masks of the
    image's size) and ``gt_seg_map`` (np.uint8 [H, W] filled with ``seg_ignore_label``).
    Masks and the semantic map need ``img_shape``.

    Args:
        with_bbox (bool): Add boxes and ignore flags. Defaults to True.
        with_label (bool): Add labels. Defaults to True.
        with_mask (bool): Add masks. Defaults to False.
        with_seg (bool): Add a semantic map. Defaults to False.
        seg_ignore_label (int): Fill value of the semantic map; must match the
            ``ignore_index`` of the semantic head. Defaults to 255.
    """

    def __init__(self,
                 with_bbox: bool = True,
                 with_label: bool = True,
                 with_mask: bool = False,
                 with_seg: bool = False,
                 seg_ignore_label: int = 255) -> None:
        self.with_bbox = with_bbox
        self.with_label = with_label
        self.with_mask = with_mask
        self.with_seg = with_seg
        self.seg_ignore_label = seg_ignore_label

    def transform(self, results: dict) -> dict:
        """Add the empty annotations.

        Args:
            results (dict): Pipeline results (with ``img_shape`` for masks/seg).

        Returns:
            dict: ``results`` with the empty ``gt_*`` entries.
        """
        if self.with_bbox:
            results['gt_bboxes'] = np.zeros((0, 4), dtype=np.float32)
            results['gt_ignore_flags'] = np.zeros((0, ), dtype=bool)
        if self.with_label:
            results['gt_bboxes_labels'] = np.zeros((0, ), dtype=np.int64)
        if self.with_mask:
            h, w = results['img_shape'][:2]
            results['gt_masks'] = BitmapMasks(np.zeros((0, h, w), dtype=np.uint8), h, w)
        if self.with_seg:
            h, w = results['img_shape'][:2]
            results['gt_seg_map'] = np.full((h, w), self.seg_ignore_label, dtype=np.uint8)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(with_bbox={self.with_bbox}, '
                f'with_label={self.with_label}, with_mask={self.with_mask}, '
                f'with_seg={self.with_seg}, seg_ignore_label={self.seg_ignore_label})')
