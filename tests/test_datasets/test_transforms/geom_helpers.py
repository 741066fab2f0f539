"""Helpers for the geometric transform tests: box containers and an independent projection.

Inputs come from ``transform_helpers.make_results`` (20 x 30 image, rectangle masks).
"""
import numpy as np
from transform_helpers import mask_boxes

from mmdet_lite.structures.bbox import HorizontalBoxes

BOX_KINDS = ('numpy', 'hbox')


def use_box_kind(results: dict, kind: str) -> dict:
    """Put ``results['gt_bboxes']`` in the container ``kind``: 'numpy' or 'hbox'."""
    if kind == 'hbox':
        results['gt_bboxes'] = HorizontalBoxes(results['gt_bboxes'])
    return results


def boxes_array(results: dict, kind: str) -> np.ndarray:
    """``results['gt_bboxes']`` as a float array, after checking its container is ``kind``."""
    boxes = results['gt_bboxes']
    if kind == 'hbox':
        assert isinstance(boxes, HorizontalBoxes), type(boxes)
        return boxes.numpy()
    assert isinstance(boxes, np.ndarray), type(boxes)
    assert boxes.dtype == np.float32
    return boxes


def project_corners(boxes, matrix) -> np.ndarray:
    """Hull of the four corners of each box mapped by the 3x3 ``matrix`` (float64 numpy)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1),
                        np.stack([x2, y2], -1), np.stack([x1, y2], -1)], axis=1)  # [N, 4, 2]
    homo = np.concatenate([corners, np.ones(corners.shape[:2] + (1, ))], axis=-1)
    mapped = homo @ np.asarray(matrix, dtype=np.float64).T
    xy = mapped[..., :2] / mapped[..., 2:]
    return np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=-1)


def clip_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """Boxes with x clipped to [0, w] and y to [0, h]."""
    boxes = np.array(boxes, dtype=np.float64)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    return boxes


def assert_instances_aligned(results: dict, kind: str = 'numpy', atol: float = 0.) -> None:
    """One label/flag/mask per box; masks have the image's size and hug their boxes."""
    boxes = boxes_array(results, kind)
    n = len(boxes)
    assert len(results['gt_bboxes_labels']) == n
    assert len(results['gt_ignore_flags']) == n
    if 'gt_masks' in results:
        masks = results['gt_masks']
        assert len(masks) == n
        assert (masks.height, masks.width) == tuple(results['img'].shape[:2])
        np.testing.assert_allclose(mask_boxes(masks), boxes, atol=atol)
