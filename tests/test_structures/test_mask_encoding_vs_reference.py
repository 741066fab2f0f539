"""Mask RLE encoding, areas and boxes against pycocotools (and a plain numpy RLE).

COCO's RLE runs over the mask in column-major (Fortran) order and starts with a run of
background; a C-order mistake would give a transposed mask, so the masks here are not
square and not symmetric. Boxes: pycocotools' ``toBbox`` is ``[x, y, w, h]`` with
``w = x_max - x_min + 1``, so ``x + w`` is the exclusive right edge that mmdetection's
``BitmapMasks.get_bboxes`` gives (``x2 = x_max + 1``); an empty mask is all zeros in both.
"""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO

from mmdet_lite.evaluation.functional.coco_utils import gt_to_coco_dict
from mmdet_lite.structures.mask import (BitmapMasks, encode_mask_results, mask2bbox,
                                        segmentation_to_bitmap)

# pycocotools' decode/frPyObjects trip a numpy 2 deprecation warning (copy keyword).
pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')

H, W = 23, 17


def random_masks() -> np.ndarray:
    """[8, H, W] bool masks: random blobs plus edge cases."""
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[:H, :W]
    masks = []
    for _ in range(4):  # ellipses of random centre and radii, some leaving the image
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        ry, rx = rng.uniform(2, 10), rng.uniform(2, 8)
        masks.append(((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1)
    noise = rng.rand(H, W) < 0.3  # many short runs
    corner = np.zeros((H, W), bool)
    corner[-1, -1] = True  # the last pixel in both orders
    empty = np.zeros((H, W), bool)
    ring = np.zeros((H, W), bool)
    ring[3:20, 2:15] = True
    ring[8:12, 5:9] = False  # a hole
    masks += [noise, corner, empty, ring]
    return np.stack(masks)


def numpy_rle_counts(mask: np.ndarray) -> list:
    """Uncompressed COCO RLE: run lengths over the column-major pixels, background first."""
    flat = mask.astype(np.uint8).ravel(order='F')
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0] + runs


def test_encode_mask_results_equals_pycocotools_and_a_numpy_rle():
    masks = random_masks()
    ours = encode_mask_results(masks)
    # pycocotools' batch entry point on a [H, W, N] Fortran array.
    ref = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    assert [r['size'] for r in ours] == [[H, W]] * len(masks)
    assert [r['counts'] for r in ours] == [r['counts'].decode() for r in ref]
    # The same compressed strings from run lengths computed with numpy alone.
    for rle, mask in zip(ours, masks):
        from_runs = mask_util.frPyObjects(dict(size=[H, W], counts=numpy_rle_counts(mask)), H, W)
        assert rle['counts'] == from_runs['counts'].decode()
        np.testing.assert_array_equal(mask_util.decode(rle).astype(bool), mask)
    # Tensors and uint8 masks encode the same.
    assert encode_mask_results(torch.from_numpy(masks)) == ours
    assert encode_mask_results(masks.astype(np.uint8)) == ours


def test_areas_and_boxes_equal_pycocotools_area_and_to_bbox():
    masks = random_masks()
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    bitmaps = BitmapMasks(masks, H, W)
    np.testing.assert_array_equal(bitmaps.areas, mask_util.area(rles))
    x, y, w, h = mask_util.toBbox(rles).T
    expected = np.stack([x, y, x + w, y + h], axis=1)
    np.testing.assert_array_equal(bitmaps.get_bboxes().numpy(), expected)
    np.testing.assert_array_equal(mask2bbox(torch.from_numpy(masks)).numpy(), expected)
    assert expected[6].tolist() == [0, 0, 0, 0]  # the empty mask
    assert expected[5].tolist() == [W - 1, H - 1, W, H]  # the last pixel alone


def test_segmentation_decoding_equals_coco_ann_to_mask():
    masks = random_masks()
    polygon = [[2.5, 1., 15., 4.5, 12., 20., 1., 14.], [14., 18., 16., 18., 16., 22.]]
    compressed = encode_mask_results(masks[:1])[0]
    uncompressed = dict(size=[H, W], counts=numpy_rle_counts(masks[3]))
    segmentations = [polygon, compressed, uncompressed]
    coco = COCO()
    coco.dataset = dict(
        images=[dict(id=1, height=H, width=W)], categories=[dict(id=1, name='x')],
        annotations=[dict(id=i + 1, image_id=1, category_id=1, segmentation=s, iscrowd=0,
                          area=1., bbox=[0, 0, 1, 1]) for i, s in enumerate(segmentations)])
    coco.createIndex()
    for i, segmentation in enumerate(segmentations):
        expected = coco.annToMask(coco.anns[i + 1]).astype(bool)
        assert expected.any()
        np.testing.assert_array_equal(segmentation_to_bitmap(segmentation, H, W), expected)
    np.testing.assert_array_equal(
        BitmapMasks.from_segmentations(segmentations, H, W).masks,
        np.stack([coco.annToMask(coco.anns[i + 1]) for i in range(3)]))


def test_gt_area_of_a_mask_annotation_is_its_pycocotools_area():
    masks = random_masks()[:4]
    rles = encode_mask_results(masks)
    anns = [dict(bbox=[0, 0, 5, 5], bbox_label=0, mask=rle) for rle in rles]
    anns.append(dict(bbox=[0, 0, 5, 5], bbox_label=0,
                     mask=[[2.5, 1., 15., 4.5, 12., 20., 1., 14.]]))
    coco = gt_to_coco_dict([dict(img_id=1, width=W, height=H, anns=anns)], ('x', ))
    polygon_rle = mask_util.merge(mask_util.frPyObjects(anns[-1]['mask'], H, W))
    expected = list(mask_util.area([dict(r, counts=r['counts'].encode()) for r in rles]))
    expected.append(mask_util.area(polygon_rle))
    assert [a['area'] for a in coco['annotations']] == [float(a) for a in expected]
    assert [a['area'] for a in coco['annotations']][:4] == masks.sum((1, 2)).tolist()
