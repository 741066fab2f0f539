"""Albu: albumentations pipelines on boxes and bitmap masks (needs `albumentations`)."""
import copy
import os
import sys

import numpy as np
import pytest
from transform_helpers import H, W, assert_masks_match_boxes, make_image, make_results

from mmdet_lite.datasets.transforms import Albu
from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import HorizontalBoxes

BOXES = [[3, 2, 9, 8], [15, 5, 28, 18]]
LABEL_FIELDS = ['gt_bboxes_labels', 'gt_ignore_flags']


def bbox_params(**extra):
    return dict(type='BboxParams', format='pascal_voc', label_fields=list(LABEL_FIELDS),
                min_visibility=0.0, **extra)


def test_missing_package_raises_import_error_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, 'albumentations', None)  # makes the import fail
    with pytest.raises(ImportError, match='pip install albumentations'):
        Albu(transforms=[dict(type='HorizontalFlip', p=1.0)])


# Everything below runs albumentations itself.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')  # no PyPI version check on import


@pytest.fixture
def albumentations():
    return pytest.importorskip('albumentations')


@pytest.mark.parametrize('box_kind', ['numpy', 'hbox'])
def test_horizontal_flip_moves_image_boxes_and_masks(albumentations, box_kind):
    results = make_results(BOXES, labels=[4, 7], ignore=[True, False])
    if box_kind == 'hbox':
        results['gt_bboxes'] = HorizontalBoxes(results['gt_bboxes'])
    transform = TRANSFORMS.build(dict(type='Albu', transforms=[dict(type='HorizontalFlip', p=1.0)],
                                      bbox_params=bbox_params()))
    out = transform(results)
    np.testing.assert_array_equal(out['img'], make_image()[:, ::-1])
    assert out['img_shape'] == (H, W)
    boxes = out['gt_bboxes']
    assert isinstance(boxes, HorizontalBoxes if box_kind == 'hbox' else np.ndarray)
    boxes = boxes.numpy() if box_kind == 'hbox' else boxes
    # x -> W - x with the corners swapped
    np.testing.assert_allclose(boxes, [[21, 2, 27, 8], [2, 5, 15, 18]], atol=1e-4)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [4, 7])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [True, False])
    assert out['gt_bboxes_labels'].dtype == np.int64
    assert out['img_path'] == 'demo.jpg'  # other keys pass through
    out['gt_bboxes'] = boxes
    assert_masks_match_boxes(out, atol=1e-4)


def test_filter_lost_elements_drops_labels_and_masks(albumentations):
    params = bbox_params(filter_lost_elements=True)
    params_before = copy.deepcopy(params)
    transform = Albu(transforms=[dict(type='Crop', x_min=0, y_min=0, x_max=12, y_max=H)],
                     bbox_params=params)
    assert params == params_before  # the caller's config is left alone
    out = transform(make_results(BOXES, labels=[4, 7], ignore=[True, False]))
    assert out['img_shape'] == (H, 12) and out['img'].shape == (H, 12, 3)
    np.testing.assert_allclose(out['gt_bboxes'], [BOXES[0]], atol=1e-4)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [4])
    assert out['gt_bboxes_labels'].dtype == np.int64
    np.testing.assert_array_equal(out['gt_ignore_flags'], [True])
    assert out['gt_ignore_flags'].dtype == bool
    assert_masks_match_boxes(out, atol=1e-4)


def test_skip_img_without_anno(albumentations):
    crop = [dict(type='Crop', x_min=10, y_min=0, x_max=14, y_max=4)]  # misses both boxes
    skip = Albu(transforms=crop, bbox_params=bbox_params(filter_lost_elements=True),
                skip_img_without_anno=True)
    assert skip(make_results(BOXES)) is None
    keep = Albu(transforms=crop, bbox_params=bbox_params(filter_lost_elements=True))
    out = keep(make_results(BOXES))
    assert out['gt_bboxes'].shape == (0, 4) and len(out['gt_masks']) == 0
    assert (out['gt_masks'].height, out['gt_masks'].width) == (4, 4)


def test_nested_and_class_types_are_built(albumentations):
    transform = Albu(transforms=[
        dict(type='OneOf', transforms=[dict(type=albumentations.VerticalFlip, p=1.0)], p=1.0)
    ])
    oneof = transform.aug.transforms[0]
    assert isinstance(oneof, albumentations.OneOf)
    assert isinstance(oneof.transforms[0], albumentations.VerticalFlip)
    out = transform(dict(img=make_image()))
    np.testing.assert_array_equal(out['img'], make_image()[::-1])


def test_custom_keymap(albumentations):
    transform = Albu(transforms=[dict(type='HorizontalFlip', p=1.0)], keymap={'img': 'image'})
    out = transform(dict(img=make_image()))
    np.testing.assert_array_equal(out['img'], make_image()[:, ::-1])


def test_polygon_masks_unsupported(albumentations):
    transform = Albu(transforms=[dict(type='HorizontalFlip', p=1.0)], bbox_params=bbox_params())
    with pytest.raises(NotImplementedError, match='BitmapMasks'):
        transform(make_results(BOXES, masks='polygon'))


def test_bad_config_and_repr(albumentations):
    with pytest.raises(AssertionError):
        Albu(transforms=[dict(p=1.0)])
    with pytest.raises(TypeError):
        Albu(transforms=[dict(type=3)])
    assert repr(Albu(transforms=[dict(type='HorizontalFlip', p=0.5)])) == (
        "Albu(transforms=[{'type': 'HorizontalFlip', 'p': 0.5}])")
