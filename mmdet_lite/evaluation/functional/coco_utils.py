"""Conversions between mmdet_lite data samples and the COCO json format.

COCO stores boxes as ``[x, y, w, h]`` and masks as run-length encodings (RLE); mmdet_lite keeps
boxes as ``(x1, y1, x2, y2)`` pixels and masks as bool arrays. These helpers translate
predictions into COCO result lists and ground truth into a COCO annotation dict, so that
pycocotools can evaluate a dataset that has no annotation file of its own.
"""
import contextlib
import datetime
import io
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from pycocotools.coco import COCO

from mmdet_lite.structures.mask import encode_mask_results


def to_numpy(data: Any, dtype: Optional[type] = None) -> np.ndarray:
    """Turn a tensor, array or list into a numpy array on the CPU."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    array = np.asarray(data)
    return array.astype(dtype) if dtype is not None else array


def xyxy_to_xywh(bbox: Sequence[float]) -> List[float]:
    """Convert one ``(x1, y1, x2, y2)`` box to COCO's ``[x, y, w, h]``."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return [x1, y1, x2 - x1, y2 - y1]


def masks_to_original_shape(masks: Any, img_shape: Optional[Sequence[int]],
                            ori_shape: Sequence[int]) -> np.ndarray:
    """Bring ground-truth masks from the network input back to the original image.

    Args:
        masks: ``BitmapMasks``/``PolygonMasks`` (anything with ``to_ndarray``), a tensor or an
            array of shape [N, h, w] in network-input pixels, possibly padded.
        img_shape (Sequence[int], optional): (h, w) of the resized image before padding.
        ori_shape (Sequence[int]): (H, W) of the original image.

    Returns:
        np.ndarray: Bool masks, shape [N, H, W].
    """
    array = masks.to_ndarray() if hasattr(masks, 'to_ndarray') else to_numpy(masks)
    array = array.astype(bool)
    if img_shape is not None:  # padding is not part of the image, drop it first
        array = array[:, :int(img_shape[0]), :int(img_shape[1])]
    ori_h, ori_w = int(ori_shape[0]), int(ori_shape[1])
    if array.shape[1:] != (ori_h, ori_w) and len(array) > 0:
        resized = F.interpolate(
            torch.from_numpy(array).float()[None], size=(ori_h, ori_w), mode='nearest')
        array = resized[0].numpy() > 0.5  # [N, H, W]
    return array.reshape(len(array), ori_h, ori_w)


def _segmentation_area(segmentation: Union[list, dict], height: int, width: int) -> float:
    """Pixel area of a COCO segmentation (polygons, compressed or uncompressed RLE)."""
    if isinstance(segmentation, list):  # polygons
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get('counts'), list):  # uncompressed RLE
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return float(mask_util.area(rle))


def gt_to_coco_dict(gt_dicts: Sequence[dict], classes: Sequence[str]) -> dict:
    """Build a COCO annotation dict from per-image ground truth.

    Category ids are the class indices (0-based), as in mmdetection's converter, so a
    prediction label maps to the category id with the same value. An annotation's ``area`` is
    its mask area when a mask is given (as in official COCO files), else its box area.

    Args:
        gt_dicts (Sequence[dict]): One dict per image with ``img_id``, ``width``, ``height``
            (original image) and ``anns``: a list of dicts with ``bbox`` (x1, y1, x2, y2 in
            original pixels), ``bbox_label`` (int), optional ``ignore_flag`` (crowd / ignored
            region) and optional ``mask`` (polygon list or RLE dict).
        classes (Sequence[str]): Class names; index i names category id i.

    Returns:
        dict: COCO dict with ``info``, ``images``, ``annotations`` and ``categories``.
    """
    categories = [dict(id=i, name=name) for i, name in enumerate(classes)]
    images, annotations, seen_ids = [], [], set()
    for gt in gt_dicts:
        img_id = gt['img_id']
        if img_id in seen_ids:  # the same image twice would count its objects twice
            continue
        seen_ids.add(img_id)
        height, width = int(gt['height']), int(gt['width'])
        images.append(dict(id=img_id, width=width, height=height, file_name=''))
        for ann in gt['anns']:
            label = int(ann['bbox_label'])
            if not 0 <= label < len(classes):
                raise ValueError(f'ground-truth label {label} of image {img_id} is outside '
                                 f'[0, {len(classes)}): dataset_meta has {len(classes)} classes')
            coco_bbox = xyxy_to_xywh(ann['bbox'])
            annotation = dict(
                id=len(annotations) + 1,  # COCOeval treats id 0 as "unmatched"
                image_id=img_id,
                bbox=coco_bbox,
                iscrowd=int(bool(ann.get('ignore_flag', 0))),
                category_id=label,
                area=coco_bbox[2] * coco_bbox[3])
            mask = ann.get('mask')
            if mask is not None and len(mask) > 0:
                if isinstance(mask, dict) and isinstance(mask['counts'], bytes):
                    mask = dict(mask, counts=mask['counts'].decode())
                annotation['segmentation'] = mask
                annotation['area'] = _segmentation_area(mask, height, width)
            annotations.append(annotation)
    info = dict(date_created=str(datetime.datetime.now()),
                description='COCO json converted from ground truth by mmdet_lite CocoMetric.')
    return dict(info=info, images=images, annotations=annotations, categories=categories,
                licenses=[])


def results_to_coco(results: Sequence[dict],
                    cat_ids: Sequence[int]) -> Tuple[List[dict], Optional[List[dict]]]:
    """Convert per-image predictions to COCO result lists.

    Args:
        results (Sequence[dict]): One dict per image with ``img_id``, ``bboxes`` [N, 4]
            (x1, y1, x2, y2), ``scores`` [N], ``labels`` [N] (0-based), optional ``masks``
            (N RLE dicts) and optional ``mask_scores`` [N].
        cat_ids (Sequence[int]): COCO category id of each label.

    Returns:
        tuple[list[dict], list[dict] | None]: Box results, and mask results (``None`` when no
        image has masks). Each entry has ``image_id``, ``category_id``, ``bbox`` (xywh) and
        ``score``; mask entries add ``segmentation``.
    """
    bbox_results = []
    segm_results = [] if any('masks' in r for r in results) else None
    for result in results:
        labels = result['labels']
        if len(labels) and (labels.min() < 0 or labels.max() >= len(cat_ids)):
            raise ValueError(f'predicted label {int(labels.max())} of image {result["img_id"]} '
                             f'is outside [0, {len(cat_ids)}): there are {len(cat_ids)} '
                             'categories')
        for i, label in enumerate(labels):
            bbox_results.append(dict(image_id=result['img_id'], category_id=cat_ids[label],
                                     bbox=xyxy_to_xywh(result['bboxes'][i]),
                                     score=float(result['scores'][i])))
        if segm_results is None:
            continue
        if 'masks' not in result:
            raise KeyError(f'image {result["img_id"]} has no pred_instances.masks while '
                           'other images have them')
        mask_scores = result.get('mask_scores', result['scores'])
        for i, label in enumerate(labels):
            segm_results.append(dict(image_id=result['img_id'], category_id=cat_ids[label],
                                     bbox=xyxy_to_xywh(result['bboxes'][i]),
                                     score=float(mask_scores[i]),
                                     segmentation=result['masks'][i]))
    return bbox_results, segm_results


def quiet_coco(dataset: Dict[str, Any]) -> COCO:
    """Index a COCO dict without pycocotools' progress prints."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _instances_to_anns(instances: Any, sample: dict, ignore_flag: int) -> List[dict]:
    """Turn ``gt_instances``-style data (network-input pixels) into original-image anns."""
    bboxes = to_numpy(instances['bboxes'], np.float64).reshape(-1, 4)
    labels = to_numpy(instances['labels'], np.int64).reshape(-1)
    if len(bboxes) != len(labels):
        raise ValueError(f'image {sample["img_id"]}: {len(bboxes)} gt bboxes but '
                         f'{len(labels)} gt labels')
    scale_factor = sample.get('scale_factor')
    if scale_factor is not None:  # (w_scale, h_scale): undo the test-time Resize
        w_scale, h_scale = float(scale_factor[0]), float(scale_factor[1])
        bboxes = bboxes / np.array([w_scale, h_scale, w_scale, h_scale])
    masks = None
    if 'masks' in instances and instances['masks'] is not None:
        masks = encode_mask_results(masks_to_original_shape(
            instances['masks'], sample.get('img_shape'), sample['ori_shape']))
    return [dict(bbox=bboxes[i].tolist(), bbox_label=int(labels[i]), ignore_flag=ignore_flag,
                 mask=None if masks is None else masks[i]) for i in range(len(labels))]


def sample_to_gt_dict(sample: dict) -> dict:
    """Extract one image's ground truth from a data sample, in original-image pixels.

    The raw dataset ``instances`` list is used when the sample carries it (it is already in
    original pixels); otherwise ``gt_instances`` (boxes divided by ``scale_factor``) plus
    ``ignored_instances`` as crowd regions.

    Args:
        sample (dict): A data sample as a dict with ``img_id``, ``ori_shape`` and either
            ``instances`` or ``gt_instances``; optional ``ignored_instances``,
            ``scale_factor`` (w, h) and ``img_shape``.

    Returns:
        dict: ``img_id``, ``width``, ``height`` and ``anns`` as :func:`gt_to_coco_dict` reads.
    """
    for key in ('img_id', 'ori_shape'):
        if key not in sample:
            raise KeyError(f"data sample has no '{key}'; CocoMetric needs it to convert the "
                           'ground truth when ann_file is None')
    height, width = int(sample['ori_shape'][0]), int(sample['ori_shape'][1])
    if 'instances' in sample:
        anns = [dict(bbox=list(ann['bbox']), bbox_label=int(ann['bbox_label']),
                     ignore_flag=int(ann.get('ignore_flag', 0)), mask=ann.get('mask'))
                for ann in sample['instances']]
    elif 'gt_instances' in sample:
        anns = _instances_to_anns(sample['gt_instances'], sample, ignore_flag=0)
        if sample.get('ignored_instances') is not None and \
                'bboxes' in sample['ignored_instances']:
            anns += _instances_to_anns(sample['ignored_instances'], sample, ignore_flag=1)
    else:
        raise KeyError(f'data sample of image {sample["img_id"]} has neither `instances` nor '
                       '`gt_instances`: CocoMetric needs ground truth in the samples when '
                       'ann_file is None (or set ann_file to a COCO json)')
    return dict(img_id=sample['img_id'], width=width, height=height, anns=anns)
