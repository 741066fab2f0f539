"""DetDataSample pixel fields (semantic / panoptic segmentation) and mmdetection's type checks.

mmdetection sets every typed field through mmengine's ``set_field(..., dtype=...)``, which
asserts the type: a wrong type raises AssertionError there, and must here too.
"""
import pytest
import torch
from mmengine.structures import BaseDataElement, InstanceData, PixelData

from mmdet_lite.structures import DetDataSample

PIXEL_FIELDS = ('gt_sem_seg', 'pred_sem_seg', 'gt_panoptic_seg', 'pred_panoptic_seg')
INSTANCE_FIELDS = ('gt_instances', 'pred_instances', 'proposals', 'ignored_instances')


@pytest.mark.parametrize('name', PIXEL_FIELDS)
def test_pixel_field_set_get_delete(name):
    sample = DetDataSample(metainfo=dict(img_shape=(2, 3)))
    seg = PixelData(sem_seg=torch.arange(6).view(1, 2, 3))
    setattr(sample, name, seg)
    assert name in sample and name in sample.keys()
    assert getattr(sample, name) is seg
    assert getattr(sample, name).sem_seg.shape == (1, 2, 3)
    # kept through clone / to like any data field
    assert torch.equal(getattr(sample.clone(), name).sem_seg, seg.sem_seg)
    delattr(sample, name)
    assert name not in sample
    with pytest.raises(AttributeError):
        getattr(sample, name)


@pytest.mark.parametrize('name', PIXEL_FIELDS)
@pytest.mark.parametrize('value', [InstanceData(), BaseDataElement(), torch.zeros(1, 2, 3),
                                   dict(sem_seg=torch.zeros(1, 2, 3))])
def test_pixel_field_wrong_type_raises_assertion(name, value):
    sample = DetDataSample()
    with pytest.raises(AssertionError, match='PixelData'):
        setattr(sample, name, value)
    assert name not in sample


@pytest.mark.parametrize('name', INSTANCE_FIELDS)
@pytest.mark.parametrize('value', [PixelData(), BaseDataElement(), torch.zeros(3)])
def test_instance_field_wrong_type_raises_assertion(name, value):
    sample = DetDataSample()
    with pytest.raises(AssertionError, match='InstanceData'):
        setattr(sample, name, value)


def test_same_exception_kind_as_mmengine_set_field():
    """The reference: mmengine's own check raises AssertionError for the same mistake."""
    with pytest.raises(AssertionError):
        BaseDataElement().set_field(InstanceData(), '_gt_sem_seg', dtype=PixelData)
    with pytest.raises(AssertionError):
        DetDataSample().gt_sem_seg = InstanceData()


def test_constructor_keywords_and_other_fields():
    seg = PixelData(sem_seg=torch.zeros(1, 4, 4))
    sample = DetDataSample(gt_sem_seg=seg, pred_instances=InstanceData(scores=torch.ones(2)))
    assert set(sample.keys()) == {'gt_sem_seg', 'pred_instances'}
    with pytest.raises(AssertionError):
        DetDataSample(pred_panoptic_seg=InstanceData())
    # an untyped field is a plain data field, as in mmdetection
    sample.gt_segm_seg = PixelData(segm_seg=torch.zeros(2, 2, 2))
    assert 'gt_segm_seg' in sample and 'segm_seg' in sample.gt_segm_seg


def test_failed_assignment_leaves_the_sample_as_it_was():
    sample = DetDataSample()
    with pytest.raises(AssertionError):
        sample.gt_sem_seg = InstanceData()
    assert sample.keys() == [] and 'DetDataSample' in repr(sample)
    seg = PixelData(sem_seg=torch.zeros(1, 2, 2))
    sample.gt_sem_seg = seg
    with pytest.raises(AssertionError):
        sample.gt_sem_seg = torch.zeros(1, 2, 2)
    assert sample.keys() == ['gt_sem_seg'] and sample.gt_sem_seg is seg
