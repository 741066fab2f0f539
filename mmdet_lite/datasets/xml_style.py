"""Datasets annotated with one Pascal VOC style XML file per image."""
import os.path as osp
import xml.etree.ElementTree as ET
from typing import List, Optional

import mmcv
from mmengine.fileio import get, get_local_path, list_from_file

from ..registry import DATASETS
from .base_det_dataset import BaseDetDataset


class XMLDatasetError(ValueError, AssertionError):
    """A setting mmdetection asserts on (no classes, ``bbox_min_size`` in test mode)."""


@DATASETS.register_module()
class XMLDataset(BaseDetDataset):
    """Detection dataset of Pascal VOC style XML annotations.

    ``ann_file`` is an image-set file: one image id per line (e.g.
    ``VOC2007/ImageSets/Main/trainval.txt``). For image id ``ID`` the image is
    ``{sub_data_root}/{img_subdir}/ID.jpg`` and its annotation
    ``{sub_data_root}/{ann_subdir}/ID.xml``, where ``sub_data_root`` is
    ``data_prefix['sub_data_root']`` (joined to ``data_root`` by mmengine). The image size
    is read from ``<size>``, or from the image itself when the XML has none.

    Each ``<object>`` whose ``<name>`` is one of ``metainfo['classes']`` becomes an
    instance (others are skipped) with ``bbox`` = ``(xmin, ymin, xmax, ymax)`` truncated to
    int, minus 1 (VOC's 1-based pixel coordinates to 0-based), ``bbox_label`` and
    ``ignore_flag``: 1 for ``<difficult>1</difficult>`` objects and, when
    ``filter_cfg['bbox_min_size']`` is set (training only), for boxes narrower or shorter
    than it. Data infos also hold ``img_id`` (the id string), ``xml_path``, ``height`` and
    ``width``. In training mode ``filter_cfg`` can drop images without instances
    (``filter_empty_gt``) or with a side below ``min_size``.

    Args:
        img_subdir (str): Image folder under ``sub_data_root``. Defaults to ``'JPEGImages'``.
        ann_subdir (str): XML folder under ``sub_data_root``. Defaults to ``'Annotations'``.
        **kwargs: Arguments of :class:`BaseDetDataset` (``ann_file``, ``data_root``,
            ``data_prefix=dict(sub_data_root=...)``, ``metainfo``, ``filter_cfg``,
            ``test_mode``, ``pipeline``, ``backend_args`` ...).
    """

    def __init__(self,
                 img_subdir: str = 'JPEGImages',
                 ann_subdir: str = 'Annotations',
                 **kwargs) -> None:
        self.img_subdir = img_subdir
        self.ann_subdir = ann_subdir
        super().__init__(**kwargs)

    @property
    def sub_data_root(self) -> str:
        """The dataset's folder (``data_prefix['sub_data_root']``, '' if unset)."""
        return self.data_prefix.get('sub_data_root', '')

    @property
    def bbox_min_size(self) -> Optional[int]:
        """``filter_cfg['bbox_min_size']``: smaller boxes are marked ignored (or None)."""
        if self.filter_cfg is not None:
            return self.filter_cfg.get('bbox_min_size', None)
        return None

    def load_data_list(self) -> List[dict]:
        """One data info per id of the image-set file ``ann_file``, in file order."""
        classes = self._metainfo.get('classes', None)
        if classes is None:
            raise XMLDatasetError(f'`classes` in `{type(self).__name__}` can not be None: '
                                  'set metainfo=dict(classes=(...))')
        self.cat2label = {name: i for i, name in enumerate(classes)}
        try:
            img_ids = list_from_file(self.ann_file, backend_args=self.backend_args)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"image-set file (ann_file) '{self.ann_file}' does not "
                                    'exist; check data_root and ann_file') from err
        data_list = []
        for img_id in img_ids:
            if not img_id.strip():  # a trailing blank line is not an image
                continue
            raw_img_info = dict(
                img_id=img_id,
                file_name=osp.join(self.img_subdir, f'{img_id}.jpg'),
                xml_path=osp.join(self.sub_data_root, self.ann_subdir, f'{img_id}.xml'))
            data_list.append(self.parse_data_info(raw_img_info))
        return data_list

    def parse_data_info(self, img_info: dict) -> dict:
        """Read one image's XML into a data info.

        Args:
            img_info (dict): ``img_id``, ``file_name`` (relative to ``sub_data_root``) and
                ``xml_path``.

        Returns:
            dict: ``img_path``, ``img_id``, ``xml_path``, ``height``, ``width`` and
            ``instances``.
        """
        img_path = osp.join(self.sub_data_root, img_info['file_name'])
        data_info = dict(img_path=img_path, img_id=img_info['img_id'],
                         xml_path=img_info['xml_path'])
        xml_path = img_info['xml_path']
        try:
            with get_local_path(xml_path, backend_args=self.backend_args) as local_path:
                tree = ET.parse(local_path)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"annotation '{xml_path}' of image id "
                                    f"'{img_info['img_id']}' does not exist") from err
        except ET.ParseError as err:
            raise ValueError(f"annotation '{xml_path}' is not valid XML: {err}") from err
        size = tree.getroot().find('size')
        if size is not None:
            width = int(_text(size, 'width', xml_path))
            height = int(_text(size, 'height', xml_path))
        else:
            img = mmcv.imfrombytes(get(img_path, backend_args=self.backend_args),
                                   backend='cv2')
            height, width = img.shape[:2]
        data_info['height'] = height
        data_info['width'] = width
        data_info['instances'] = self._parse_instance_info(tree, xml_path, minus_one=True)
        return data_info

    def _parse_instance_info(self, tree: ET.ElementTree, xml_path: str = '',
                             minus_one: bool = True) -> List[dict]:
        """The instances of the listed classes in one XML tree.

        Args:
            tree (ElementTree): The parsed XML.
            xml_path (str): Its path, for error messages.
            minus_one (bool): Subtract 1 from the coordinates (VOC is 1-based).

        Returns:
            list[dict]: ``bbox`` (4 ints), ``bbox_label`` and ``ignore_flag`` per object.
        """
        min_size = self.bbox_min_size
        if min_size is not None and self.test_mode:
            raise XMLDatasetError("filter_cfg['bbox_min_size'] marks small boxes ignored "
                                  'for training; it cannot be used with test_mode=True')
        instances = []
        for obj in tree.findall('object'):
            name = _text(obj, 'name', xml_path)
            if name not in self.cat2label:
                continue
            difficult = obj.find('difficult')
            difficult = 0 if difficult is None else int(difficult.text)
            bnd_box = obj.find('bndbox')
            if bnd_box is None:
                raise ValueError(f"object '{name}' in '{xml_path}' has no <bndbox>")
            bbox = [int(float(_text(bnd_box, key, xml_path)))
                    for key in ('xmin', 'ymin', 'xmax', 'ymax')]
            if minus_one:
                bbox = [v - 1 for v in bbox]
            too_small = min_size is not None and (bbox[2] - bbox[0] < min_size
                                                  or bbox[3] - bbox[1] < min_size)
            instances.append(dict(ignore_flag=1 if difficult or too_small else 0,
                                  bbox=bbox, bbox_label=self.cat2label[name]))
        return instances

    def filter_data(self) -> List[dict]:
        """Apply ``filter_cfg`` (``filter_empty_gt``, ``min_size``) in training mode."""
        if self.test_mode:
            return self.data_list
        cfg = self.filter_cfg or {}
        filter_empty_gt = cfg.get('filter_empty_gt', False)
        min_size = cfg.get('min_size', 0)
        return [info for info in self.data_list
                if not (filter_empty_gt and not info['instances'])
                and min(info['width'], info['height']) >= min_size]


def _text(node: ET.Element, tag: str, xml_path: str) -> str:
    """Text of the child ``tag`` of ``node``; ValueError naming the file if missing."""
    child = node.find(tag)
    if child is None or child.text is None:
        raise ValueError(f"<{node.tag}> in '{xml_path}' has no <{tag}>")
    return child.text.strip()
