"""DetDataPreprocessor: normalization, channel order, padding metadata, mask/seg padding."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData, PixelData
from torch import nn

from mmdet_lite.models.data_preprocessors import DetDataPreprocessor
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.mask import BitmapMasks


def constant_image(h, w, bgr=(10, 20, 30)):
    """uint8 [3, h, w] whose channels are the constants ``bgr``."""
    return torch.tensor(bgr, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).clone()


def sample_with_masks(h, w):
    sample = DetDataSample(metainfo=dict(img_shape=(h, w)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[0., 0., 2., 2.]]), labels=torch.tensor([1]),
        masks=BitmapMasks(np.ones((1, h, w), dtype=np.uint8), h, w))
    return sample


def test_normalizes_with_mean_and_std():
    preprocessor = DetDataPreprocessor(mean=[10, 20, 30], std=[2, 4, 5])
    out = preprocessor(dict(inputs=[constant_image(2, 3, bgr=(14, 28, 40))]))
    assert out['inputs'].dtype == torch.float32 and out['inputs'].shape == (1, 3, 2, 3)
    # (14 - 10) / 2, (28 - 20) / 4, (40 - 30) / 5
    torch.testing.assert_close(out['inputs'][0, :, 0, 0], torch.tensor([2., 2., 2.]))
    assert out['data_samples'] is None


def test_bgr_to_rgb_reverses_channels_before_normalizing():
    preprocessor = DetDataPreprocessor(mean=[30, 20, 10], std=[1, 1, 1], bgr_to_rgb=True)
    out = preprocessor(dict(inputs=[constant_image(2, 2, bgr=(11, 22, 33))]))
    # RGB = (33, 22, 11) minus the RGB mean (30, 20, 10).
    torch.testing.assert_close(out['inputs'][0, :, 1, 1], torch.tensor([3., 2., 1.]))


def test_without_mean_only_converts_to_float():
    out = DetDataPreprocessor()(dict(inputs=[constant_image(2, 2)]))
    torch.testing.assert_close(out['inputs'][0, :, 0, 0], torch.tensor([10., 20., 30.]))


def test_pads_batch_to_divisor_and_records_shapes():
    preprocessor = DetDataPreprocessor(pad_size_divisor=4, pad_value=-1)
    samples = [DetDataSample(metainfo=dict(img_shape=(5, 7))),
               DetDataSample(metainfo=dict(img_shape=(6, 3)))]
    out = preprocessor(dict(inputs=[constant_image(5, 7), constant_image(6, 3)],
                            data_samples=samples))
    inputs = out['inputs']
    # Largest h = 6, largest w = 7, each rounded up to a multiple of 4.
    assert inputs.shape == (2, 3, 8, 8)
    assert (inputs[0, :, 5:, :] == -1).all() and (inputs[0, :, :, 7:] == -1).all()
    assert (inputs[1, :, :, 3:] == -1).all() and (inputs[1, :, :6, :3] >= 10).all()
    assert [s.batch_input_shape for s in out['data_samples']] == [(8, 8), (8, 8)]
    # pad_shape is each image's own size rounded up to the divisor.
    assert [s.pad_shape for s in out['data_samples']] == [(8, 8), (8, 4)]
    assert out['data_samples'][0].img_shape == (5, 7)


def test_stacked_tensor_input():
    preprocessor = DetDataPreprocessor(pad_size_divisor=4)
    batch = torch.stack([constant_image(5, 6), constant_image(5, 6)])
    out = preprocessor(dict(inputs=batch, data_samples=[DetDataSample(), DetDataSample()]))
    assert out['inputs'].shape == (2, 3, 8, 8)
    assert [s.pad_shape for s in out['data_samples']] == [(8, 8), (8, 8)]


def test_pads_masks_and_semantic_maps_only_in_training():
    preprocessor = DetDataPreprocessor(pad_size_divisor=8, pad_mask=True, mask_pad_value=0,
                                       pad_seg=True, seg_pad_value=255)

    def batch():
        samples = [sample_with_masks(5, 7), sample_with_masks(6, 3)]
        for sample in samples:
            h, w = sample.img_shape
            sample.gt_sem_seg = PixelData(sem_seg=torch.zeros(1, h, w, dtype=torch.uint8))
        return dict(inputs=[constant_image(5, 7), constant_image(6, 3)], data_samples=samples)

    out = preprocessor(batch(), training=True)
    masks = out['data_samples'][1].gt_instances.masks
    assert masks.masks.shape == (1, 8, 8) and masks.areas.tolist() == [18]
    sem_seg = out['data_samples'][1].gt_sem_seg.sem_seg
    assert sem_seg.shape == (1, 8, 8) and (sem_seg[:, :, 3:] == 255).all()
    assert (sem_seg[:, :6, :3] == 0).all()

    out = preprocessor(batch(), training=False)
    assert out['data_samples'][1].gt_instances.masks.masks.shape == (1, 6, 3)


class _DoubleInputsForTest(nn.Module):
    """A batch augment that doubles the inputs and tags the samples."""

    def forward(self, inputs, data_samples):
        for sample in data_samples:
            sample.set_metainfo(dict(augmented=True))
        return inputs * 2, data_samples


@pytest.fixture
def registered_batch_augment():
    MODELS.register_module(module=_DoubleInputsForTest)
    yield
    MODELS.module_dict.pop('_DoubleInputsForTest')


def test_batch_augments_run_in_training_only(registered_batch_augment):
    preprocessor = DetDataPreprocessor(batch_augments=[dict(type='_DoubleInputsForTest')])
    assert isinstance(preprocessor.batch_augments, nn.ModuleList)
    data = dict(inputs=[constant_image(2, 2)], data_samples=[DetDataSample()])
    out = preprocessor(data, training=True)
    assert out['inputs'][0, 0, 0, 0].item() == 20.
    assert out['data_samples'][0].augmented is True
    out = preprocessor(dict(inputs=[constant_image(2, 2)], data_samples=[DetDataSample()]))
    assert out['inputs'][0, 0, 0, 0].item() == 10.


def test_built_from_registry_with_mmdet_config():
    preprocessor = MODELS.build(dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=32, boxtype2tensor=True))
    assert isinstance(preprocessor, DetDataPreprocessor)
    assert preprocessor.pad_size_divisor == 32 and preprocessor.boxtype2tensor is True


def test_bad_arguments():
    with pytest.raises(ValueError, match='bgr_to_rgb'):
        DetDataPreprocessor(bgr_to_rgb=True, rgb_to_bgr=True)
    with pytest.raises(ValueError, match='mean'):
        DetDataPreprocessor(mean=[1, 2, 3])
    with pytest.raises(ValueError, match='std'):
        DetDataPreprocessor(mean=[1, 2, 3], std=[1, 2])
    with pytest.raises(ValueError, match='pad_size_divisor'):
        DetDataPreprocessor(pad_size_divisor=0)
    with pytest.raises(TypeError, match='inputs'):
        DetDataPreprocessor()(dict(inputs=np.zeros((3, 2, 2))))
    with pytest.raises(TypeError, match='inputs'):
        DetDataPreprocessor()([constant_image(2, 2)])
