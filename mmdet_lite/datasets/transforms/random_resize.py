"""Multi-scale resizing: mmcv's random scale pickers, wired to mmdet_lite's ``Resize``.

mmcv's ``RandomResize``/``RandomChoiceResize`` build their inner resize from mmengine's
root registry, which only reaches our :class:`Resize` (the one that also resizes masks)
when ``mmdet_lite`` is the default scope. These subclasses build it from mmdet_lite's
registry instead, so a pipeline works the same with or without a default scope. The
scale sampling itself is mmcv's. The inner resize records ``homography_matrix``.
"""
from numbers import Number
from typing import Optional, Sequence, Tuple, Union

from mmcv.transforms import BaseTransform
from mmcv.transforms import RandomChoiceResize as MMCVRandomChoiceResize
from mmcv.transforms import RandomResize as MMCVRandomResize

from mmdet_lite.registry import TRANSFORMS

from .transform_arg_errors import check_arg

Scale = Union[int, Tuple[int, int]]


@TRANSFORMS.register_module()
class RandomResize(MMCVRandomResize):
    """Resize to a random scale: ``scale`` x a ratio from ``ratio_range``, or a (w, h)
    sampled edge by edge between two scales.

    Args:
        scale (tuple[int, int] | list[tuple[int, int]]): With ``ratio_range``: the base
            (w, h). Without: two (w, h) scales bounding the sampled one.
        ratio_range (tuple[float, float], optional): (min, max) ratio multiplying
            ``scale``. Defaults to None.
        resize_type (str): Registered type of the inner resize. Defaults to 'Resize'.
        **resize_kwargs: Other arguments of the inner resize (``keep_ratio`` ...).
    """

    def __init__(self,
                 scale: Union[Tuple[int, int], Sequence[Tuple[int, int]]],
                 ratio_range: Optional[Tuple[float, float]] = None,
                 resize_type: str = 'Resize',
                 **resize_kwargs) -> None:
        if isinstance(scale, Number):
            self.scale = (scale, scale)
        elif isinstance(scale, (tuple, list)) and all(isinstance(s, Number) for s in scale):
            self.scale = _as_scale(scale, 'RandomResize', 'scale')
        elif isinstance(scale, (tuple, list)) and len(scale) == 2:
            # mmcv samples between exactly two (w, h) tuples.
            self.scale = [_as_scale(s, 'RandomResize', 'scale') for s in scale]
        else:
            raise TypeError('RandomResize: `scale` must be one (w, h) scale or a pair of '
                            f'them, got {scale!r}.')
        # mmcv asserts these only when sampling; checking here names the config entry.
        check_arg(ratio_range is None or (len(ratio_range) == 2
                                          and ratio_range[0] <= ratio_range[1]),
                  'RandomResize: `ratio_range` must be (min, max) with min <= max, got '
                  f'{ratio_range!r}.')
        check_arg(ratio_range is not None or isinstance(self.scale, list),
                  'RandomResize: a single `scale` needs a `ratio_range`; otherwise give two '
                  '(w, h) scales to sample between.')
        self.ratio_range = ratio_range
        self.resize_cfg = dict(type=resize_type, **resize_kwargs)
        self.resize = _build_placeholder_resize(self.resize_cfg)


@TRANSFORMS.register_module()
class RandomChoiceResize(MMCVRandomChoiceResize):
    """Resize to one scale picked uniformly from ``scales``; adds ``scale_idx``.

    Args:
        scales (list[tuple[int, int] | int] | tuple[int, int]): Candidate (w, h) scales.
        resize_type (str): Registered type of the inner resize. Defaults to 'Resize'.
        **resize_kwargs: Other arguments of the inner resize (``keep_ratio`` ...).
    """

    def __init__(self,
                 scales: Union[Sequence[Scale], Scale],
                 resize_type: str = 'Resize',
                 **resize_kwargs) -> None:
        BaseTransform.__init__(self)
        # As in mmcv, a list holds candidates and anything else is the single scale.
        candidates = scales if isinstance(scales, list) else [scales]
        self.scales = [_as_scale(s, 'RandomChoiceResize', 'scales') for s in candidates]
        self.resize_cfg = dict(type=resize_type, **resize_kwargs)
        self.resize = _build_placeholder_resize(self.resize_cfg)


def _build_placeholder_resize(resize_cfg: dict) -> BaseTransform:
    """The inner resize, built with ``scale=0``: the wrapper sets its scale per call."""
    return TRANSFORMS.build({'scale': 0, **resize_cfg})


def _as_scale(value, owner: str, name: str) -> Scale:
    """An int stays an int; a (w, h) pair of numbers becomes a tuple; else TypeError."""
    if isinstance(value, Number):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, Number) for v in value):
        return tuple(value)
    raise TypeError(f'{owner}: `{name}` must hold (w, h) scales, got {value!r}.')
