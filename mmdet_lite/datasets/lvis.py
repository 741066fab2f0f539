"""The LVIS v0.5 and v1 instance segmentation datasets (read with the ``lvis`` package).

LVIS annotation files are COCO-like json with a long-tailed vocabulary (1230 categories
in v0.5, 1203 in v1) and federated labels: each image lists the categories verified absent
(``neg_category_ids``) and those not annotated exhaustively
(``not_exhaustive_category_ids``); each category has a ``frequency`` ('r', 'c' or 'f').
Only :class:`~mmdet_lite.evaluation.LVISMetric` reads those fields; the datasets parse
images and instances exactly as :class:`CocoDataset` does.

The class names are not shipped here: the annotation file is their source. A dataset
built without ``metainfo=dict(classes=...)`` takes its classes from the file's
``categories`` (their ``name``, in file order, which is id order in the official files),
so labels ``0..C-1`` follow the category order of the file, as in mmdetection.

``lvis`` is an optional dependency (``pip install lvis``, see requirements/optional.txt).
"""
import warnings
from types import ModuleType
from typing import List

import numpy as np
from mmengine.fileio import get_local_path

from ..registry import DATASETS
from ..structures.mask.segmentation_check import clean_coco_segmentations
from .coco import CocoDataset
from .transforms.optional_imports import import_optional

# Host prefix of LVIS v1 ``coco_url``s; the rest is '<split>2017/<file name>'.
COCO_IMAGE_URL = 'http://images.cocodataset.org/'
# Seed of the generated palette, the one the visualizer's 'random' palette uses.
_PALETTE_SEED = 42


class LVISAnnotationError(ValueError, AssertionError):
    """An LVIS annotation file that cannot be parsed (mmdetection asserts on it)."""


def import_lvis(owner: str) -> ModuleType:
    """Import the ``lvis`` package or raise an ImportError naming the pip package.

    Args:
        owner (str): The class that needs it, for the message.

    Returns:
        ModuleType: The ``lvis`` module.
    """
    return import_optional('lvis', 'lvis', owner)


def generated_palette(num_classes: int) -> List[tuple]:
    """One fixed pseudo-random RGB colour per class (LVIS ships no palette).

    Args:
        num_classes (int): Number of colours.

    Returns:
        list[tuple[int, int, int]]: Colours with channels in [0, 255]; the same on every
        call for the same ``num_classes``.
    """
    rng = np.random.RandomState(_PALETTE_SEED)
    colors = rng.randint(0, 256, size=(num_classes, 3))
    return [tuple(int(c) for c in color) for color in colors]


@DATASETS.register_module()
class LVISV05Dataset(CocoDataset):
    """LVIS v0.5: COCO 2014 images, 1230 categories.

    Data infos are those of :class:`CocoDataset` (``img_path``, ``img_id``,
    ``seg_map_path``, ``height``, ``width``, ``instances``). Image paths come from each
    image's ``file_name``; the COCO 2014 names of v0.5 (``COCO_val2014_000000397133.jpg``)
    are shortened to the 2017 names (``000000397133.jpg``), so both years' image folders
    work.

    Classes: ``metainfo=dict(classes=(...))`` selects categories by name (a subset is
    allowed, as for :class:`CocoDataset`). Without it the classes are the ``name`` of
    every category of the annotation file, in file order, and ``palette`` (if not given)
    is a generated one; with ``lazy_init=True`` they are known after ``full_init()``.

    Args:
        *args, **kwargs: Arguments of :class:`CocoDataset` (``ann_file``, ``data_root``,
            ``data_prefix``, ``filter_cfg``, ``metainfo``, ``strict`` ...).

    Raises:
        ImportError: The ``lvis`` package cannot be imported (also a RuntimeError).
    """

    # No class list: the annotation file names the categories (see the module docstring).
    METAINFO = dict(classes=None, palette=None)

    def __init__(self, *args, **kwargs) -> None:
        import_lvis(type(self).__name__)  # fail at construction, not at the first load
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Parse ``ann_file`` with ``lvis.LVIS`` into one data info per image, in the
        file's image order.

        Raises:
            FileNotFoundError: ``ann_file`` does not exist.
            LVISAnnotationError: The file lists no image, or annotation ids repeat.
        """
        lvis_api = self._load_lvis_api()
        data = lvis_api.dataset
        if not data.get('images'):
            raise LVISAnnotationError(f"LVIS annotation file '{self.ann_file}' lists no "
                                      'images')
        ann_ids = [ann['id'] for ann in data['annotations']]
        if len(set(ann_ids)) != len(ann_ids):
            raise LVISAnnotationError(f"annotation ids in '{self.ann_file}' are not unique")
        self._classes_from_file(data['categories'])
        self._map_categories(data['categories'])
        self._warn_unknown_categories(data)
        # lvis' index holds the same annotation dicts, so the in-place clean reaches it
        clean_coco_segmentations(data, self.ann_file, strict=getattr(self, 'strict', False))
        self._dropped = {}
        data_list = []
        for img_id in lvis_api.get_img_ids():
            img_info = dict(lvis_api.load_imgs([img_id])[0], img_id=img_id)
            img_info['file_name'] = self._image_file_name(img_info)
            anns = lvis_api.load_anns(lvis_api.get_ann_ids(img_ids=[img_id]))
            data_list.append(self.parse_data_info(
                dict(raw_img_info=img_info, raw_ann_info=anns)))
        self._warn_dropped()
        return data_list

    def _load_lvis_api(self):
        """The ``lvis.LVIS`` index of ``ann_file`` (any mmengine file backend)."""
        lvis = import_lvis(type(self).__name__)
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            try:
                return lvis.LVIS(local_path)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"LVIS annotation file '{self.ann_file}' does not "
                                        'exist; check data_root and ann_file') from err

    def _classes_from_file(self, categories: List[dict]) -> None:
        """Take ``classes`` (and a generated ``palette``) from the file when the dataset
        was built without them."""
        if self._metainfo.get('classes') is not None:
            return
        names = tuple(cat['name'] for cat in categories)
        self._metainfo['classes'] = names
        palette = self._metainfo.get('palette')
        if palette is None or len(palette) != len(names):
            self._metainfo['palette'] = generated_palette(len(names))

    def _image_file_name(self, img_info: dict) -> str:
        """Path of the image relative to ``data_prefix['img']``: v0.5's ``file_name``,
        with COCO 2014 names shortened to the 2017 ones."""
        file_name = img_info['file_name']
        if file_name.startswith('COCO'):
            # 'COCO_<split>2014_' + 12-digit id + '.jpg': the last 16 characters are the
            # 2017 file name of the same image
            file_name = file_name[-16:]
        return file_name

    def _warn_dropped(self) -> None:
        """One warning per kind of invalid annotation dropped while parsing."""
        for kind, (count, first_id) in (self._dropped or {}).items():
            warnings.warn(f"Dropped {count} annotation(s) with {kind} in '{self.ann_file}' "
                          f'(first: annotation id={first_id}); pass strict=True to the '
                          'dataset to make this an error')


# mmdetection's name for v0.5; the same class, registered under both names.
LVISDataset = LVISV05Dataset
DATASETS.register_module(name='LVISDataset', module=LVISDataset)


@DATASETS.register_module()
class LVISV1Dataset(LVISDataset):
    """LVIS v1: COCO 2017 images, 1203 categories.

    As :class:`LVISV05Dataset`, except for image paths: v1 image entries have no
    ``file_name``; the path is the image's ``coco_url`` without the host
    ``http://images.cocodataset.org/``, i.e. ``'train2017/000000391895.jpg'`` (the split
    folder included), so ``data_prefix['img']`` is the folder holding ``train2017`` and
    ``val2017``.

    Args:
        *args, **kwargs: Arguments of :class:`LVISV05Dataset`.
    """

    def _image_file_name(self, img_info: dict) -> str:
        """``coco_url`` without its host (a ``file_name`` is used if there is no url)."""
        if 'coco_url' not in img_info:
            if 'file_name' in img_info:
                return img_info['file_name']
            raise KeyError(f"image id={img_info.get('img_id')} in '{self.ann_file}' has "
                           "neither 'coco_url' nor 'file_name'; LVIS v1 images need "
                           "'coco_url'")
        return img_info['coco_url'].replace(COCO_IMAGE_URL, '')
