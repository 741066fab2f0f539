"""Batch augments: BatchFixedSizePad, BatchSyncRandomResize, BatchResize, hand-computed.

The distributed case of BatchSyncRandomResize runs two gloo ranks on the CPU in a
subprocess (slow).
"""
import os.path as osp
import random
import subprocess
import sys
import textwrap

import mmcv
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from mmengine.logging import MessageHub
from mmengine.structures import InstanceData, PixelData
from torchvision.transforms import InterpolationMode

from mmdet_lite.models.data_preprocessors import (BatchFixedSizePad, BatchResize,
                                                  BatchSyncRandomResize, DetDataPreprocessor)
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.bbox import HorizontalBoxes
from mmdet_lite.structures.mask import BitmapMasks

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def make_sample(img_shape, pad_shape, boxes, box_object=False, ignored=None):
    """A DetDataSample with ``boxes`` ([N, 4] list) as a tensor or as HorizontalBoxes."""
    sample = DetDataSample(metainfo=dict(img_shape=img_shape, pad_shape=pad_shape,
                                         batch_input_shape=pad_shape))
    wrap = HorizontalBoxes if box_object else (lambda t: t)
    sample.gt_instances = InstanceData(bboxes=wrap(torch.tensor(boxes, dtype=torch.float32)),
                                       labels=torch.zeros(len(boxes), dtype=torch.long))
    if ignored is not None:
        sample.ignored_instances = InstanceData(
            bboxes=wrap(torch.tensor(ignored, dtype=torch.float32)))
    return sample


def box_tensor(boxes):
    return boxes.tensor if isinstance(boxes, HorizontalBoxes) else boxes


@pytest.fixture
def message_hub():
    """The current MessageHub, with the 'iter' info restored afterwards."""
    hub = MessageHub.get_current_instance()
    before = hub.get_info('iter')
    yield hub
    if before is None:
        hub.runtime_info.pop('iter', None)
    else:
        hub.update_info('iter', before)


# ---------------------------------------------------------------- BatchFixedSizePad

def test_fixed_size_pad_pads_images_masks_and_sem_seg():
    pad = BatchFixedSizePad(size=(4, 5), img_pad_value=-1, pad_mask=True, mask_pad_value=7,
                            pad_seg=True, seg_pad_value=255)
    inputs = torch.arange(12, dtype=torch.float32).view(2, 1, 2, 3)
    samples = []
    for _ in range(2):
        sample = make_sample((2, 3), (2, 3), [[0, 0, 1, 1]])
        sample.gt_instances.masks = BitmapMasks(np.ones((1, 2, 3), dtype=np.uint8), 2, 3)
        sample.gt_sem_seg = PixelData(sem_seg=torch.zeros(1, 2, 3, dtype=torch.uint8))
        samples.append(sample)

    out, samples = pad(inputs, samples)
    assert out.shape == (2, 1, 4, 5)
    torch.testing.assert_close(out[:, :, :2, :3], inputs)
    # 20 pixels per image, 6 of them the image
    assert (out == -1).sum().item() == 2 * 14
    for sample in samples:
        assert sample.batch_input_shape == (4, 5) and sample.pad_shape == (4, 5)
        assert sample.img_shape == (2, 3)  # the image itself is not resized
        masks = sample.gt_instances.masks
        assert (masks.height, masks.width) == (4, 5)
        assert (masks.masks == 1).sum() == 6 and (masks.masks == 7).sum() == 14
        sem_seg = sample.gt_sem_seg.sem_seg
        assert sem_seg.shape == (1, 4, 5)
        assert (sem_seg == 255).sum().item() == 14 and (sem_seg[:, :2, :3] == 0).all()


def test_fixed_size_pad_leaves_a_large_enough_batch_alone():
    pad = BatchFixedSizePad(size=(4, 5), pad_mask=True, pad_seg=True)
    inputs = torch.zeros(1, 3, 4, 6)
    sample = make_sample((4, 6), (4, 6), [[0, 0, 1, 1]])
    out, samples = pad(inputs, [sample])
    assert out is inputs
    assert samples[0].batch_input_shape == (4, 6)


def test_fixed_size_pad_records_the_padded_shape_when_one_side_is_larger():
    pad = BatchFixedSizePad(size=(4, 5))
    out, (sample, ) = pad(torch.ones(1, 3, 6, 3), [make_sample((6, 3), (6, 3), [[0, 0, 1, 1]])])
    assert out.shape == (1, 3, 6, 5)
    assert sample.batch_input_shape == (6, 5) and sample.pad_shape == (6, 5)


def test_fixed_size_pad_without_data_samples():
    out, samples = BatchFixedSizePad(size=(3, 3))(torch.ones(2, 3, 2, 2))
    assert out.shape == (2, 3, 3, 3) and samples is None
    assert out.sum().item() == 2 * 3 * 4


# ---------------------------------------------------------------- BatchSyncRandomResize

@pytest.mark.parametrize('box_object', [False, True])
def test_sync_random_resize_keeps_the_first_size_then_resizes_to_the_drawn_one(
        monkeypatch, message_hub, box_object):
    resize = BatchSyncRandomResize(random_size_range=(64, 192), interval=1, size_divisor=32)
    assert resize._random_size_range == (2, 6)
    drawn = []

    def fake_randint(low, high):
        drawn.append((low, high))
        return 3

    monkeypatch.setattr(random, 'randint', fake_randint)
    message_hub.update_info('iter', 0)
    inputs = torch.rand(2, 3, 8, 12)
    samples = [make_sample((7, 11), (8, 12), [[3, 2, 6, 4]], box_object, ignored=[[0, 0, 12, 8]])
               for _ in range(2)]
    out, samples = resize(inputs, samples)
    # first batch: its own size, untouched
    assert out is inputs and samples[0].img_shape == (7, 11)
    # then k = 3 and W / H = 1.5: (32 * 3, 32 * int(1.5 * 3)) = (96, 128)
    assert drawn == [(2, 6)] and resize._input_size == (96, 128)

    inputs = torch.full((2, 3, 8, 12), 0.5)
    inputs[:, :, :, 6:] = 1.5
    samples = [make_sample((7, 11), (8, 12), [[3, 2, 6, 4]], box_object, ignored=[[0, 0, 12, 8]])
               for _ in range(2)]
    message_hub.update_info('iter', 1)
    out, samples = resize(inputs, samples)
    assert out.shape == (2, 3, 96, 128)
    # bilinear, align_corners=False, without antialiasing: torchvision's resize
    expected = TF.resize(inputs, [96, 128], interpolation=InterpolationMode.BILINEAR,
                         antialias=False)
    torch.testing.assert_close(out, expected)
    assert out[0, 0, 0, 0].item() == 0.5 and out[0, 0, -1, -1].item() == 1.5
    scale_x, scale_y = 128 / 12, 96 / 8
    for sample in samples:
        assert sample.img_shape == (int(7 * scale_y), int(11 * scale_x)) == (84, 117)
        assert sample.pad_shape == (96, 128) and sample.batch_input_shape == (96, 128)
        assert isinstance(sample.gt_instances.bboxes, HorizontalBoxes) == box_object
        torch.testing.assert_close(box_tensor(sample.gt_instances.bboxes),
                                   torch.tensor([[32., 24., 64., 48.]]))
        torch.testing.assert_close(box_tensor(sample.ignored_instances.bboxes),
                                   torch.tensor([[0., 0., 128., 96.]]))
        assert 'scale_factor' not in sample  # as in mmdetection


def test_sync_random_resize_draws_every_interval_iterations(monkeypatch, message_hub):
    resize = BatchSyncRandomResize(random_size_range=(32, 64), interval=3, size_divisor=16)
    sizes = iter([3, 4])
    monkeypatch.setattr(random, 'randint', lambda low, high: next(sizes))
    seen = []
    for iteration in range(6):
        message_hub.update_info('iter', iteration)
        out, _ = resize(torch.zeros(1, 3, 16, 16), [])
        seen.append(tuple(out.shape[-2:]))
    # new sizes after iterations 2 and 5: (16 * 3, 16 * 3), then (64, 64) unused yet
    assert seen == [(16, 16)] * 3 + [(48, 48)] * 3
    assert resize._input_size == (64, 64)


def test_sync_random_resize_draws_with_python_random_on_rank_0(message_hub):
    resize = BatchSyncRandomResize(random_size_range=(320, 640), interval=1)
    message_hub.update_info('iter', 0)
    random.seed(7)
    expected_k = random.Random(7).randint(10, 20)
    resize(torch.zeros(1, 3, 100, 200), None)
    assert resize._input_size == (32 * expected_k, 32 * int(2.0 * expected_k))


@pytest.mark.slow
def test_sync_random_resize_broadcasts_rank_0_size(tmp_path):
    """Two gloo ranks seed ``random`` differently; both must use rank 0's draw."""
    script = tmp_path / 'ranks.py'
    script.write_text(textwrap.dedent(f'''
        import os, random, sys
        import torch, torch.distributed as dist, torch.multiprocessing as mp
        sys.path.insert(0, {REPO_ROOT!r})

        def run(rank, port, out_dir):
            os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
            dist.init_process_group('gloo', rank=rank, world_size=2)
            from mmengine.logging import MessageHub
            from mmdet_lite.models.data_preprocessors import BatchSyncRandomResize
            resize = BatchSyncRandomResize(random_size_range=(32, 640), interval=1)
            MessageHub.get_current_instance().update_info('iter', 0)
            random.seed(100 + rank)
            resize(torch.zeros(1, 3, 10, 20), None)
            with open(os.path.join(out_dir, f'rank{{rank}}.txt'), 'w') as f:
                f.write(f'{{resize.rank}} {{resize._input_size[0]}} {{resize._input_size[1]}}')
            dist.destroy_process_group()

        if __name__ == '__main__':
            import socket
            with socket.socket() as s:
                s.bind(('127.0.0.1', 0))
                port = s.getsockname()[1]
            mp.spawn(run, args=(port, sys.argv[1]), nprocs=2)
    '''))
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=120)
    results = [(tmp_path / f'rank{rank}.txt').read_text().split() for rank in range(2)]
    k = random.Random(100).randint(1, 20)  # rank 0's seed
    assert random.Random(101).randint(1, 20) != k  # rank 1 alone would draw another size
    assert results[0] == ['0', str(32 * k), str(32 * int(2.0 * k))]
    assert results[1] == ['1'] + results[0][1:]


# ---------------------------------------------------------------- BatchResize

def test_batch_resize_target_size_short_edge_then_long_edge_cap():
    resize = BatchResize(scale=(100, 60))
    assert (resize.min_size, resize.max_size) == (60, 100)
    # short edge 30 -> 60 (x2); long edge 40 -> 80 fits 100
    assert resize.target_size(30, 40) == (60, 80, 2.0)
    # x2 would make the long edge 160 > 100: the long edge becomes 100 (x1.25)
    assert resize.target_size(80, 40) == (100, 50, 1.25)


@pytest.mark.parametrize('box_object', [False, True])
def test_batch_resize_images_boxes_and_metainfo(box_object):
    resize = BatchResize(scale=(16, 40), pad_size_divisor=5)
    inputs = torch.rand(2, 3, 8, 12)
    samples = [make_sample((8, 10), (8, 12), [[1, 2, 3, 4]], box_object,
                           ignored=[[2, 2, 4, 4]]) for _ in range(2)]
    out, samples = resize(inputs, samples)
    # short edge 8 -> 16 (x2), long edge 24 <= 40; padded up to multiples of 5: (20, 25)
    assert out.shape == (2, 3, 20, 25) and out.dtype == torch.float32
    for image, resized in zip(inputs, out):
        expected = mmcv.imrescale(image.permute(1, 2, 0).numpy(), (24, 16))
        assert expected.shape == (16, 24, 3)
        np.testing.assert_allclose(resized[:, :16, :24].permute(1, 2, 0).numpy(), expected)
        assert (resized[:, 16:, :] == 0).all() and (resized[:, :, 24:] == 0).all()
    for sample in samples:
        assert sample.img_shape == (16, 20)
        assert sample.batch_input_shape == (20, 25) and sample.pad_shape == (20, 25)
        assert sample.scale_factor == (2.0, 2.0)
        assert isinstance(sample.gt_instances.bboxes, HorizontalBoxes) == box_object
        torch.testing.assert_close(box_tensor(sample.gt_instances.bboxes),
                                   torch.tensor([[2., 4., 6., 8.]]))
        torch.testing.assert_close(box_tensor(sample.ignored_instances.bboxes),
                                   torch.tensor([[4., 4., 8., 8.]]))


def test_batch_resize_get_padded_tensor_needs_a_batch():
    with pytest.raises(AssertionError, match='B, C, H, W'):
        BatchResize(scale=(8, 8)).get_padded_tensor(torch.zeros(3, 4, 4))


# ---------------------------------------------------------------- in DetDataPreprocessor

def test_registered_under_mmdetection_names():
    for name, cls in [('BatchFixedSizePad', BatchFixedSizePad),
                      ('BatchSyncRandomResize', BatchSyncRandomResize),
                      ('BatchResize', BatchResize)]:
        assert MODELS.get(name) is cls
        assert MODELS.get(f'mmdet.{name}') is cls


def test_preprocessor_applies_batch_augments_in_training_only():
    preprocessor = DetDataPreprocessor(
        pad_size_divisor=4, batch_augments=[dict(type='BatchFixedSizePad', size=(12, 12),
                                                 img_pad_value=-1)])
    image = torch.full((3, 5, 6), 10, dtype=torch.uint8)

    def data():
        return dict(inputs=[image], data_samples=[make_sample((5, 6), (5, 6), [[0, 0, 1, 1]])])

    out = preprocessor(data(), training=True)
    assert out['inputs'].shape == (1, 3, 12, 12)
    assert (out['inputs'][0, :, :5, :6] == 10).all()
    assert (out['inputs'][0, :, :8, :8][:, 5:, :] == 0).all()  # pad_size_divisor padding
    assert (out['inputs'][0, :, 8:, :] == -1).all()  # the batch augment's
    assert out['data_samples'][0].batch_input_shape == (12, 12)
    out = preprocessor(data(), training=False)
    assert out['inputs'].shape == (1, 3, 8, 8)
    assert out['data_samples'][0].batch_input_shape == (8, 8)


@pytest.mark.parametrize('boxtype2tensor', [True, False])
def test_preprocessor_boxtype2tensor(boxtype2tensor):
    preprocessor = DetDataPreprocessor(boxtype2tensor=boxtype2tensor)
    sample = make_sample((2, 2), (2, 2), [[0, 0, 1, 2]], box_object=True,
                         ignored=[[1, 1, 2, 2]])
    sample.pred_instances = InstanceData(bboxes=HorizontalBoxes(torch.tensor([[0., 0., 2., 2.]])))
    out = preprocessor(dict(inputs=[torch.zeros(3, 2, 2, dtype=torch.uint8)],
                            data_samples=[sample]))
    (sample, ) = out['data_samples']
    for field in ('gt_instances', 'ignored_instances', 'pred_instances'):
        boxes = sample.get(field).bboxes
        assert isinstance(boxes, HorizontalBoxes) != boxtype2tensor
    torch.testing.assert_close(box_tensor(sample.gt_instances.bboxes),
                               torch.tensor([[0., 0., 1., 2.]]))


def test_preprocessor_pads_sem_seg_keeping_metainfo():
    preprocessor = DetDataPreprocessor(pad_size_divisor=4, pad_seg=True, seg_pad_value=9)
    sample = make_sample((3, 2), (3, 2), [[0, 0, 1, 1]])
    sample.gt_sem_seg = PixelData(sem_seg=torch.ones(1, 3, 2, dtype=torch.uint8),
                                  metainfo=dict(note='kept'))
    out = preprocessor(dict(inputs=[torch.zeros(3, 3, 2, dtype=torch.uint8)],
                            data_samples=[sample]), training=True)
    sem_seg = out['data_samples'][0].gt_sem_seg
    assert sem_seg.sem_seg.shape == (1, 4, 4) and sem_seg.note == 'kept'
    assert (sem_seg.sem_seg == 9).sum().item() == 16 - 6
