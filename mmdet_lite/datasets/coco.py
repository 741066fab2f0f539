"""The COCO detection / instance segmentation dataset."""
import contextlib
import io
import json
import math
import warnings
from numbers import Real
from typing import Dict, List, Optional

from mmengine.fileio import get_local_path, join_path
from pycocotools.coco import COCO

from ..registry import DATASETS
from ..structures.mask.segmentation_check import STRICT_HINT, clean_coco_segmentations
from .base_det_dataset import BaseDetDataset

COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
    'toothbrush')

# mmdetection's visualization colours (RGB), one per class above.
COCO_PALETTE = [
    (220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230), (106, 0, 228), (0, 60, 100),
    (0, 80, 100), (0, 0, 70), (0, 0, 192), (250, 170, 30), (100, 170, 30), (220, 220, 0),
    (175, 116, 175), (250, 0, 30), (165, 42, 42), (255, 77, 255), (0, 226, 252),
    (182, 182, 255), (0, 82, 0), (120, 166, 157), (110, 76, 0), (174, 57, 255),
    (199, 100, 0), (72, 0, 118), (255, 179, 240), (0, 125, 92), (209, 0, 151),
    (188, 208, 182), (0, 220, 176), (255, 99, 164), (92, 0, 73), (133, 129, 255),
    (78, 180, 255), (0, 228, 0), (174, 255, 243), (45, 89, 255), (134, 134, 103),
    (145, 148, 174), (255, 208, 186), (197, 226, 255), (171, 134, 1), (109, 63, 54),
    (207, 138, 255), (151, 0, 95), (9, 80, 61), (84, 105, 51), (74, 65, 105),
    (166, 196, 102), (208, 195, 210), (255, 109, 65), (0, 143, 149), (179, 0, 194),
    (209, 99, 106), (5, 121, 0), (227, 255, 205), (147, 186, 208), (153, 69, 1),
    (3, 95, 161), (163, 255, 0), (119, 0, 170), (0, 182, 199), (0, 165, 120),
    (183, 130, 88), (95, 32, 0), (130, 114, 135), (110, 129, 133), (166, 74, 118),
    (219, 142, 185), (79, 210, 114), (178, 90, 62), (65, 70, 15), (127, 167, 115),
    (59, 105, 106), (142, 108, 45), (196, 172, 0), (95, 54, 80), (128, 76, 255),
    (201, 57, 1), (246, 0, 122), (191, 162, 208)]

_IMAGE_FIELDS = ('id', 'file_name', 'height', 'width')
_ANN_FIELDS = ('id', 'image_id', 'category_id', 'bbox')
_CAT_FIELDS = ('id', 'name')


def _check_fields(entries: List[dict], fields: tuple, kind: str, ann_file: str) -> None:
    """Raise KeyError naming the first entry of ``entries`` that misses one of ``fields``."""
    for i, entry in enumerate(entries):
        missing = [k for k in fields if k not in entry]
        if missing:
            raise KeyError(f"{kind} entry #{i} (id={entry.get('id')}) in '{ann_file}' has no "
                           f'field {missing}; every {kind} needs {list(fields)}')


def _check_references(data: dict, ann_file: str) -> None:
    """Ids must be unique and every annotation must name a listed image.

    An annotation whose ``category_id`` is not a listed category is not an error: like any
    annotation outside the selected classes it is skipped when parsed (mmdetection's
    behaviour), with one warning per file.
    """
    for field in ('images', 'annotations'):
        ids = [entry['id'] for entry in data[field]]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{field[:-1]} ids in '{ann_file}' are not unique")
    known_imgs = {image['id'] for image in data['images']}
    for ann in data['annotations']:
        if ann['image_id'] not in known_imgs:
            raise KeyError(f"annotation id={ann['id']} in '{ann_file}' has image_id="
                           f"{ann['image_id']}, which is not in its 'images'")


def load_coco_json(ann_file: str, backend_args: Optional[dict] = None) -> dict:
    """Read and structurally check a COCO annotation file.

    Args:
        ann_file (str): Path (or backend URI) of the json file.
        backend_args (dict, optional): mmengine file backend arguments.

    Returns:
        dict: The parsed json, with ``annotations`` defaulting to ``[]`` (image-info files).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: It cannot be read, is not json, or lacks ``images`` / ``categories``.
        KeyError: An entry misses a required field, or an annotation names an image the
            file does not list.
    """
    try:
        with get_local_path(ann_file, backend_args=backend_args) as local_path:
            with open(local_path, encoding='utf-8') as f:
                data = json.load(f)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"COCO annotation file '{ann_file}' does not exist; check "
                                'data_root and ann_file') from err
    except json.JSONDecodeError as err:
        raise ValueError(f"COCO annotation file '{ann_file}' is not valid json: {err.msg} "
                         f'(line {err.lineno}, column {err.colno})') from err
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read COCO annotation file '{ann_file}': {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"COCO annotation file '{ann_file}' must hold a json object with "
                         f"'images' and 'categories', got a {type(data).__name__}")
    for field in ('images', 'categories'):
        if not isinstance(data.get(field), list):
            raise ValueError(f"COCO annotation file '{ann_file}' needs a list field "
                             f"'{field}', got {type(data.get(field)).__name__}")
    data.setdefault('annotations', [])
    _check_fields(data['images'], _IMAGE_FIELDS, 'image', ann_file)
    _check_fields(data['annotations'], _ANN_FIELDS, 'annotation', ann_file)
    _check_fields(data['categories'], _CAT_FIELDS, 'category', ann_file)
    _check_references(data, ann_file)
    return data


def _coco_index(data: dict) -> COCO:
    """A pycocotools index over already-loaded json, without its progress prints."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@DATASETS.register_module()
class CocoDataset(BaseDetDataset):
    """COCO-format detection and instance segmentation dataset.

    Category ids (any integers, e.g. 1, 5, 9) map to contiguous labels ``0..C-1`` in the
    order of ``metainfo['classes']``; ``metainfo=dict(classes=(...))`` selects a subset and
    annotations of other categories are dropped. Each data info holds ``img_path``,
    ``img_id``, ``seg_map_path``, ``height``, ``width`` and ``instances``: dicts with
    ``bbox`` [x1, y1, x2, y2] in pixels, ``bbox_label``, ``ignore_flag`` (1 for crowd
    regions) and ``mask`` (polygon list or RLE dict) when the annotation has one.
    Annotations whose ``category_id`` is not among the file's categories are skipped with
    one warning per file, as mmdetection skips them; duplicate image or annotation ids and
    annotations of an unlisted image are errors.

    Boxes that cannot be trained on are dropped: width or height below 1 px, zero area, or
    no overlap with the image. Invalid annotations are dropped with one warning per kind
    and file, counting them and naming the first annotation id: boxes with negative width
    or height, boxes with a NaN or infinite value, and segmentation polygons with fewer
    than 3 points, an odd number of coordinates or a NaN/inf coordinate (see
    :mod:`mmdet_lite.structures.mask.segmentation_check`; pycocotools would fail on them
    in segm evaluation, after a whole epoch). An instance with no valid polygon left keeps
    its box and gets ``mask=[]``: ``LoadAnnotations(with_mask=True)`` marks it ignored, as
    ``CocoMetric`` ignores it in segm evaluation. ``strict=True`` makes each of these an
    error instead. In training mode (``test_mode=False``) ``filter_cfg`` can drop
    images: ``filter_empty_gt=True`` those without any instance of the selected classes,
    ``min_size`` those whose shorter side is below it.

    Args:
        *args, **kwargs: Arguments of :class:`BaseDetDataset`.
        strict (bool): Raise ``ValueError`` (naming the file, the annotation id and the
            problem) on the first invalid box or segmentation instead of dropping it with
            a warning. mmdetection has no such option; defaults to False (drop and warn).
    """

    METAINFO = dict(classes=COCO_CLASSES, palette=COCO_PALETTE)
    # invalid annotations, counted while parsing and reported once per load:
    # kind -> [count, first annotation id]
    _dropped: Optional[Dict[str, list]] = None

    def __init__(self, *args, strict: bool = False, **kwargs) -> None:
        self.strict = strict  # read by load_data_list, which the base __init__ may call
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Parse ``ann_file`` into one data info per image, in the file's image order."""
        data = load_coco_json(self.ann_file, self.backend_args)
        if not data['images']:
            raise ValueError(f"COCO annotation file '{self.ann_file}' lists no images")
        self._map_categories(data['categories'])
        self._warn_unknown_categories(data)
        # invalid polygons are dropped here (or raise with strict), before anything uses them
        clean_coco_segmentations(data, self.ann_file, strict=getattr(self, 'strict', False))
        coco = _coco_index(data)
        self._dropped = {}
        data_list = []
        for img_id in coco.getImgIds():
            raw_img_info = dict(coco.loadImgs([img_id])[0], img_id=img_id)
            raw_ann_info = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
            data_list.append(self.parse_data_info(
                dict(raw_img_info=raw_img_info, raw_ann_info=raw_ann_info)))
        for kind, (count, first_id) in (self._dropped or {}).items():
            warnings.warn(f"Dropped {count} annotation(s) with {kind} in '{self.ann_file}' "
                          f'(first: annotation id={first_id}); pass strict=True to the '
                          'dataset to make this an error')
        return data_list

    def _warn_unknown_categories(self, data: dict) -> None:
        """Warn once about annotations whose ``category_id`` the file does not list.

        They are skipped when parsed, as annotations of unselected classes are.
        """
        known_cats = {cat['id'] for cat in data['categories']}
        unknown = [ann for ann in data['annotations'] if ann['category_id'] not in known_cats]
        if unknown:
            warnings.warn(
                f"Skipped {len(unknown)} annotation(s) of '{self.ann_file}' whose category_id "
                f"is not in its 'categories' (ids {sorted(known_cats)}); first: annotation "
                f"id={unknown[0]['id']} with category_id={unknown[0]['category_id']}")

    def _drop_invalid(self, ann: dict, kind: str, problem: str) -> None:
        """Count an annotation dropped as ``kind``; with ``strict`` raise instead."""
        if getattr(self, 'strict', False):
            raise ValueError(f"COCO annotation file '{self.ann_file}': annotation id="
                             f"{ann['id']}: {problem}; fix or remove it, or {STRICT_HINT}")
        if self._dropped is None:
            self._dropped = {}
        entry = self._dropped.setdefault(kind, [0, ann['id']])
        entry[0] += 1

    def _map_categories(self, categories: List[dict]) -> None:
        """Set ``cat_ids`` (json ids, in class order) and ``cat2label`` (id -> label)."""
        name_to_id: Dict[str, int] = {}
        for cat in categories:
            name_to_id.setdefault(cat['name'], cat['id'])
        classes = self._metainfo['classes']
        missing = [name for name in classes if name not in name_to_id]
        if missing:
            raise ValueError(
                f"classes {missing} of {type(self).__name__} are not among the categories of "
                f"'{self.ann_file}' ({sorted(name_to_id)}); set metainfo=dict(classes=(...)) "
                'to the class names of your dataset')
        self.cat_ids = [name_to_id[name] for name in classes]
        self.cat2label = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Turn one image entry and its annotations into a data info.

        Args:
            raw_data_info (dict): ``raw_img_info`` (the json image entry plus ``img_id``)
                and ``raw_ann_info`` (its list of json annotations).

        Returns:
            dict: The data info described in the class docstring.
        """
        img_info = raw_data_info['raw_img_info']
        file_name = img_info['file_name']
        seg_prefix = self.data_prefix.get('seg')
        data_info = dict(
            img_path=join_path(self.data_prefix.get('img', ''), file_name),
            img_id=img_info['img_id'],
            seg_map_path=(join_path(seg_prefix, file_name.rsplit('.', 1)[0] +
                                    self.seg_map_suffix) if seg_prefix else None),
            height=img_info['height'],
            width=img_info['width'])
        instances = []
        for ann in raw_data_info['raw_ann_info']:
            instance = self._parse_instance(ann, img_info['width'], img_info['height'])
            if instance is not None:
                instances.append(instance)
        data_info['instances'] = instances
        return data_info

    def _parse_instance(self, ann: dict, img_w: int, img_h: int) -> Optional[dict]:
        """One json annotation as an instance dict, or None when it is dropped."""
        if ann.get('ignore', False) or ann['category_id'] not in self.cat2label:
            return None
        bbox = ann['bbox']
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(
                isinstance(v, Real) and not isinstance(v, bool) for v in bbox)):
            raise ValueError(f"annotation id={ann['id']} in '{self.ann_file}' has bbox "
                             f'{bbox}; expected [x, y, w, h] (4 numbers)')
        x1, y1, w, h = bbox
        if not all(math.isfinite(v) for v in bbox):
            self._drop_invalid(ann, 'a NaN or infinite box value',
                               f'bbox {bbox} has a NaN or infinite value')
            return None
        if w < 0 or h < 0:
            self._drop_invalid(ann, 'negative box width or height',
                               f'bbox {bbox} has a negative width or height')
            return None
        overlap_w = max(0, min(x1 + w, img_w) - max(x1, 0))
        overlap_h = max(0, min(y1 + h, img_h) - max(y1, 0))
        if overlap_w * overlap_h == 0 or w < 1 or h < 1 or ann.get('area', w * h) <= 0:
            return None
        instance = dict(
            bbox=[x1, y1, x1 + w, y1 + h],
            bbox_label=self.cat2label[ann['category_id']],
            ignore_flag=1 if ann.get('iscrowd', False) else 0)
        segmentation = ann.get('segmentation')
        if segmentation is not None:
            # already checked by clean_coco_segmentations: valid polygons, an RLE dict, or
            # [] when nothing valid was left (LoadAnnotations ignores such an instance)
            instance['mask'] = segmentation
        return instance

    def filter_data(self) -> List[dict]:
        """Apply ``filter_cfg`` (training mode only).

        Raises:
            ValueError: No image is left; the message says how many each filter removed.
        """
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)
        kept, num_empty, num_small = [], 0, 0
        for data_info in self.data_list:
            if filter_empty_gt and not data_info['instances']:
                num_empty += 1
            elif min(data_info['width'], data_info['height']) < min_size:
                num_small += 1
            else:
                kept.append(data_info)
        if not kept:
            raise ValueError(
                f"no image of '{self.ann_file}' is left after filtering with "
                f'filter_cfg={self.filter_cfg}: filter_empty_gt removed {num_empty} of '
                f'{len(self.data_list)} images (no annotation of classes '
                f"{tuple(self._metainfo['classes'])}), min_size={min_size} removed "
                f'{num_small}')
        return kept
