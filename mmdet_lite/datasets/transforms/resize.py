"""Resize an image together with its boxes, masks and semantic map."""
from numbers import Number
from typing import Optional, Tuple, Union

import mmcv
import numpy as np
from mmcv.image.geometric import _scale_size
from mmcv.transforms import Resize as MMCVResize

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type

from .homography import record_homography
from .transform_arg_errors import MissingResultKeyError, TransformArgError


@TRANSFORMS.register_module()
class Resize(MMCVResize):
    """Resize ``img`` to ``scale`` (or by ``scale_factor``) and everything aligned with it.

    Without ``keep_ratio`` the image becomes exactly ``scale`` = (w, h). With ``keep_ratio``
    it follows ``mmcv.imrescale``: the largest size whose long edge fits ``max(scale)`` and
    whose short edge fits ``min(scale)``, so (1333, 800) means "long edge <= 1333, short
    edge <= 800". ``scale`` wins when both ``scale`` and ``scale_factor`` are set.

    ``RandomResize``/``RandomChoiceResize`` build this transform with ``scale=0`` and set
    ``self.scale`` before each call.

    Each side of the output is at least 1 pixel: an extreme aspect ratio (a 5000 x 4 image
    with ``scale=(96, 96)``, a short side of 0.08 px) gets its short side clamped to 1
    instead of asking cv2 for a 0-pixel side; ``scale_factor`` then records the factors
    actually applied. An empty image (a side of 0) raises ``ValueError`` naming it.

    ``gt_bboxes`` may be a box object (``HorizontalBoxes``) or a float32 array [N, 4]; it
    keeps its kind. Boxes are scaled by ``scale_factor`` (then clipped to the image), masks
    and the semantic map are resized to the image's size (nearest), and the 3x3 scaling
    matrix ``diag(w_scale, h_scale, 1)`` is composed onto ``homography_matrix``.

    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_masks``, ``gt_seg_map``.
    Added keys: ``scale`` (w, h), ``scale_factor`` (w_scale, h_scale), ``keep_ratio``,
    ``homography_matrix`` (float32 [3, 3]).

    Args:
        scale (int | tuple[int, int], optional): Target (w, h); an int means (s, s).
            Defaults to None.
        scale_factor (float | tuple[float, float], optional): Factor(s) (w, h) applied to
            the input size when ``scale`` is not set. Defaults to None.
        keep_ratio (bool): Keep the aspect ratio (see above). Defaults to False.
        clip_object_border (bool): Clip boxes to the resized image. Defaults to True.
        backend (str): ``'cv2'`` or ``'pillow'``. Defaults to 'cv2'.
        interpolation (str): Image interpolation; masks and semantic maps always use
            nearest. Defaults to 'bilinear'.
    """

    def __init__(self,
                 scale: Optional[Union[int, Tuple[int, int]]] = None,
                 scale_factor: Optional[Union[float, Tuple[float, float]]] = None,
                 keep_ratio: bool = False,
                 clip_object_border: bool = True,
                 backend: str = 'cv2',
                 interpolation: str = 'bilinear') -> None:
        if scale is None and scale_factor is None:
            raise TransformArgError(f'{type(self).__name__} needs `scale` (w, h) or '
                                    '`scale_factor`; both are None.')
        self.scale = _as_pair(scale, 'scale') if scale else scale
        self.scale_factor = (None if scale_factor is None else
                             _as_pair(scale_factor, 'scale_factor'))
        self.keep_ratio = keep_ratio
        self.clip_object_border = clip_object_border
        self.backend = backend
        self.interpolation = interpolation

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Resize ``results['img']`` and the annotations aligned with it.

        Args:
            results (dict): Pipeline results with ``img`` (H x W x C).

        Returns:
            dict: ``results`` with the resized entries.
        """
        if 'img' not in results:
            raise MissingResultKeyError(f"{type(self).__name__} needs results['img'] (run "
                                        'LoadImageFromFile first).')
        if min(results['img'].shape[:2]) < 1:
            raise ValueError(f"Resize: image {results.get('img_path') or '(array)'} is empty: "
                             f"shape {tuple(results['img'].shape)}")
        if self.scale:
            results['scale'] = _as_pair(self.scale, 'scale')
        elif self.scale_factor is not None:
            h, w = results['img'].shape[:2]
            results['scale'] = _scale_size((w, h), self.scale_factor)
        else:
            raise ValueError('Resize has neither a `scale` nor a `scale_factor` to resize to '
                             '(scale=0 is only a placeholder for RandomResize).')
        self._resize_img(results)
        self._resize_bboxes(results)
        self._resize_masks(results)
        self._resize_seg(results)
        self._record_homography_matrix(results)
        return results

    def _keep_ratio_size(self, w: int, h: int, scale: Tuple[int, int]) -> Tuple[int, int]:
        """(w, h) of a ``keep_ratio`` resize: the size ``mmcv.imrescale`` picks."""
        return mmcv.rescale_size((w, h), scale)

    def _output_size(self, results: dict) -> Tuple[int, int]:
        """(w, h) of the resized image, each side at least 1 pixel."""
        h, w = results['img'].shape[:2]
        if self.keep_ratio:
            new_w, new_h = self._keep_ratio_size(w, h, tuple(results['scale']))
        else:
            new_w, new_h = results['scale']
        return max(int(new_w), 1), max(int(new_h), 1)

    def _resize_img(self, results: dict) -> None:
        img = results['img']
        h, w = img.shape[:2]
        img = mmcv.imresize(img, self._output_size(results), interpolation=self.interpolation,
                            backend=self.backend)
        new_h, new_w = img.shape[:2]
        results['img'] = img
        results['img_shape'] = (new_h, new_w)
        # Measured from the rounded output size so boxes land exactly on the resized pixels.
        results['scale_factor'] = (new_w / w, new_h / h)
        results['keep_ratio'] = self.keep_ratio

    def _resize_bboxes(self, results: dict) -> None:
        if results.get('gt_bboxes') is None:
            return
        results['gt_bboxes'].rescale_(results['scale_factor'])
        if self.clip_object_border:
            results['gt_bboxes'].clip_(results['img_shape'])

    def _resize_masks(self, results: dict) -> None:
        if results.get('gt_masks') is None:
            return
        # To the image's own (rounded, clamped) size: with keep_ratio this is the size
        # ``masks.rescale(scale)`` would give, and it never drifts from the image.
        results['gt_masks'] = results['gt_masks'].resize(results['img_shape'])

    def _resize_seg(self, results: dict) -> None:
        if results.get('gt_seg_map') is None:
            return
        h, w = results['img_shape']
        results['gt_seg_map'] = mmcv.imresize(results['gt_seg_map'], (w, h),
                                              interpolation='nearest', backend=self.backend)

    def _record_homography_matrix(self, results: dict) -> None:
        """Compose the scaling ``diag(w_scale, h_scale, 1)`` onto ``homography_matrix``."""
        w_scale, h_scale = results['scale_factor']
        record_homography(results, np.array([[w_scale, 0, 0], [0, h_scale, 0], [0, 0, 1]],
                                            dtype=np.float32))

    def __repr__(self) -> str:
        # mmdetection's format, unbalanced parentheses included.
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'scale_factor={self.scale_factor}, keep_ratio={self.keep_ratio}, '
                f'clip_object_border={self.clip_object_border}), '
                f'backend={self.backend}), interpolation={self.interpolation})')


def _as_pair(value: Union[Number, Tuple[Number, Number]], name: str) -> tuple:
    """A number becomes (v, v); a pair stays a tuple; anything else is an error."""
    if isinstance(value, Number):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, Number) for v in value):
        return tuple(value)
    raise TypeError(f'Resize: `{name}` must be a number or a (w, h) pair of numbers, '
                    f'got {value!r}.')
