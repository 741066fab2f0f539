"""LoadProposals, LoadEmptyAnnotations, LoadMultiChannelImageFromFiles, InferencerLoader."""
import cv2
import numpy as np
import pytest
from mmengine.structures import InstanceData
from transform_helpers import make_image

from mmdet_lite.datasets.transforms import (InferencerLoader, LoadEmptyAnnotations,
                                            LoadMultiChannelImageFromFiles, LoadProposals)
from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.mask import BitmapMasks

BOXES = np.array([[0, 0, 5, 5], [1, 2, 8, 9], [3, 3, 4, 4]], dtype=np.float64)


def test_load_proposals_from_dict_and_instance_data():
    scores = np.array([0.9, 0.5, 0.1])
    results = LoadProposals(num_max_proposals=2)(
        dict(proposals=dict(bboxes=BOXES, scores=scores)))
    assert results['proposals'].dtype == np.float32
    np.testing.assert_array_equal(results['proposals'], BOXES[:2])
    np.testing.assert_allclose(results['proposals_scores'], [0.9, 0.5])
    assert results['proposals_scores'].dtype == np.float32
    # Without scores they are zeros; all proposals are kept.
    results = LoadProposals()(dict(proposals=InstanceData(bboxes=BOXES)))
    np.testing.assert_array_equal(results['proposals'], BOXES)
    np.testing.assert_array_equal(results['proposals_scores'], [0, 0, 0])
    empty = LoadProposals()(dict(proposals=dict(bboxes=np.zeros((0, 4)))))
    assert empty['proposals'].shape == (0, 4) and empty['proposals_scores'].shape == (0, )


def test_load_proposals_errors_and_repr():
    with pytest.raises(AssertionError, match=r'\(n, 4\)'):
        LoadProposals()(dict(proposals=dict(bboxes=np.zeros((2, 5)))))
    with pytest.raises(AssertionError, match='scores'):
        LoadProposals()(dict(proposals=dict(bboxes=BOXES, scores=np.zeros(2))))
    with pytest.raises(AssertionError, match='dict'):
        LoadProposals()(dict(proposals=BOXES))
    assert repr(LoadProposals(num_max_proposals=5)) == 'LoadProposals(num_max_proposals=5)'


def test_load_empty_annotations():
    results = TRANSFORMS.build(dict(type='LoadEmptyAnnotations', with_mask=True,
                                    with_seg=True, seg_ignore_label=7))(dict(img_shape=(4, 6)))
    assert results['gt_bboxes'].shape == (0, 4) and results['gt_bboxes'].dtype == np.float32
    assert results['gt_ignore_flags'].shape == (0, ) and results['gt_ignore_flags'].dtype == bool
    assert results['gt_bboxes_labels'].shape == (0, )
    assert results['gt_bboxes_labels'].dtype == np.int64
    assert isinstance(results['gt_masks'], BitmapMasks) and len(results['gt_masks']) == 0
    assert (results['gt_masks'].height, results['gt_masks'].width) == (4, 6)
    assert results['gt_seg_map'].dtype == np.uint8
    np.testing.assert_array_equal(results['gt_seg_map'], np.full((4, 6), 7))
    only_labels = LoadEmptyAnnotations(with_bbox=False)(dict())
    assert list(only_labels) == ['gt_bboxes_labels']
    assert repr(LoadEmptyAnnotations()) == (
        'LoadEmptyAnnotations(with_bbox=True, with_label=True, with_mask=False, '
        'with_seg=False, seg_ignore_label=255)')


def test_load_multichannel_image_stacks_files(tmp_path):
    img = make_image()
    paths = []
    for c in range(3):
        path = str(tmp_path / f'band{c}.png')
        cv2.imwrite(path, img[..., c])
        paths.append(path)
    results = LoadMultiChannelImageFromFiles(to_float32=True)(dict(img_path=paths))
    assert results['img'].shape == (20, 30, 3) and results['img'].dtype == np.float32
    np.testing.assert_array_equal(results['img'], img)
    assert results['img_shape'] == (20, 30) and results['ori_shape'] == (20, 30)
    with pytest.raises(AssertionError, match='list'):
        LoadMultiChannelImageFromFiles()(dict(img_path=paths[0]))
    with pytest.raises(RuntimeError, match='backend_args'):
        LoadMultiChannelImageFromFiles(file_client_args=dict(backend='disk'))
    assert repr(LoadMultiChannelImageFromFiles()) == (
        "LoadMultiChannelImageFromFiles(to_float32=False, color_type='unchanged', "
        "imdecode_backend='cv2', backend_args=None)")


def test_inferencer_loader_accepts_path_array_and_dict(tmp_path):
    img = make_image()
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, img)
    loader = InferencerLoader()
    from_path = loader(path)
    np.testing.assert_array_equal(from_path['img'], img)
    assert from_path['img_path'] == path and from_path['ori_shape'] == (20, 30)
    from_array = loader(img)
    np.testing.assert_array_equal(from_array['img'], img)
    assert from_array['img_path'] is None
    assert loader(dict(img_path=path))['img_shape'] == (20, 30)
    with pytest.raises(NotImplementedError):
        loader(3)
