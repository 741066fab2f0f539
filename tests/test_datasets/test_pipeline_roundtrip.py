"""Shapes files -> ShapesDataset (COCO json) -> training pipeline -> DetDataPreprocessor.

Checks that every box, label and mask coming out of the pipeline is the dataset's
annotation moved by the recorded ``scale_factor`` and ``flip``, and that the batch is padded
with consistent metadata.
"""
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate

from mmdet_lite.datasets import ShapesDataset
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.bbox import HorizontalBoxes
from mmdet_lite.structures.mask import BitmapMasks

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(96, 80), keep_ratio=True),   # 64 x 64 -> 80 x 80
    dict(type='RandomFlip', prob=0.5),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor', 'flip', 'flip_direction',
                                          'homography_matrix')),
]


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    return ShapesDataset(
        data_root=str(root), ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), num_images=4, image_size=64, max_objects=3,
        size_range=(12, 30), empty_ratio=0.0, pipeline=TRAIN_PIPELINE)


def project_boxes(boxes: np.ndarray, matrix: np.ndarray, img_shape) -> np.ndarray:
    """Hull of the box corners mapped by the 3x3 ``matrix``, clipped to ``img_shape``."""
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([np.stack([x1, x2, x2, x1], 1), np.stack([y1, y1, y2, y2], 1),
                        np.ones((len(boxes), 4))], axis=-1) @ np.asarray(matrix, np.float64).T
    xs, ys = corners[..., 0] / corners[..., 2], corners[..., 1] / corners[..., 2]
    out = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)
    out[:, 0::2] = out[:, 0::2].clip(0, img_shape[1])
    out[:, 1::2] = out[:, 1::2].clip(0, img_shape[0])
    return out


def expected_boxes(data_info: dict, sample: DetDataSample) -> np.ndarray:
    """The dataset's boxes resized by ``scale_factor`` and flipped like the image."""
    boxes = np.array([inst['bbox'] for inst in data_info['instances']],
                     dtype=np.float32).reshape(-1, 4)
    w_scale, h_scale = sample.scale_factor
    boxes = boxes * [w_scale, h_scale, w_scale, h_scale]
    if sample.flip:
        assert sample.flip_direction == 'horizontal'
        width = sample.img_shape[1]
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    return boxes.astype(np.float32)


def test_pipeline_keeps_annotations_aligned(dataset):
    flips = set()
    for idx in list(range(len(dataset))) * 4:  # several epochs: both flip outcomes occur
        packed = dataset[idx]
        data_info = dataset.get_data_info(idx)
        inputs, sample = packed['inputs'], packed['data_samples']
        assert inputs.dtype == torch.uint8 and inputs.shape == (3, 80, 80)
        assert sample.ori_shape == (64, 64) and sample.img_shape == (80, 80)
        assert sample.scale_factor == (1.25, 1.25)
        assert sample.img_id == data_info['img_id']
        flips.add(sample.flip)

        gt = sample.gt_instances
        assert len(gt) == len(data_info['instances']) > 0
        # LoadAnnotations' default box_type='hbox' keeps box objects up to the data sample.
        assert isinstance(gt.bboxes, HorizontalBoxes)
        torch.testing.assert_close(gt.bboxes.tensor,
                                   torch.from_numpy(expected_boxes(data_info, sample)))
        # The recorded homography takes the dataset's boxes to the packed ones.
        original = np.array([inst['bbox'] for inst in data_info['instances']], np.float64)
        torch.testing.assert_close(
            gt.bboxes.tensor,
            torch.from_numpy(project_boxes(original, sample.homography_matrix,
                                           sample.img_shape)).float(), atol=1e-4, rtol=0)
        assert gt.labels.tolist() == [inst['bbox_label'] for inst in data_info['instances']]
        assert isinstance(gt.masks, BitmapMasks) and gt.masks.masks.shape[1:] == (80, 80)
        # Polygons rasterize to whole pixels and the resize rounds: allow 2 px.
        mask_boxes = gt.masks.get_bboxes(HorizontalBoxes)
        mask_boxes = getattr(mask_boxes, 'tensor', mask_boxes)  # a box object, as mmdet's
        torch.testing.assert_close(mask_boxes, gt.bboxes.tensor, atol=2.0, rtol=0)
    assert flips == {True, False}, 'expected both flipped and unflipped samples'


def test_preprocessor_batches_dataset_output(dataset):
    preprocessor = MODELS.build(dict(
        type='DetDataPreprocessor', mean=MEAN, std=STD, bgr_to_rgb=True, pad_size_divisor=32,
        pad_mask=True))
    batch = pseudo_collate([dataset[i] for i in range(2)])
    raw_inputs = [img.clone() for img in batch['inputs']]
    out = preprocessor(batch, training=True)

    inputs = out['inputs']
    assert inputs.shape == (2, 3, 96, 96) and inputs.dtype == torch.float32
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    for img, raw, sample in zip(inputs, raw_inputs, out['data_samples']):
        assert sample.batch_input_shape == (96, 96)
        assert sample.pad_shape == (96, 96)
        assert sample.img_shape == (80, 80)
        # Un-normalizing gives back the packed BGR image with channels reversed to RGB.
        torch.testing.assert_close(img[:, :80, :80] * std + mean, raw.flip(0).float(),
                                   atol=1e-3, rtol=0)
        assert (img[:, 80:, :] == 0).all() and (img[:, :, 80:] == 0).all()
        masks = sample.gt_instances.masks
        assert masks.masks.shape[1:] == (96, 96) and masks.masks[:, 80:].sum() == 0
