"""FixShapeResize: resize to an exact (width, height), optionally letterboxed."""
from numbers import Number
from typing import Union

import mmcv

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type

from .pad import Pad
from .resize import Resize
from .transform_arg_errors import check_arg


@TRANSFORMS.register_module()
class FixShapeResize(Resize):
    """Resize every image to ``width`` x ``height``.

    Without ``keep_ratio`` the image is stretched to exactly (width, height). With it, the
    image is scaled by ``min(width / w, height / h)`` (sides rounded to the nearest pixel)
    and then padded on the bottom/right up to (width, height) with ``pad_val``, so the
    output size is fixed either way. Boxes, masks, the semantic map and
    ``homography_matrix`` follow as in :class:`Resize`; the padding moves nothing.

    Note (as in mmdetection): with ``keep_ratio`` the recorded ``scale_factor`` is the
    single factor ``min(width / w, height / h)``, not the per-side factors of the rounded
    image, so boxes may be off the resized pixels by up to half a pixel.

    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_masks``, ``gt_seg_map``.
    Added keys: ``scale``, ``scale_factor``, ``keep_ratio``, ``homography_matrix`` and,
    with ``keep_ratio``, Pad's ``pad_shape``, ``pad_fixed_size``, ``pad_size_divisor``.

    Args:
        width (int): Output width.
        height (int): Output height.
        pad_val (Number | dict): Padding values of the ``keep_ratio`` padding, as in
            :class:`Pad`. Defaults to dict(img=0, seg=255).
        keep_ratio (bool): Keep the aspect ratio and pad. Defaults to False.
        clip_object_border (bool): Clip boxes to the image. Defaults to True.
        backend (str): ``'cv2'`` or ``'pillow'``. Defaults to 'cv2'.
        interpolation (str): Image interpolation. Defaults to 'bilinear'.
    """

    def __init__(self,
                 width: int,
                 height: int,
                 pad_val: Union[Number, dict] = dict(img=0, seg=255),
                 keep_ratio: bool = False,
                 clip_object_border: bool = True,
                 backend: str = 'cv2',
                 interpolation: str = 'bilinear') -> None:
        check_arg(width is not None and height is not None,
                  f'FixShapeResize: `width` and `height` must be set, got width={width}, '
                  f'height={height}.')
        self.width = width
        self.height = height
        self.scale = (width, height)
        self.scale_factor = None
        self.backend = backend
        self.interpolation = interpolation
        self.keep_ratio = keep_ratio
        self.clip_object_border = clip_object_border
        if keep_ratio:
            self.pad_transform = Pad(size=self.scale, pad_val=pad_val)

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Resize (and with ``keep_ratio`` pad) ``results`` to (width, height).

        Args:
            results (dict): Pipeline results with ``img``.

        Returns:
            dict: ``results`` with the resized entries.
        """
        img = results['img']
        h, w = img.shape[:2]
        if self.keep_ratio:
            factor = min(self.width / w, self.height / h)
            new_w, new_h = int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)
            # mmcv.imrescale, as mmdetection: it may round a side differently from
            # (new_w, new_h) by a pixel; the image's own size is what the rest follows.
            img = mmcv.imrescale(img, (new_w, new_h), interpolation=self.interpolation,
                                 backend=self.backend)
            results['img'] = img
            results['img_shape'] = img.shape[:2]
            results['scale'] = (new_w, new_h)
            results['scale_factor'] = (factor, factor)
            results['keep_ratio'] = True
        else:
            results['scale'] = (self.width, self.height)
            self._resize_img(results)
        self._resize_bboxes(results)
        self._resize_masks(results)
        self._resize_seg(results)
        self._record_homography_matrix(results)
        if self.keep_ratio:
            self.pad_transform(results)
        return results

    def __repr__(self) -> str:
        # mmdetection's format, unbalanced parentheses included.
        return (f'{self.__class__.__name__}(width={self.width}, height={self.height}, '
                f'keep_ratio={self.keep_ratio}, '
                f'clip_object_border={self.clip_object_border}), '
                f'backend={self.backend}), interpolation={self.interpolation})')
