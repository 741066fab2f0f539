"""Turn a dataset's raw ``instances`` annotations into ``gt_*`` arrays and masks.

Images are loaded by mmcv's ``LoadImageFromFile`` (found through the parent registry), so
only annotation loading lives here.
"""
from typing import List, Optional, Tuple, Union

import mmcv
import numpy as np
import torch
from mmcv.transforms import LoadAnnotations as MMCVLoadAnnotations
from mmengine.fileio import FileClient, get

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import get_box_type
from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks

# A degenerate triangle standing in for an instance whose mask annotation is unusable; the
# instance itself is marked ignored, so it never reaches a loss.
_FAKE_POLYGON = [np.zeros(6, dtype=np.float64)]


@TRANSFORMS.register_module()
class LoadAnnotations(MMCVLoadAnnotations):
    """Load boxes, labels, instance masks and a semantic map from ``results['instances']``.

    Each instance is a dict with ``bbox`` ([x1, y1, x2, y2] pixels), ``bbox_label`` (int),
    ``ignore_flag`` (0/1, optional, default 0) and, for ``with_mask``, ``mask``: either a
    list of polygons ``[[x1, y1, x2, y2, ...], ...]`` or a COCO RLE dict with ``size`` and
    ``counts`` (compressed string or uncompressed list).

    Added keys: ``gt_bboxes`` (a box object of ``box_type``, ``HorizontalBoxes`` [N, 4]
    float32 by default; with ``box_type=None`` an np.float32 array [N, 4]),
    ``gt_ignore_flags`` (bool [N]),
    ``gt_bboxes_labels`` (np.int64 [N]), ``gt_masks`` (:class:`BitmapMasks` when
    ``poly2mask`` else :class:`PolygonMasks`), ``gt_seg_map`` (np.uint8 [H, W]) and
    ``ignore_index``.

    As in mmdetection, an instance whose mask cannot be represented (no polygon with at
    least 3 points, an RLE mask while ``poly2mask=False``, or a malformed RLE dict) is kept
    but marked ignored, with an empty placeholder mask, so all ``gt_*`` stay aligned.

    Args:
        with_mask (bool): Load ``gt_masks``. Defaults to False.
        poly2mask (bool): Rasterize masks to :class:`BitmapMasks`; otherwise keep
            polygons as :class:`PolygonMasks`. Defaults to True.
        box_type (str, optional): Registered box type wrapping ``gt_bboxes`` ('hbox' is
            ``HorizontalBoxes``); None keeps an np.float32 array. Defaults to 'hbox'.
        reduce_zero_label (bool): Map semantic label 0 to ``ignore_index`` and shift the
            others down by one. Defaults to False.
        ignore_index (int): Label of ignored semantic pixels. Defaults to 255.
        **kwargs: mmcv's ``LoadAnnotations`` arguments: ``with_bbox`` (load
            ``gt_bboxes`` and ``gt_ignore_flags``, default True), ``with_label`` (load
            ``gt_bboxes_labels``, default True), ``with_seg`` (load ``gt_seg_map`` from
            ``results['seg_map_path']``, default False), ``imdecode_backend`` (default
            'cv2'), ``backend_args`` (mmengine file backend of the semantic map, default
            None) and the deprecated ``file_client_args``.
    """

    def __init__(self,
                 with_mask: bool = False,
                 poly2mask: bool = True,
                 box_type: Optional[str] = 'hbox',
                 reduce_zero_label: bool = False,
                 ignore_index: int = 255,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.with_mask = with_mask
        self.poly2mask = poly2mask
        self.box_type = box_type
        self.reduce_zero_label = reduce_zero_label
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        """Add the requested ``gt_*`` entries to ``results``.

        Args:
            results (dict): Dataset sample with ``instances`` (and ``ori_shape`` or
                ``height``/``width`` when loading masks).

        Returns:
            dict: ``results`` with the loaded annotations.
        """
        instances = results.get('instances', [])
        if self.with_bbox:
            boxes = np.array([_field(inst, 'bbox', i) for i, inst in enumerate(instances)],
                             dtype=np.float32).reshape(-1, 4)
            if self.box_type is None:
                results['gt_bboxes'] = boxes
            else:
                box_cls = get_box_type(self.box_type)[1]
                results['gt_bboxes'] = box_cls(boxes, dtype=torch.float32)
            results['gt_ignore_flags'] = np.array(
                [bool(inst.get('ignore_flag', 0)) for inst in instances], dtype=bool)
        if self.with_label:
            results['gt_bboxes_labels'] = np.array(
                [_field(inst, 'bbox_label', i) for i, inst in enumerate(instances)],
                dtype=np.int64)
        if self.with_mask:
            self._load_masks(results, instances)
        if self.with_seg:
            self._load_seg_map(results)
        return results

    def _load_masks(self, results: dict, instances: List[dict]) -> None:
        h, w = _image_size(results)
        masks, ignore_flags = [], []
        for i, inst in enumerate(instances):
            mask, usable = self._parse_mask(_field(inst, 'mask', i))
            masks.append(mask)
            ignore_flags.append(bool(inst.get('ignore_flag', 0)) or not usable)
        # Unusable masks turn their instance into an ignored one, for every gt_* key.
        results['gt_ignore_flags'] = np.array(ignore_flags, dtype=bool)
        if self.poly2mask:
            results['gt_masks'] = BitmapMasks.from_segmentations(masks, h, w)
        else:
            results['gt_masks'] = PolygonMasks(masks, h, w)

    def _parse_mask(self, mask: Union[list, dict]) -> Tuple[Union[list, dict], bool]:
        """Validate one mask annotation; return (mask, usable) with a placeholder if not."""
        if isinstance(mask, list):
            polygons = [np.asarray(p, dtype=np.float64) for p in mask
                        if len(p) >= 6 and len(p) % 2 == 0]
            return (polygons, True) if polygons else (_FAKE_POLYGON, False)
        if not self.poly2mask:
            return _FAKE_POLYGON, False  # PolygonMasks cannot hold an RLE mask
        if (isinstance(mask, dict) and mask.get('size') is not None
                and isinstance(mask.get('counts'), (list, str, bytes))):
            return mask, True
        return _FAKE_POLYGON, False

    def _load_seg_map(self, results: dict) -> None:
        if results.get('seg_map_path') is None:
            return
        if self.file_client_args is not None:  # mmcv's deprecated way, still accepted
            seg_bytes = FileClient.infer_client(self.file_client_args,
                                                results['seg_map_path']).get(
                                                    results['seg_map_path'])
        else:
            seg_bytes = get(results['seg_map_path'], backend_args=self.backend_args)
        seg = mmcv.imfrombytes(seg_bytes, flag='unchanged',
                               backend=self.imdecode_backend).squeeze()
        if self.reduce_zero_label:
            # Shift in a wider dtype so label 0 does not wrap around to 255 unnoticed.
            shifted = seg.astype(np.int64) - 1
            shifted[seg == 0] = self.ignore_index
            shifted[seg == self.ignore_index] = self.ignore_index
            seg = shifted.astype(seg.dtype)
        if results.get('label_map') is not None:
            original = seg.copy()
            for old_id, new_id in results['label_map'].items():
                seg[original == old_id] = new_id
        results['gt_seg_map'] = seg
        results['ignore_index'] = self.ignore_index

    def __repr__(self) -> str:
        # mmdetection's format: box_type and the semantic-map options are not shown.
        return (f'{self.__class__.__name__}(with_bbox={self.with_bbox}, '
                f'with_label={self.with_label}, with_mask={self.with_mask}, '
                f'with_seg={self.with_seg}, poly2mask={self.poly2mask}, '
                f"imdecode_backend='{self.imdecode_backend}', "
                f'backend_args={self.backend_args})')


def _field(instance: dict, key: str, index: int):
    """``instance[key]`` with an error naming the instance and the missing field."""
    try:
        return instance[key]
    except KeyError:
        raise KeyError(f"LoadAnnotations: instance {index} in results['instances'] has no "
                       f"'{key}' field (it has {sorted(instance)}).") from None


def _image_size(results: dict) -> Tuple[int, int]:
    """(h, w) of the image the masks are drawn on: ``ori_shape`` or ``height``/``width``."""
    if 'ori_shape' in results:
        h, w = results['ori_shape'][:2]
    elif 'height' in results and 'width' in results:
        h, w = results['height'], results['width']
    else:
        raise KeyError("LoadAnnotations(with_mask=True) needs the image size: results has "
                       "neither 'ori_shape' (set by LoadImageFromFile) nor 'height'/'width'.")
    return int(h), int(w)
