"""Random flipping of an image with its boxes, masks and semantic map."""
from typing import Iterable, Optional, Sequence, Union

import mmcv
import numpy as np
from mmcv.transforms import RandomFlip as MMCVRandomFlip

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type

from .homography import record_homography
from .transform_arg_errors import TransformArgError

_DIRECTIONS = ('horizontal', 'vertical', 'diagonal')


@TRANSFORMS.register_module()
class RandomFlip(MMCVRandomFlip):
    """Flip ``img``, ``gt_bboxes``, ``gt_masks`` and ``gt_seg_map`` with some probability.

    The choice of direction is mmcv's:

    - ``prob`` float, ``direction`` str: flip that way with probability ``prob``.
    - ``prob`` float, ``direction`` list: each direction with ``prob / len(direction)``.
    - ``prob`` list, ``direction`` list: ``direction[i]`` with ``prob[i]``.

    A box [x1, y1, x2, y2] in a W x H image becomes [W - x2, y1, W - x1, y2] horizontally,
    [x1, H - y2, x2, H - y1] vertically, and both for 'diagonal'. ``gt_bboxes`` may be a
    box object or a float32 array [N, 4] and keeps its kind. When a flip happens its 3x3
    matrix (e.g. [[-1, 0, W], [0, 1, 0], [0, 0, 1]]) is composed onto
    ``homography_matrix``; as in mmdetection nothing is recorded when there is no flip.
    As in mmdetection, the semantic map is flipped without swapping ``swap_seg_labels``.

    Added keys: ``flip`` (bool), ``flip_direction`` (str or None), ``homography_matrix``.

    Args:
        prob (float | list[float]): Flip probability (or one per direction).
        direction (str | list[str]): 'horizontal', 'vertical' or 'diagonal', or a list
            of them. Defaults to 'horizontal'.
        swap_seg_labels (list, optional): Accepted as mmcv does; unused for detection, as
            in mmdetection. Defaults to None.
    """

    def __init__(self,
                 prob: Optional[Union[float, Iterable[float]]] = None,
                 direction: Union[str, Sequence[str]] = 'horizontal',
                 swap_seg_labels: Optional[Sequence] = None) -> None:
        if isinstance(prob, int) and not isinstance(prob, bool):
            prob = float(prob)  # prob=1 in a config means 1.0
        if isinstance(prob, list):
            prob = [float(p) for p in prob]
        if isinstance(direction, tuple):
            direction = list(direction)  # mmcv accepts only str or list
        _check_args(prob, direction)
        super().__init__(prob=prob, direction=direction, swap_seg_labels=swap_seg_labels)

    def _record_homography_matrix(self, results: dict) -> None:
        """Compose the matrix of ``results['flip_direction']`` onto ``homography_matrix``."""
        h, w = results['img'].shape[:2]
        direction = results['flip_direction']
        matrix = np.eye(3, dtype=np.float32)
        if direction in ('horizontal', 'diagonal'):
            matrix[0] = [-1, 0, w]
        if direction in ('vertical', 'diagonal'):
            matrix[1] = [0, -1, h]
        record_homography(results, matrix)

    @autocast_box_type()
    def _flip(self, results: dict) -> None:
        """Flip everything aligned with the image in ``results['flip_direction']``."""
        direction = results['flip_direction']
        results['img'] = mmcv.imflip(results['img'], direction=direction)
        img_shape = results['img'].shape[:2]
        if results.get('gt_bboxes') is not None:
            results['gt_bboxes'].flip_(img_shape, direction)
        if results.get('gt_masks') is not None:
            results['gt_masks'] = results['gt_masks'].flip(direction)
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = mmcv.imflip(results['gt_seg_map'], direction=direction)
        self._record_homography_matrix(results)


def _check_args(prob, direction) -> None:
    """Raise the errors mmcv would only assert, naming the bad argument."""
    directions = [direction] if isinstance(direction, str) else direction
    if not isinstance(directions, (list, tuple)) or not all(
            d in _DIRECTIONS for d in directions):
        raise TransformArgError(f'RandomFlip: `direction` must be one of {_DIRECTIONS} or a '
                                f'list of them, got {direction!r}.')
    if isinstance(prob, float):
        if not 0 <= prob <= 1:
            raise TransformArgError(f'RandomFlip: `prob` must be in [0, 1], got {prob}.')
    elif isinstance(prob, list):
        if len(prob) != len(directions) or not 0 <= sum(prob) <= 1:
            raise TransformArgError('RandomFlip: a list `prob` needs one probability per '
                                    f'direction summing to at most 1, got prob={prob} for '
                                    f'direction={direction!r}.')
    else:
        raise TransformArgError('RandomFlip: `prob` must be a float or a list of floats, '
                                f'got {prob!r}.')
