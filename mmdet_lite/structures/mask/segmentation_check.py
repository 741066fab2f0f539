"""Checks of COCO ``segmentation`` entries, shared by ``CocoDataset`` and ``CocoMetric``.

pycocotools trusts its input: a polygon of 4 coordinates is taken for a box and raises a
``TypeError``, an empty polygon list raises ``IndexError``, a NaN or infinite coordinate makes
``frPyObjects`` allocate memory until the process is killed, an odd number of coordinates
silently loses one. All of them only surface when masks are rasterized, i.e. during ``segm``
evaluation, after a whole epoch of training. :func:`clean_coco_segmentations` finds them
when the annotation file is read.

A segmentation is valid when it is a list of polygons, each a flat list of an even number
(at least 6, i.e. 3 points) of finite numbers, or an RLE dict with ``counts`` and ``size``
(``size`` equal to its image's ``[height, width]`` when the file gives them).
"""
import math
import warnings
from numbers import Real
from typing import Any, List, Optional, Tuple

_JSON_NUMBERS = {int, float}
STRICT_HINT = ('set strict=False in the dataset config to drop invalid annotations with a '
               'warning instead')


def polygon_problem(polygon: Any) -> Optional[str]:
    """Why ``polygon`` (one flat ``[x1, y1, x2, y2, ...]`` list) is invalid, or None."""
    if not isinstance(polygon, (list, tuple)):
        return f'is a {type(polygon).__name__}, not a list of coordinates'
    num = len(polygon)
    reasons = []
    if num < 6:
        reasons.append(f'has {num} coordinates, fewer than 6 (a polygon needs 3 points)')
    if num % 2:
        reasons.append(f'has an odd number of coordinates ({num})')
    if reasons:
        return ' and '.join(reasons)
    # fast path (COCO train2017 has ~1M polygons): plain json numbers with a finite sum
    if set(map(type, polygon)) <= _JSON_NUMBERS and math.isfinite(sum(polygon)):
        return None
    for value in polygon:
        if not isinstance(value, Real) or isinstance(value, bool):
            return f'has a coordinate that is not a number ({value!r})'
        if not math.isfinite(value):
            return f'has a non-finite coordinate ({value})'
    return None


def rle_problem(rle: dict, height: Optional[int] = None,
                width: Optional[int] = None) -> Optional[str]:
    """Why the RLE dict ``rle`` is invalid for an image of ``height`` x ``width``, or None."""
    if 'counts' not in rle or 'size' not in rle:
        return f"is an RLE dict without 'counts' and 'size' (keys {sorted(rle)})"
    size = rle['size']
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        return f'has RLE size {size!r}; expected [height, width]'
    if height is not None and width is not None and list(size) != [height, width]:
        return f'has RLE size {list(size)}, but its image is [{height}, {width}] (height, width)'
    counts = rle['counts']
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            return 'has RLE counts that are not non-negative integers'
        if sum(counts) != size[0] * size[1]:
            return (f'has uncompressed RLE counts summing to {sum(counts)}, not '
                    f'{size[0]} x {size[1]} = {size[0] * size[1]} pixels')
    elif not isinstance(counts, (str, bytes)):
        return f'has RLE counts of type {type(counts).__name__}; expected a list or a str'
    return None


def clean_segmentation(segmentation: Any, height: Optional[int] = None,
                       width: Optional[int] = None) -> Tuple[Any, List[str]]:
    """Drop the invalid parts of one COCO segmentation.

    Args:
        segmentation: A polygon list or an RLE dict (anything else is invalid).
        height, width (int, optional): The image size, to check an RLE's ``size``.

    Returns:
        tuple: The valid part (the polygons that are valid, ``[]`` when none is, the RLE
        dict itself when valid) and one problem description per dropped polygon or mask
        (empty when ``segmentation`` is valid as it is).
    """
    if isinstance(segmentation, list):
        if not segmentation:
            return [], ['segmentation is empty (no polygon)']
        kept, problems = [], []
        for i, polygon in enumerate(segmentation):
            problem = polygon_problem(polygon)
            if problem is None:
                kept.append(polygon)
            else:
                problems.append(f'polygon {i} {problem}')
        return (segmentation, []) if not problems else (kept, problems)
    if isinstance(segmentation, dict):
        problem = rle_problem(segmentation, height, width)
        return (segmentation, []) if problem is None else ([], [f'segmentation {problem}'])
    return [], [f'segmentation is a {type(segmentation).__name__}, not a polygon list or an '
                'RLE dict']


class SegmentationReport:
    """What :func:`clean_coco_segmentations` dropped from one annotation file."""

    def __init__(self, ann_file: str) -> None:
        self.ann_file = ann_file
        self.num_dropped = 0  # polygons or masks
        self.annotation_ids: List[Any] = []  # annotations with a dropped part
        self.no_mask_ids: List[Any] = []  # annotations left with segmentation []
        self.first_problem: Optional[str] = None

    def __bool__(self) -> bool:
        return bool(self.annotation_ids)

    def message(self) -> str:
        text = (f"COCO annotation file '{self.ann_file}': dropped {self.num_dropped} invalid "
                f'polygon(s) or mask(s) in {len(self.annotation_ids)} annotation(s) (first: '
                f'annotation id={self.annotation_ids[0]}: {self.first_problem})')
        if self.no_mask_ids:
            text += (f'; {len(self.no_mask_ids)} annotation(s) have no valid mask left and '
                     'keep only their box: ignored regions in mask training and segm '
                     'evaluation')
        return text + '. Pass strict=True to the dataset to make this an error.'


def clean_coco_segmentations(data: dict, ann_file: str, strict: bool = False,
                             warn: bool = True) -> SegmentationReport:
    """Check every annotation's ``segmentation`` in a loaded COCO json, in place.

    Invalid polygons are removed from their annotation; an annotation with nothing valid
    left gets ``segmentation = []`` (its box stays). Annotations without a
    ``segmentation`` (detection-only files) are left alone.

    Args:
        data (dict): The parsed json; its ``annotations`` are modified in place.
        ann_file (str): The file's name, for the messages.
        strict (bool): Raise on the first invalid polygon instead of dropping it.
        warn (bool): Issue one ``UserWarning`` summarizing what was dropped.

    Returns:
        SegmentationReport: Counts, the affected annotation ids and the first problem.

    Raises:
        ValueError: ``strict`` and a segmentation is invalid; names the file, the
            annotation id and what is wrong.
    """
    sizes = {img.get('id'): (img.get('height'), img.get('width'))
             for img in data.get('images') or [] if isinstance(img, dict)}
    report = SegmentationReport(ann_file)
    for ann in data.get('annotations') or []:
        segmentation = ann.get('segmentation') if isinstance(ann, dict) else None
        if segmentation is None:
            continue
        height, width = sizes.get(ann.get('image_id'), (None, None))
        cleaned, problems = clean_segmentation(segmentation, height, width)
        if not problems:
            continue
        if strict:
            raise ValueError(f"COCO annotation file '{ann_file}': annotation id="
                             f"{ann.get('id')}: {problems[0]}; fix or remove it, or "
                             f'{STRICT_HINT}')
        if report.first_problem is None:
            report.first_problem = problems[0]
        report.num_dropped += len(problems)
        report.annotation_ids.append(ann.get('id'))
        if not cleaned:
            report.no_mask_ids.append(ann.get('id'))
        ann['segmentation'] = cleaned
    if report and warn:
        warnings.warn(report.message(), UserWarning)
    return report


def box_polygon(bbox: Any) -> Optional[List[List[float]]]:
    """The rectangle of a COCO ``[x, y, w, h]`` box as a polygon list, or None when the box
    has a non-finite value or no area."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]
