"""Colour palettes for drawing detections, and label-size scaling by object area."""
from typing import List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from matplotlib import colors as mpl_colors

Color = Tuple[int, int, int]
PaletteType = Union[Sequence[Sequence[int]], Sequence[int], str, None]

# Seed of the 'random' palette: fixed so a class keeps its colour across images and runs.
_RANDOM_PALETTE_SEED = 42


def palette_val(palette: Sequence[Sequence[int]]) -> List[Tuple[float, float, float]]:
    """Convert 0-255 RGB colours to the 0-1 floats matplotlib expects.

    Args:
        palette (Sequence[Sequence[int]]): RGB colours with channels in [0, 255].

    Returns:
        list[tuple[float, float, float]]: The same colours with channels in [0, 1].
    """
    return [tuple(channel / 255 for channel in color) for color in palette]


def _as_color(color: Sequence[int], where: str) -> Color:
    """Check one RGB colour and return it as a tuple of Python ints."""
    if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color):
        raise ValueError(f'{where} must be an RGB colour of 3 ints in [0, 255], got {color!r}')
    return tuple(int(c) for c in color)


def _named_color(name: str) -> Color:
    """RGB of a colour name: mmcv's names first ('green' is (0, 255, 0)), then matplotlib's."""
    try:
        return tuple(int(c) for c in mmcv.color_val(name)[::-1])  # mmcv gives BGR
    except KeyError:
        pass
    try:
        return tuple(int(round(c * 255)) for c in mpl_colors.to_rgb(name))
    except ValueError:
        raise ValueError(
            f"palette {name!r} is not a known palette ('random', 'coco') nor a colour name "
            "(e.g. 'red', 'green', 'white' or any matplotlib colour)") from None


def _dataset_palette(name: str) -> Optional[List[Color]]:
    """The palette of a dataset this package ships, or None if ``name`` names none."""
    if name == 'coco':
        from ..datasets.coco import COCO_PALETTE  # lazy: datasets import pycocotools
        return list(COCO_PALETTE)
    if name in ('voc', 'citys'):
        raise ValueError(f"palette {name!r} needs a dataset mmdet_lite does not ship; pass "
                         "a list of RGB tuples or 'random' instead")
    return None


def get_palette(palette: PaletteType, num_classes: int) -> List[Color]:
    """Turn any palette description into one RGB colour per class.

    Args:
        palette (list[tuple] | tuple | str | None): One of

            - a list of RGB colours, one per class (at least ``num_classes``);
            - a single RGB tuple, used for every class;
            - ``'random'`` or None: fixed pseudo-random colours (the same on every call);
            - ``'coco'``: the COCO dataset palette;
            - a colour name such as ``'red'``, used for every class.
        num_classes (int): Number of colours needed.

    Returns:
        list[tuple[int, int, int]]: RGB colours with channels in [0, 255], at least
        ``num_classes`` of them.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f'num_classes must be an int, got {type(num_classes).__name__}')
    if num_classes < 0:
        raise ValueError(f'num_classes must be >= 0, got {num_classes}')
    num_classes = int(num_classes)

    if palette is None or (isinstance(palette, str) and palette == 'random'):
        rng = np.random.RandomState(_RANDOM_PALETTE_SEED)  # own RNG: global state untouched
        colors = [tuple(int(c) for c in rgb) for rgb in rng.randint(0, 256, (num_classes, 3))]
    elif isinstance(palette, str):
        dataset_palette = _dataset_palette(palette)
        colors = dataset_palette if dataset_palette is not None else \
            [_named_color(palette)] * num_classes
    elif isinstance(palette, tuple) and len(palette) == 3 and \
            all(isinstance(c, (int, np.integer)) for c in palette):
        colors = [_as_color(palette, 'palette')] * num_classes
    elif isinstance(palette, (list, tuple)):
        # A list of colours; configs loaded from text give lists rather than tuples.
        colors = [_as_color(color, f'palette[{i}]') for i, color in enumerate(palette)]
    else:
        raise TypeError('palette must be a list of RGB tuples, an RGB tuple, a str or None, '
                        f'got {type(palette).__name__}')

    if len(colors) < num_classes:
        raise ValueError(f'palette has {len(colors)} colours but {num_classes} classes need '
                         'one each; give a longer palette or use palette=\'random\'')
    return colors


def _get_adaptive_scales(areas: np.ndarray, min_area: int = 800,
                         max_area: int = 30000) -> np.ndarray:
    """Scale factor for label fonts: small objects get small labels.

    The scale grows linearly with area, from 0.5 at ``min_area`` to 1.0 at
    ``min_area + (max_area - min_area) / 2``, clipped to [0.5, 1.0].

    Args:
        areas (np.ndarray): Box or mask areas in pixels, shape [N].
        min_area (int): Area at (and below) which the scale is 0.5. Defaults to 800.
        max_area (int): Sets the slope; areas of ``(min_area + max_area) / 2`` or more get
            1.0. Defaults to 30000.

    Returns:
        np.ndarray: Scales in [0.5, 1.0], shape [N].
    """
    scales = 0.5 + (np.asarray(areas, dtype=np.float64) - min_area) / (max_area - min_area)
    return np.clip(scales, 0.5, 1.0)


def jitter_color(color: Sequence[int], rng: Optional[np.random.RandomState] = None) -> Color:
    """Shift a colour randomly so instances of one class can be told apart.

    Args:
        color (Sequence[int]): RGB colour with channels in [0, 255].
        rng (np.random.RandomState, optional): Source of randomness; the global numpy RNG
            when None. Pass a seeded one for reproducible drawings.

    Returns:
        tuple[int, int, int]: The shifted colour, channels clipped to [0, 255].
    """
    rand = (rng or np.random).rand(3)
    # a random direction, centred and scaled to at most about half the channel range
    offset = (rand / np.linalg.norm(rand) - 0.5) * 0.5 * 255
    return tuple(int(c) for c in np.clip(offset + np.asarray(color), 0, 255).astype(np.uint8))
