"""Tiny hand-made pipeline inputs shared by the transform tests.

The image is 20 x 30 (h x w). Each instance's mask is the filled rectangle of its box, so
after any geometric transform the mask's tight box must equal the transformed box.
"""
from typing import Optional, Sequence

import numpy as np

from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks

H, W = 20, 30


def make_image(h: int = H, w: int = W) -> np.ndarray:
    """A uint8 BGR image whose pixels differ by position, so moves are detectable."""
    ys, xs = np.mgrid[:h, :w]
    return np.stack([ys, xs, (ys * w + xs) % 256], axis=-1).astype(np.uint8)


def rect_polygon(box: Sequence[float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([x1, y1, x2, y1, x2, y2, x1, y2], dtype=np.float64)


def rect_bitmap(box: Sequence[int], h: int = H, w: int = W) -> np.ndarray:
    x1, y1, x2, y2 = [int(v) for v in box]
    bitmap = np.zeros((h, w), dtype=np.uint8)
    bitmap[y1:y2, x1:x2] = 1
    return bitmap


def make_results(boxes: Sequence[Sequence[int]],
                 labels: Optional[Sequence[int]] = None,
                 ignore: Optional[Sequence[bool]] = None,
                 masks: Optional[str] = 'bitmap',
                 h: int = H,
                 w: int = W) -> dict:
    """Results as after LoadImageFromFile + LoadAnnotations(with_mask=True).

    Args:
        boxes: Integer (x1, y1, x2, y2) boxes inside the image.
        labels: Labels; defaults to 0, 1, 2, ...
        ignore: Ignore flags; defaults to all False.
        masks: 'bitmap', 'polygon' or None (no ``gt_masks``).
    """
    n = len(boxes)
    results = dict(
        img=make_image(h, w), img_shape=(h, w), ori_shape=(h, w), img_id=7,
        img_path='demo.jpg',
        gt_bboxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        gt_bboxes_labels=np.array(range(n) if labels is None else labels, dtype=np.int64),
        gt_ignore_flags=np.array([False] * n if ignore is None else ignore, dtype=bool))
    if masks == 'bitmap':
        results['gt_masks'] = BitmapMasks([rect_bitmap(b, h, w) for b in boxes], h, w)
    elif masks == 'polygon':
        results['gt_masks'] = PolygonMasks([[rect_polygon(b)] for b in boxes], h, w)
    return results


def mask_boxes(masks) -> np.ndarray:
    """Tight (x1, y1, x2, y2) box of each rasterized mask, x2/y2 exclusive."""
    return masks.to_bitmap().get_bboxes().numpy() if isinstance(
        masks, PolygonMasks) else masks.get_bboxes().numpy()


def assert_masks_match_boxes(results: dict, atol: float = 1.0) -> None:
    """Masks, boxes, labels and flags have one entry per instance; masks hug their boxes."""
    n = len(results['gt_bboxes'])
    assert len(results['gt_bboxes_labels']) == n
    assert len(results['gt_ignore_flags']) == n
    masks = results['gt_masks']
    assert len(masks) == n
    assert (masks.height, masks.width) == tuple(results['img'].shape[:2])
    np.testing.assert_allclose(mask_boxes(masks), results['gt_bboxes'], atol=atol)
