"""Albu: run an `albumentations <https://albumentations.ai>`_ pipeline inside ours."""
import copy
import inspect
import os
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import avoid_cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import HorizontalBoxes, autocast_box_type
from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks
from .optional_imports import import_optional
from .transform_arg_errors import check_arg

_DEFAULT_KEYMAP = {'img': 'image', 'gt_masks': 'masks', 'gt_bboxes': 'bboxes'}


def _import_albumentations():
    # albumentations asks PyPI for a newer version on import unless told not to; data
    # pipelines must not touch the network (a user's explicit setting is kept).
    os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')
    return import_optional('albumentations', 'albumentations', 'Albu')


@TRANSFORMS.register_module()
@avoid_cache_randomness
class Albu(BaseTransform):
    """Apply albumentations transforms to the image, boxes and bitmap masks.

    Needs the optional package ``albumentations``; building the transform without it raises
    an ``ImportError`` (also a ``RuntimeError``) naming the package.

    ``transforms`` and ``bbox_params`` are albumentations configs: ``type`` names a class of
    the ``albumentations`` module (or is the class itself); a nested ``transforms`` list (for
    ``OneOf`` ...) is built the same way. Result keys are renamed with ``keymap`` on the way
    in (``img`` -> ``image``, ``gt_masks`` -> ``masks``, ``gt_bboxes`` -> ``bboxes`` by
    default) and back on the way out; other keys are passed through, so ``bbox_params``'s
    ``label_fields`` can name ``gt_bboxes_labels`` / ``gt_ignore_flags`` to keep them aligned
    with the boxes albumentations drops.

    With ``filter_lost_elements=True`` in ``bbox_params`` (besides ``label_fields``), the
    label fields *and the masks* are re-indexed to the surviving boxes; then
    ``skip_img_without_anno`` makes the transform return None when no box survives.

    Required keys: ``img`` (uint8); optional ``gt_bboxes`` (HorizontalBoxes or a float32
    [N, 4] array), ``gt_masks`` (BitmapMasks). Modified keys: ``img``, ``img_shape`` (H, W),
    ``gt_bboxes``, ``gt_masks`` and the label fields.

    Args:
        transforms (list[dict]): albumentations transform configs.
        bbox_params (dict, optional): Config of ``albumentations.BboxParams`` (with
            ``type='BboxParams'``). Defaults to None.
        keymap (dict, optional): ``{our key: albumentations key}``. Defaults to None
            (the mapping above).
        skip_img_without_anno (bool): Return None when no box survives (needs
            ``filter_lost_elements``). Defaults to False.
    """

    def __init__(self,
                 transforms: List[dict],
                 bbox_params: Optional[dict] = None,
                 keymap: Optional[dict] = None,
                 skip_img_without_anno: bool = False) -> None:
        albumentations = _import_albumentations()
        # Deep copies: the bbox_params edits below must not leak into the caller's config.
        self.transforms = copy.deepcopy(transforms)
        bbox_params = copy.deepcopy(bbox_params)
        self.filter_lost_elements = False
        self.skip_img_without_anno = skip_img_without_anno
        if (isinstance(bbox_params, dict) and 'label_fields' in bbox_params
                and 'filter_lost_elements' in bbox_params):
            # albumentations then tracks only an index field, which re-indexes the real
            # label fields and the masks (which albumentations never drops) afterwards.
            self.filter_lost_elements = True
            self.origin_label_fields = bbox_params['label_fields']
            bbox_params['label_fields'] = ['idx_mapper']
            del bbox_params['filter_lost_elements']
        self.bbox_params = self.albu_builder(bbox_params) if bbox_params else None
        self.aug = albumentations.Compose([self.albu_builder(t) for t in self.transforms],
                                          bbox_params=self.bbox_params)
        self.keymap_to_albu = copy.deepcopy(keymap) if keymap else dict(_DEFAULT_KEYMAP)
        self.keymap_back = {v: k for k, v in self.keymap_to_albu.items()}

    def albu_builder(self, cfg: dict):
        """Build an albumentations object from its config.

        Args:
            cfg (dict): Config with ``type`` (a name in ``albumentations`` or a class) and
                the constructor arguments; a ``transforms`` list is built recursively.

        Returns:
            object: The albumentations transform (or ``BboxParams``).
        """
        check_arg(isinstance(cfg, dict) and 'type' in cfg,
                  f'Albu: each albumentations config must be a dict with a "type", got {cfg!r}.')
        args = dict(cfg)
        obj_type = args.pop('type')
        if isinstance(obj_type, str):
            obj_cls = getattr(_import_albumentations(), obj_type)
        elif inspect.isclass(obj_type):
            obj_cls = obj_type
        else:
            raise TypeError(f'Albu: type must be a str or a class, got {type(obj_type)}.')
        if 'transforms' in args:
            args['transforms'] = [self.albu_builder(t) for t in args['transforms']]
        return obj_cls(**args)

    @staticmethod
    def mapper(d: dict, keymap: dict) -> dict:
        """Rename the keys of ``d`` found in ``keymap``.

        Args:
            d (dict): Dict to rename.
            keymap (dict): ``{old key: new key}``.

        Returns:
            dict: A new dict with the renamed keys.
        """
        return {keymap.get(key, key): value for key, value in d.items()}

    @autocast_box_type()
    def transform(self, results: dict) -> Union[dict, None]:
        """Run the albumentations pipeline on ``results``.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict | None: New results, or None when ``skip_img_without_anno`` applies.
        """
        data = self.mapper(results, self.keymap_to_albu)
        data, ori_masks = self._preprocess_results(data)
        data = self._postprocess_results(self.aug(**data), ori_masks)
        if data is None:
            return None
        data = self.mapper(data, self.keymap_back)
        data['img_shape'] = data['img'].shape[:2]
        return data

    def _preprocess_results(self, data: dict) -> Tuple[dict, Optional[BitmapMasks]]:
        """Boxes to a list of [4] arrays, masks to a list of [H, W] arrays."""
        if 'bboxes' in data:
            if not isinstance(data['bboxes'], HorizontalBoxes):
                raise NotImplementedError('Albu supports horizontal boxes only, got '
                                          f'{type(data["bboxes"]).__name__}.')
            data['bboxes'] = list(data['bboxes'].numpy())
            if self.filter_lost_elements:
                data['idx_mapper'] = np.arange(len(data['bboxes']))
        ori_masks = None
        if 'masks' in data:
            if isinstance(data['masks'], PolygonMasks):
                raise NotImplementedError('Albu supports BitmapMasks only, got PolygonMasks.')
            ori_masks = data['masks']
            data['masks'] = list(ori_masks.masks)
        return data, ori_masks

    def _postprocess_results(self, data: dict,
                             ori_masks: Optional[BitmapMasks] = None) -> Optional[dict]:
        """Back to our types: arrays of labels/flags, HorizontalBoxes, BitmapMasks."""
        # albumentations returns lists or arrays depending on its version.
        dtypes: Dict[str, type] = {'gt_bboxes_labels': np.int64, 'gt_ignore_flags': bool}
        for key, dtype in dtypes.items():
            if isinstance(data.get(key), list):
                data[key] = np.array(data[key], dtype=dtype)

        if 'bboxes' in data:
            data['bboxes'] = HorizontalBoxes(
                np.asarray(data['bboxes'], dtype=np.float32).reshape(-1, 4))
            if self.filter_lost_elements:
                kept = np.asarray(data['idx_mapper'], dtype=np.int64)
                for field in self.origin_label_fields:
                    data[field] = np.asarray(data[field])[kept]
                if 'masks' in data:
                    data['masks'] = [data['masks'][i] for i in kept]
                if not len(kept) and self.skip_img_without_anno:
                    return None

        if 'masks' in data and ori_masks is not None:
            height, width = data[self.keymap_to_albu.get('img', 'img')].shape[:2]
            masks = np.stack(data['masks']) if len(data['masks']) else np.zeros(
                (0, height, width), dtype=ori_masks.masks.dtype)
            data['masks'] = BitmapMasks(masks, height, width)
        return data

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(transforms={self.transforms})'
