"""Tiny hand-made pipeline inputs shared by the transform tests.

The image is 20 x 30 (h x w). Each instance's mask is the filled rectangle of its box, so
after any geometric transform the mask's tight box must equal the transformed box.
"""
from typing import Optional, Sequence

import numpy as np

from mmdet_lite.structures.bbox import HorizontalBoxes
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
    boxes = results['gt_bboxes']
    boxes = boxes.numpy() if isinstance(boxes, HorizontalBoxes) else boxes
    n = len(boxes)
    assert len(results['gt_bboxes_labels']) == n
    assert len(results['gt_ignore_flags']) == n
    masks = results['gt_masks']
    assert len(masks) == n
    assert (masks.height, masks.width) == tuple(results['img'].shape[:2])
    np.testing.assert_allclose(mask_boxes(masks), boxes, atol=atol)


# --- box containers and homography -----------------------------------------------------
BOX_KINDS = ('numpy', 'hbox')


def with_box_kind(results: dict, kind: str) -> dict:
    """Put ``results['gt_bboxes']`` in the container ``kind``: 'numpy' (float32 array, as
    ``LoadAnnotations(box_type=None)``) or 'hbox' (``HorizontalBoxes``, the default)."""
    if kind == 'hbox':
        results['gt_bboxes'] = HorizontalBoxes(results['gt_bboxes'])
    return results


def boxes_as_array(results: dict, kind: str) -> np.ndarray:
    """``results['gt_bboxes']`` as an array, after checking it kept the container ``kind``."""
    boxes = results['gt_bboxes']
    if kind == 'hbox':
        assert isinstance(boxes, HorizontalBoxes), type(boxes)
        return boxes.numpy()
    assert isinstance(boxes, np.ndarray) and boxes.dtype == np.float32, type(boxes)
    return boxes


def project_boxes(boxes, matrix, clip_shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """Map each box's four corners by the 3x3 ``matrix`` (numpy, float64) and take their
    axis-aligned hull; then clip to ``clip_shape`` (h, w) when given."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    xs = np.stack([x1, x2, x2, x1], axis=1)
    ys = np.stack([y1, y1, y2, y2], axis=1)
    homo = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ np.asarray(matrix, np.float64).T
    px, py = homo[..., 0] / homo[..., 2], homo[..., 1] / homo[..., 2]
    out = np.stack([px.min(1), py.min(1), px.max(1), py.max(1)], axis=1)
    if clip_shape is not None:
        out[:, 0::2] = out[:, 0::2].clip(0, clip_shape[1])
        out[:, 1::2] = out[:, 1::2].clip(0, clip_shape[0])
    return out


def assert_homography_maps_boxes(original_boxes, results: dict, kind: str,
                                 keep: Optional[Sequence[int]] = None,
                                 atol: float = 1e-4) -> None:
    """``results['homography_matrix']`` (float32 3x3) takes the original boxes (those of
    indices ``keep``) to the output boxes, clipped to the output image."""
    matrix = results['homography_matrix']
    assert matrix.shape == (3, 3) and matrix.dtype == np.float32
    original = np.asarray(original_boxes, dtype=np.float64).reshape(-1, 4)
    if keep is not None:
        original = original[list(keep)]
    expected = project_boxes(original, matrix, results['img'].shape[:2])
    np.testing.assert_allclose(boxes_as_array(results, kind), expected, atol=atol)
