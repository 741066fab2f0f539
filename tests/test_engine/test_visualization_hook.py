"""DetVisualizationHook with a stand-in runner."""
import glob
import os
import types
import uuid

import mmcv
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.engine.hooks import DetVisualizationHook
from mmdet_lite.registry import HOOKS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.visualization import DetLocalVisualizer

H, W = 40, 50
RGB = (200, 30, 60)  # a colour whose channel order is visible
TIMESTAMP = '20240101_000000'


def _write_image(tmp_path, name: str = 'demo.png') -> str:
    path = str(tmp_path / 'images' / name)
    img = np.zeros((H, W, 3), np.uint8)
    img[...] = RGB[::-1]  # files hold BGR
    mmcv.imwrite(img, path)
    return path


def _sample(img_path: str) -> DetDataSample:
    sample = DetDataSample(metainfo=dict(img_path=img_path, ori_shape=(H, W)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[5., 5., 20., 20.]]),
                                       labels=torch.tensor([0]))
    sample.pred_instances = InstanceData(bboxes=torch.tensor([[5., 5., 20., 20.]]),
                                         labels=torch.tensor([0]), scores=torch.tensor([0.8]))
    return sample


def _runner(tmp_path, **vis_kwargs) -> types.SimpleNamespace:
    visualizer = DetLocalVisualizer.get_instance(f'hook-{uuid.uuid4().hex}', **vis_kwargs)
    visualizer.dataset_meta = dict(classes=('thing', ), palette=[(0, 255, 0)])
    return types.SimpleNamespace(work_dir=str(tmp_path / 'work'), timestamp=TIMESTAMP, iter=0,
                                 visualizer=visualizer)


def test_after_test_iter_writes_each_image_into_test_out_dir(tmp_path):
    runner = _runner(tmp_path)
    hook = DetVisualizationHook(draw=True, test_out_dir='show')
    outputs = [_sample(_write_image(tmp_path, 'a.png')), _sample(_write_image(tmp_path, 'b.png'))]
    hook.after_test_iter(runner, 0, {}, outputs)
    hook.after_test_iter(runner, 1, {}, outputs[:1])  # same folder, not nested deeper

    out_dir = tmp_path / 'work' / TIMESTAMP / 'show'
    assert sorted(os.listdir(out_dir)) == ['a.png', 'b.png']
    drawn = mmcv.imread(str(out_dir / 'a.png'), channel_order='rgb')
    assert drawn.shape == (H, 2 * W, 3)  # GT left, prediction right
    # the image was read as RGB and written back as BGR: untouched pixels keep their colour
    np.testing.assert_array_equal(drawn[H - 1, W - 1], RGB)
    assert (drawn[12, 5] != RGB).any()  # the box's left edge


def test_draw_false_writes_nothing(tmp_path):
    runner = _runner(tmp_path)
    hook = DetVisualizationHook(draw=False, test_out_dir='show')
    hook.after_test_iter(runner, 0, {}, [_sample(_write_image(tmp_path))])
    hook.after_val_iter(runner, 0, {}, [_sample(_write_image(tmp_path))])
    assert not (tmp_path / 'work').exists()


def test_after_val_iter_draws_every_interval_to_the_backends(tmp_path):
    runner = _runner(tmp_path, vis_backends=[dict(type='LocalVisBackend')],
                     save_dir=str(tmp_path / 'vis'))
    hook = DetVisualizationHook(draw=True, interval=2)
    outputs = [_sample(_write_image(tmp_path))]
    for batch_idx in range(5):
        hook.after_val_iter(runner, batch_idx, {}, outputs)
    saved = glob.glob(str(tmp_path / 'vis' / '**' / '*.png'), recursive=True)
    assert sorted(os.path.basename(p) for p in saved) == \
        ['val_img_0.png', 'val_img_2.png', 'val_img_4.png']


def test_missing_img_path_is_a_clear_error(tmp_path):
    hook = DetVisualizationHook(draw=True)
    sample = _sample('unused')
    sample.set_metainfo(dict(img_path=None))
    with pytest.raises(KeyError, match="needs 'img_path'"):
        hook.after_test_iter(_runner(tmp_path), 0, {}, [sample])
    with pytest.raises(FileNotFoundError):
        hook.after_test_iter(_runner(tmp_path), 0, {}, [_sample(str(tmp_path / 'nope.png'))])


def test_build_from_registry_and_argument_checks():
    hook = HOOKS.build(dict(type='DetVisualizationHook', draw=True, interval=10,
                            score_thr=0.5, test_out_dir='out'))
    assert (hook.draw, hook.interval, hook.score_thr, hook.test_out_dir) == \
        (True, 10, 0.5, 'out')
    with pytest.raises(ValueError, match='interval must be a positive int'):
        DetVisualizationHook(interval=0)
    with pytest.raises(TypeError, match='test_out_dir must be a str'):
        DetVisualizationHook(test_out_dir=3)
