"""Draw the synthetic "shapes" detection dataset: circles, rectangles and triangles.

Pure functions, no dataset machinery: :func:`generate_shapes_split` writes one split as JPEG
images plus a COCO-format annotation file, so any COCO reader (``CocoDataset``, pycocotools,
``CocoMetric``) can use it. :class:`~mmdet_lite.datasets.ShapesDataset` calls it on first use.

Design choices:

- Deterministic: every image draws from its own ``numpy`` generator spawned from
  ``SeedSequence(seed)``, so the same arguments give byte-identical files.
- Exact annotations: shapes never cover one another (a candidate overlapping an earlier
  shape, plus a 2 px gap, is re-sampled), so each mask is the full polygon and each box the
  polygon's tight extent. Boxes may still overlap (a circle sitting in the empty corner of a
  triangle's box), which keeps some box overlap without needing occlusion-aware masks.
- Coordinates follow COCO: pixel ``(x, y)`` covers ``[x, x + 1) x [y, y + 1)``. Polygons are
  drawn with sub-pixel precision, so rasterizing an annotation polygon gives the drawn pixels.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Tuple

import cv2
import numpy as np

SHAPES_CLASSES = ('circle', 'rectangle', 'triangle')
# Marks an image folder as written by this module, so a stale, half-published copy can be
# removed safely (never a folder the user made).
GENERATED_MARKER = '.shapes_generated'
_SUBPIXEL_BITS = 4  # cv2 draws with 1/16 px precision
_CIRCLE_VERTICES = 32  # chord error < 0.3 px at the largest default radius (60 px)
_MIN_GAP = 2  # px kept free around each shape so two shapes never touch


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field with a gradient, as float32 [size, size, 3]."""
    base = rng.uniform(40, 215, size=3).astype(np.float32)
    blotches = rng.uniform(-45, 45, size=(5, 5, 3)).astype(np.float32)
    blotches = cv2.resize(blotches, (size, size), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    direction = rng.uniform(-25, 25, size=(2, 3)).astype(np.float32)
    gradient = ramp[None, :, None] * direction[0] + ramp[:, None, None] * direction[1]
    return base + blotches + gradient


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    return points @ np.array([[cos, sin], [-sin, cos]], dtype=np.float64)


def _shape_outline(rng: np.random.Generator, label: int, size: float) -> np.ndarray:
    """Polygon of one shape centred on the origin, as float64 [K, 2] (x, y)."""
    if label == 0:  # circle, diameter = size
        angles = np.linspace(0, 2 * np.pi, _CIRCLE_VERTICES, endpoint=False)
        return size / 2 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if label == 1:  # rectangle: long side = size, aspect 0.4..1, tilted up to 30 degrees
        half_w, half_h = size / 2, size / 2 * rng.uniform(0.4, 1.0)
        corners = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h],
                            [-half_w, half_h]])
        return _rotate(corners, rng.uniform(-np.pi / 6, np.pi / 6))
    # triangle: jittered equilateral so no sliver triangles appear
    angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
    angles += rng.uniform(-0.3, 0.3, size=3)
    radii = size / 2 * rng.uniform(0.8, 1.0, size=3)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _to_cv2_points(polygon: np.ndarray) -> np.ndarray:
    """COCO polygon to the fixed-point pixel-centre coordinates cv2 expects."""
    return np.round((polygon - 0.5) * (1 << _SUBPIXEL_BITS)).astype(np.int32)[None]


def _place_shape(rng: np.random.Generator, label: int, image_size: int,
                 size_range: Tuple[int, int], occupied: np.ndarray,
                 max_tries: int = 20) -> np.ndarray:
    """Sample a shape that fits inside the image and touches no earlier shape.

    Args:
        occupied (np.ndarray): uint8 [H, W], non-zero where earlier shapes (plus gap) lie.

    Returns:
        np.ndarray: The polygon float64 [K, 2] in pixels, or an empty array if no free
        spot was found in ``max_tries`` attempts.
    """
    for _ in range(max_tries):
        outline = _shape_outline(rng, label, rng.uniform(*size_range))
        low, high = outline.min(axis=0), outline.max(axis=0)
        if np.any(high - low > image_size - 2):
            continue
        offset = rng.uniform(1 - low, image_size - 1 - high)
        polygon = np.round(outline + offset, 2)
        candidate = np.zeros_like(occupied)
        points = _to_cv2_points(polygon)
        cv2.fillPoly(candidate, points, 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
        if np.any(candidate & occupied):
            continue
        cv2.fillPoly(occupied, points, 1, shift=_SUBPIXEL_BITS)
        cv2.polylines(occupied, points, True, 1, thickness=2 * _MIN_GAP + 1,
                      shift=_SUBPIXEL_BITS)
        return polygon
    return np.zeros((0, 2))


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A colour far (L1 > 150) from the mean background colour, when one is found."""
    reference = background.reshape(-1, 3).mean(axis=0)
    for _ in range(10):
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - reference).sum() > 150:
            break
    return colour


def render_shapes_image(rng: np.random.Generator, image_size: int, num_objects: int,
                        size_range: Tuple[int, int] = (24, 120)
                        ) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    """Draw one image with up to ``num_objects`` non-overlapping shapes.

    Args:
        rng (np.random.Generator): Source of all randomness for this image.
        image_size (int): Side of the square image in pixels.
        num_objects (int): Shapes to attempt; one that finds no free spot is skipped.
        size_range (tuple[int, int]): Min and max shape size (diameter / long side) in px.

    Returns:
        tuple: The BGR image uint8 [image_size, image_size, 3] and a list of
        ``(label, polygon)`` with label in ``0..2`` (index into ``SHAPES_CLASSES``) and the
        polygon float64 [K, 2] in COCO pixel coordinates.
    """
    canvas = _background(rng, image_size)  # float32 [S, S, 3]
    occupied = np.zeros((image_size, image_size), dtype=np.uint8)
    shapes = []
    for _ in range(num_objects):
        label = int(rng.integers(len(SHAPES_CLASSES)))
        polygon = _place_shape(rng, label, image_size, size_range, occupied)
        if len(polygon) == 0:
            continue
        x1, y1 = np.floor(polygon.min(axis=0)).astype(int)
        x2, y2 = np.ceil(polygon.max(axis=0)).astype(int)
        colour = _contrasting_colour(rng, canvas[y1:y2, x1:x2])
        cv2.fillPoly(canvas, _to_cv2_points(polygon), colour.tolist(), shift=_SUBPIXEL_BITS)
        shapes.append((label, polygon))
    # Sensor-like noise over everything, so shapes are not flat single colours.
    canvas += 6 * rng.standard_normal(canvas.shape, dtype=np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8), shapes


def polygon_to_annotation(polygon: np.ndarray) -> Dict[str, object]:
    """COCO ``bbox`` (x, y, w, h), ``area`` and ``segmentation`` of one polygon [K, 2]."""
    x1, y1 = polygon.min(axis=0)
    x2, y2 = polygon.max(axis=0)
    xs, ys = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))  # shoelace
    return dict(
        bbox=[round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2),
              round(float(y2 - y1), 2)],
        area=round(float(area), 2),
        segmentation=[[round(float(v), 2) for v in polygon.reshape(-1)]])


def generate_shapes_split(out_dir: str, split: str, num_images: int, image_size: int = 320,
                          seed: int = 0, max_objects: int = 4,
                          size_range: Tuple[int, int] = (24, 120),
                          empty_ratio: float = 0.1, jpeg_quality: int = 90) -> str:
    """Write ``out_dir/{split}/*.jpg`` and ``out_dir/annotations/instances_{split}.json``.

    Args:
        out_dir (str): Root folder; created if missing.
        split (str): Split name, e.g. ``'train'``; names the image folder and json file.
        num_images (int): Number of images.
        image_size (int): Side of the square images in pixels.
        seed (int): Seed; equal arguments give byte-identical output.
        max_objects (int): Most shapes per non-empty image (each holds ``1..max_objects``).
        size_range (tuple[int, int]): Min and max shape size in pixels.
        empty_ratio (float): Fraction of images (rounded) drawn without any shape.
        jpeg_quality (int): JPEG quality of the written images.

    Returns:
        str: Path of the written annotation file.
    """
    if num_images < 1 or image_size < 32 or max_objects < 1:
        raise ValueError('generate_shapes_split needs num_images >= 1, image_size >= 32 and '
                         f'max_objects >= 1, got num_images={num_images}, '
                         f'image_size={image_size}, max_objects={max_objects}')
    low, high = size_range
    if not 4 <= low <= high <= image_size - 2:
        raise ValueError(f'size_range must satisfy 4 <= min <= max <= image_size - 2 '
                         f'({image_size - 2}), got {size_range}')
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)

    num_empty = int(round(num_images * empty_ratio))
    empty = set(np.random.default_rng(seed).permutation(num_images)[:num_empty].tolist())
    image_seeds = np.random.SeedSequence(seed).spawn(num_images)
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng(image_seeds[index])
        num_objects = 0 if index in empty else int(rng.integers(1, max_objects + 1))
        img, shapes = render_shapes_image(rng, image_size, num_objects, size_range)
        file_name = f'{index:06d}.jpg'
        cv2.imwrite(osp.join(img_dir, file_name), img,
                    [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        images.append(dict(id=index + 1, file_name=file_name, width=image_size,
                           height=image_size))
        for label, polygon in shapes:
            annotations.append(dict(id=len(annotations) + 1, image_id=index + 1,
                                    category_id=label + 1, iscrowd=0,
                                    **polygon_to_annotation(polygon)))
    open(osp.join(img_dir, GENERATED_MARKER), 'w').close()

    params = dict(split=split, num_images=num_images, image_size=image_size, seed=seed,
                  max_objects=max_objects, size_range=list(size_range),
                  empty_ratio=empty_ratio, jpeg_quality=jpeg_quality)
    coco = dict(
        info=dict(description='mmdet_lite synthetic shapes dataset', generator=params),
        images=images, annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory='shape')
                    for i, name in enumerate(SHAPES_CLASSES)])
    ann_file = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f, separators=(',', ':'))
    return ann_file
