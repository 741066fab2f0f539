"""PackDetInputs: tensor image, gt/ignored instance split, metainfo."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData, PixelData
from transform_helpers import make_image, make_results, with_box_kind

from mmdet_lite.datasets.transforms import LoadAnnotations, PackDetInputs
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.bbox import HorizontalBoxes
from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks

BOXES = [[3, 2, 9, 8], [10, 5, 30, 20], [0, 0, 4, 4]]


@pytest.mark.parametrize('mask_type, mask_cls', [('bitmap', BitmapMasks),
                                                 ('polygon', PolygonMasks)])
def test_pack_splits_ignored_instances(mask_type, mask_cls):
    results = make_results(BOXES, labels=[3, 4, 5], ignore=[False, True, False],
                           masks=mask_type)
    packed = PackDetInputs()(results)
    inputs, sample = packed['inputs'], packed['data_samples']

    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 20, 30)
    # Channel order is kept (BGR as loaded): channel c of the tensor is img[..., c].
    np.testing.assert_array_equal(inputs.permute(1, 2, 0).numpy(), make_image())

    assert isinstance(sample, DetDataSample)
    gt, ignored = sample.gt_instances, sample.ignored_instances
    assert gt.bboxes.dtype == torch.float32 and gt.labels.dtype == torch.int64
    torch.testing.assert_close(gt.bboxes, torch.tensor([BOXES[0], BOXES[2]], dtype=torch.float32))
    assert gt.labels.tolist() == [3, 5]
    assert isinstance(gt.masks, mask_cls) and len(gt.masks) == 2
    torch.testing.assert_close(ignored.bboxes, torch.tensor([BOXES[1]], dtype=torch.float32))
    assert ignored.labels.tolist() == [4]
    assert len(ignored.masks) == 1


def test_box_objects_stay_box_objects():
    results = with_box_kind(make_results(BOXES, ignore=[False, True, False], masks=None), 'hbox')
    sample = PackDetInputs()(results)['data_samples']
    gt, ignored = sample.gt_instances, sample.ignored_instances
    assert isinstance(gt.bboxes, HorizontalBoxes) and isinstance(ignored.bboxes, HorizontalBoxes)
    torch.testing.assert_close(gt.bboxes.tensor,
                               torch.tensor([BOXES[0], BOXES[2]], dtype=torch.float32))
    torch.testing.assert_close(ignored.bboxes.tensor,
                               torch.tensor([BOXES[1]], dtype=torch.float32))
    # A single kept instance still packs as one box [1, 4].
    single = with_box_kind(make_results(BOXES[:2], ignore=[False, True], masks=None), 'hbox')
    assert PackDetInputs()(single)['data_samples'].gt_instances.bboxes.shape == (1, 4)


def test_packs_load_annotations_output():
    data = dict(img=make_image(), img_shape=(20, 30), ori_shape=(20, 30), img_id=3,
                instances=[dict(bbox=b, bbox_label=i, ignore_flag=0)
                           for i, b in enumerate(BOXES)])
    packed = PackDetInputs()(LoadAnnotations()(data))
    gt = packed['data_samples'].gt_instances
    assert isinstance(gt.bboxes, HorizontalBoxes) and len(gt) == 3
    torch.testing.assert_close(gt.bboxes.tensor, torch.tensor(BOXES, dtype=torch.float32))
    numpy_gt = PackDetInputs()(LoadAnnotations(box_type=None)(dict(data)))[
        'data_samples'].gt_instances
    assert isinstance(numpy_gt.bboxes, torch.Tensor)
    torch.testing.assert_close(numpy_gt.bboxes, gt.bboxes.tensor)


def test_mapping_table_and_default_meta_keys():
    assert PackDetInputs.mapping_table == {
        'gt_bboxes': 'bboxes', 'gt_bboxes_labels': 'labels', 'gt_masks': 'masks'}
    assert PackDetInputs().meta_keys == ('img_id', 'img_path', 'ori_shape', 'img_shape',
                                         'scale_factor', 'flip', 'flip_direction')


def test_metainfo_takes_present_meta_keys_only():
    results = make_results(BOXES, masks=None)
    results.update(scale_factor=(2.0, 0.5), flip=False, flip_direction=None)
    sample = PackDetInputs()(results)['data_samples']
    assert sample.metainfo == dict(img_id=7, img_path='demo.jpg', ori_shape=(20, 30),
                                   img_shape=(20, 30), scale_factor=(2.0, 0.5), flip=False,
                                   flip_direction=None)
    custom = PackDetInputs(meta_keys=('img_id', 'pad_shape'))(make_results(BOXES))
    assert custom['data_samples'].metainfo == dict(img_id=7)


def test_test_time_results_without_annotations():
    packed = PackDetInputs()(dict(img=make_image(), img_id=1, img_shape=(20, 30)))
    sample = packed['data_samples']
    assert isinstance(sample.gt_instances, InstanceData) and len(sample.gt_instances.keys()) == 0
    assert sample.metainfo == dict(img_id=1, img_shape=(20, 30))


def test_without_ignore_flags_every_instance_is_gt():
    results = make_results(BOXES, masks=None)
    del results['gt_ignore_flags']
    sample = PackDetInputs()(results)['data_samples']
    assert len(sample.gt_instances) == 3 and len(sample.ignored_instances.keys()) == 0


def test_non_contiguous_and_gray_images():
    cropped = make_image()[2:12, 5:25]  # a view: not C-contiguous
    assert PackDetInputs()(dict(img=cropped))['inputs'].shape == (3, 10, 20)
    gray = make_image()[..., 0]
    assert PackDetInputs()(dict(img=gray))['inputs'].shape == (1, 20, 30)


def test_semantic_map_and_proposals():
    results = make_results(BOXES, masks=None)
    results['gt_seg_map'] = np.ones((20, 30), dtype=np.uint8)
    results['ignore_index'] = 255
    results['proposals'] = np.array([[0, 0, 5, 5]], dtype=np.float32)
    results['proposals_scores'] = np.array([0.9], dtype=np.float32)
    sample = PackDetInputs()(results)['data_samples']
    assert isinstance(sample.gt_sem_seg, PixelData)
    assert sample.gt_sem_seg.sem_seg.shape == (1, 20, 30)
    assert sample.gt_sem_seg.metainfo == dict(ignore_index=255)
    assert sample.proposals.bboxes.shape == (1, 4) and sample.proposals.scores.tolist() == [
        pytest.approx(0.9)]


def test_repr():
    assert repr(PackDetInputs(meta_keys=('img_id', ))) == "PackDetInputs(meta_keys=('img_id',))"
    assert repr(PackDetInputs(meta_keys=['img_id', 'flip'])) == (
        "PackDetInputs(meta_keys=['img_id', 'flip'])")
