"""LoadAnnotations: boxes, labels, ignore flags, polygon/RLE masks and semantic maps."""
import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from transform_helpers import mask_boxes, rect_bitmap

from mmdet_lite.datasets.transforms import LoadAnnotations
from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import HorizontalBoxes
from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks

H, W = 20, 30


def compressed_rle(box):
    rle = mask_utils.encode(np.asfortranarray(rect_bitmap(box)))
    return dict(size=rle['size'], counts=rle['counts'].decode())


def uncompressed_rle(box):
    """COCO's uncompressed RLE: run lengths of the column-major pixels, starting with 0s."""
    flat = rect_bitmap(box).flatten(order='F')
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return dict(size=[H, W], counts=counts)


def sample(masks=None):
    instances = [
        dict(bbox=[3, 2, 9, 8], bbox_label=1, ignore_flag=0),
        dict(bbox=[10, 5, 30, 20], bbox_label=4, ignore_flag=1),
        dict(bbox=[0, 0, 4, 4], bbox_label=2),  # ignore_flag missing means 0
    ]
    if masks is not None:
        for instance, mask in zip(instances, masks):
            instance['mask'] = mask
    return dict(ori_shape=(H, W), instances=instances)


def polygon(box):
    x1, y1, x2, y2 = box
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


BOXES = [[3, 2, 9, 8], [10, 5, 30, 20], [0, 0, 4, 4]]


def test_boxes_labels_and_ignore_flags():
    results = LoadAnnotations()(sample())
    # box_type='hbox' (the default) gives HorizontalBoxes, as in mmdetection 3.
    boxes = results['gt_bboxes']
    assert isinstance(boxes, HorizontalBoxes)
    assert boxes.tensor.dtype == torch.float32 and boxes.shape == (3, 4)
    np.testing.assert_allclose(boxes.numpy(), BOXES)
    assert results['gt_bboxes_labels'].dtype == np.int64
    assert results['gt_bboxes_labels'].tolist() == [1, 4, 2]
    assert results['gt_ignore_flags'].dtype == bool
    assert results['gt_ignore_flags'].tolist() == [False, True, False]
    assert 'gt_masks' not in results


def test_box_type_none_keeps_a_float32_array():
    results = LoadAnnotations(box_type=None)(sample())
    assert isinstance(results['gt_bboxes'], np.ndarray)
    assert results['gt_bboxes'].dtype == np.float32 and results['gt_bboxes'].shape == (3, 4)
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)
    assert results['gt_ignore_flags'].tolist() == [False, True, False]


def test_no_instances_gives_empty_arrays():
    results = LoadAnnotations(with_mask=True)(dict(ori_shape=(H, W), instances=[]))
    assert results['gt_bboxes'].shape == (0, 4)
    assert LoadAnnotations(box_type=None)(dict(instances=[]))['gt_bboxes'].shape == (0, 4)
    assert results['gt_bboxes_labels'].shape == (0, )
    assert results['gt_ignore_flags'].shape == (0, )
    assert len(results['gt_masks']) == 0 and results['gt_masks'].height == H


def test_polygon_and_rle_masks_to_bitmaps():
    masks = [polygon(BOXES[0]), compressed_rle(BOXES[1]), uncompressed_rle(BOXES[2])]
    results = TRANSFORMS.build(dict(type='LoadAnnotations', with_mask=True))(sample(masks))
    gt_masks = results['gt_masks']
    assert isinstance(gt_masks, BitmapMasks)
    assert gt_masks.masks.shape == (3, H, W) and gt_masks.masks.dtype == np.uint8
    np.testing.assert_allclose(mask_boxes(gt_masks), BOXES)
    np.testing.assert_array_equal(gt_masks.areas, [36, 300, 16])
    assert results['gt_ignore_flags'].tolist() == [False, True, False]


def test_poly2mask_false_keeps_polygons_and_ignores_rle_instances():
    masks = [polygon(BOXES[0]), polygon(BOXES[1]), compressed_rle(BOXES[2])]
    results = LoadAnnotations(with_mask=True, poly2mask=False, box_type=None)(sample(masks))
    gt_masks = results['gt_masks']
    assert isinstance(gt_masks, PolygonMasks) and len(gt_masks) == 3
    np.testing.assert_allclose(gt_masks.masks[0][0], [3, 2, 9, 2, 9, 8, 3, 8])
    # PolygonMasks cannot hold an RLE mask: that instance becomes ignored (not dropped).
    assert results['gt_ignore_flags'].tolist() == [False, True, True]
    assert len(results['gt_bboxes']) == 3


def test_invalid_polygons_mark_instance_ignored():
    masks = [[[1, 2, 3, 4]], polygon(BOXES[1]), [[0, 0, 4, 0, 4, 4, 0, 4], [1, 1, 2]]]
    results = LoadAnnotations(with_mask=True)(sample(masks))
    assert results['gt_ignore_flags'].tolist() == [True, True, False]
    np.testing.assert_array_equal(results['gt_masks'].areas, [0, 300, 16])


def test_mask_size_from_height_width_and_missing_fields():
    data = sample([polygon(b) for b in BOXES])
    del data['ori_shape']
    data.update(height=H, width=W)
    assert LoadAnnotations(with_mask=True)(data)['gt_masks'].width == W
    with pytest.raises(KeyError, match="'mask'"):
        LoadAnnotations(with_mask=True)(sample())
    with pytest.raises(KeyError, match='ori_shape'):
        LoadAnnotations(with_mask=True)(dict(instances=[]))
    with pytest.raises(KeyError, match="instance 0 .* 'bbox_label'"):
        LoadAnnotations()(dict(instances=[dict(bbox=[0, 0, 1, 1])]))


def test_semantic_map_with_reduce_zero_label(tmp_path):
    seg = np.array([[0, 1, 2], [3, 255, 1]], dtype=np.uint8)
    path = str(tmp_path / 'seg.png')
    cv2.imwrite(path, seg)
    results = LoadAnnotations(with_bbox=False, with_label=False, with_seg=True)(
        dict(seg_map_path=path))
    np.testing.assert_array_equal(results['gt_seg_map'], seg)
    assert results['ignore_index'] == 255
    reduced = LoadAnnotations(with_bbox=False, with_label=False, with_seg=True,
                              reduce_zero_label=True)(dict(seg_map_path=path))
    np.testing.assert_array_equal(reduced['gt_seg_map'], [[255, 0, 1], [2, 255, 0]])


def test_with_seg_only_and_positional_with_mask():
    # mmdetection's first positional argument is with_mask; the rest go to mmcv by name.
    transform = LoadAnnotations(True, with_bbox=False, with_label=False, with_seg=True)
    assert transform.with_mask and not transform.with_bbox and transform.with_seg
    # No seg_map_path (e.g. an unlabeled test image): nothing is loaded.
    results = LoadAnnotations(with_bbox=False, with_label=False, with_seg=True)(dict())
    assert 'gt_seg_map' not in results


def test_repr():
    # mmdetection's format: box_type and the semantic-map options are not shown.
    assert repr(LoadAnnotations(with_mask=True)) == (
        "LoadAnnotations(with_bbox=True, with_label=True, with_mask=True, with_seg=False, "
        "poly2mask=True, imdecode_backend='cv2', backend_args=None)")
    assert repr(LoadAnnotations(with_bbox=False, poly2mask=False,
                                backend_args=dict(backend='local'))) == (
        "LoadAnnotations(with_bbox=False, with_label=True, with_mask=False, with_seg=False, "
        "poly2mask=False, imdecode_backend='cv2', backend_args={'backend': 'local'})")
