"""DetDataSample: typed instance fields and metainfo."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.structures import DetDataSample, OptSampleList, SampleList

FIELDS = ('gt_instances', 'pred_instances', 'proposals', 'ignored_instances')


@pytest.mark.parametrize('name', FIELDS)
def test_instance_field_set_get_delete(name):
    sample = DetDataSample()
    inst = InstanceData(bboxes=torch.tensor([[0., 0., 4., 4.]]), labels=torch.tensor([2]))
    setattr(sample, name, inst)
    assert name in sample
    assert getattr(sample, name).labels.tolist() == [2]
    delattr(sample, name)
    assert name not in sample


@pytest.mark.parametrize('name', FIELDS)
def test_instance_field_rejects_wrong_type(name):
    sample = DetDataSample()
    with pytest.raises(TypeError, match=name):
        setattr(sample, name, dict(bboxes=torch.zeros(0, 4)))
    with pytest.raises(TypeError, match='InstanceData'):
        setattr(sample, name, torch.zeros(3))


def test_metainfo_and_data_are_separate():
    sample = DetDataSample(metainfo=dict(img_shape=(20, 30), scale_factor=(1.5, 1.5)))
    sample.gt_instances = InstanceData(labels=torch.tensor([0, 1]))
    assert sample.img_shape == (20, 30)
    assert 'img_shape' in sample.metainfo_keys()
    assert sample.keys() == ['gt_instances']
    # to() / clone keep the typed field
    assert isinstance(sample.clone().gt_instances, InstanceData)


def test_sample_list_aliases():
    assert SampleList.__origin__ is list
    assert SampleList.__args__ == (DetDataSample, )
    assert type(None) in OptSampleList.__args__
