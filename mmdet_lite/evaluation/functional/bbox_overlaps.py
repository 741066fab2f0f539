"""Numpy IoU / IoF between two sets of boxes, as used by the VOC-style evaluation code."""
import numpy as np

_MODES = ('iou', 'iof')


class OverlapModeError(ValueError, AssertionError):
    """Unsupported ``mode``; also an ``AssertionError`` as in mmdetection."""


def bbox_overlaps(bboxes1: np.ndarray,
                  bboxes2: np.ndarray,
                  mode: str = 'iou',
                  eps: float = 1e-6,
                  use_legacy_coordinate: bool = False) -> np.ndarray:
    """Compute the overlap of every box in ``bboxes1`` with every box in ``bboxes2``.

    Args:
        bboxes1 (np.ndarray): Boxes of shape [N, 4] as (x1, y1, x2, y2); further columns
            (e.g. a score in [N, 5] detections) are ignored, as in mmdetection.
        bboxes2 (np.ndarray): Boxes of shape [K, 4] (or more columns) as (x1, y1, x2, y2).
        mode (str): ``'iou'`` (intersection over union) or ``'iof'`` (intersection over the
            area of the ``bboxes1`` box). Defaults to ``'iou'``.
        eps (float): Lower bound of the denominator. Defaults to 1e-6.
        use_legacy_coordinate (bool): Count pixels inclusively as mmdet v1 / the official VOC
            code do: width is ``x2 - x1 + 1`` and height ``y2 - y1 + 1``. Defaults to False.

    Returns:
        np.ndarray: float32 overlaps of shape [N, K] (zeros if either set is empty).

    Example:
        >>> a = np.array([[0, 0, 10, 10]])
        >>> b = np.array([[5, 0, 15, 10]])
        >>> bbox_overlaps(a, b)  # 50 / 150
        array([[0.33333334]], dtype=float32)
    """
    if mode not in _MODES:
        raise OverlapModeError(f'mode must be one of {_MODES}, but got {mode!r}')
    extra = 1. if use_legacy_coordinate else 0.
    bboxes1 = np.asarray(bboxes1)[:, :4].astype(np.float32)
    bboxes2 = np.asarray(bboxes2)[:, :4].astype(np.float32)
    rows, cols = bboxes1.shape[0], bboxes2.shape[0]
    if rows * cols == 0:
        return np.zeros((rows, cols), dtype=np.float32)

    def areas(boxes: np.ndarray) -> np.ndarray:
        return (boxes[:, 2] - boxes[:, 0] + extra) * (boxes[:, 3] - boxes[:, 1] + extra)

    area1, area2 = areas(bboxes1), areas(bboxes2)
    lt = np.maximum(bboxes1[:, None, :2], bboxes2[None, :, :2])  # [N, K, 2]
    rb = np.minimum(bboxes1[:, None, 2:], bboxes2[None, :, 2:])  # [N, K, 2]
    wh = np.maximum(rb - lt + extra, 0)
    overlap = wh[..., 0] * wh[..., 1]
    if mode == 'iou':
        denom = area1[:, None] + area2[None, :] - overlap
    else:
        denom = np.broadcast_to(area1[:, None], overlap.shape)
    return (overlap / np.maximum(denom, eps)).astype(np.float32)
