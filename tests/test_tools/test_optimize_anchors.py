"""optimize_anchors: box collection at the input scale, k-means and differential evolution.

The average best IoU is recomputed here from plain (w, h) arithmetic: two boxes centred on
the same point overlap in min(w1, w2) x min(h1, h2).
"""
import json
import logging
import os.path as osp

import numpy as np
import pytest
import torch
from helpers_tools import REPO_ROOT, load_script

from mmdet_lite.analysis.anchor_optimizer import (AnchorOptimizerArgumentError,
                                                  BaseAnchorOptimizer, YOLODEAnchorOptimizer,
                                                  YOLOKMeansAnchorOptimizer)

tool = load_script('tools/analysis_tools/optimize_anchors.py')
YOLOV3_CONFIG = osp.join(REPO_ROOT, 'configs/yolo/yolov3_d53_8xb8-320-273e_coco.py')
YOLOV3_ANCHORS = [(116, 90), (156, 198), (373, 326), (30, 61), (62, 45), (59, 119),
                  (10, 13), (16, 30), (33, 23)]
LOGGER = logging.getLogger('test_optimize_anchors')


def average_best_iou(box_whs, anchor_whs) -> float:
    box_whs = np.asarray(box_whs, dtype=float)[:, None]  # [N, 1, 2]
    anchor_whs = np.asarray(anchor_whs, dtype=float)[None]  # [1, K, 2]
    inter = np.minimum(box_whs, anchor_whs).prod(-1)
    union = box_whs.prod(-1) + anchor_whs.prod(-1) - inter
    return float((inter / union).max(axis=1).mean())


class BoxList:
    """The part of a detection dataset the optimizers read."""

    def __init__(self, images):
        self.images = images  # [(width, height, [(w, h), ...])]

    def __len__(self):
        return len(self.images)

    def get_data_info(self, index):
        width, height, whs = self.images[index]
        return dict(width=width, height=height,
                    instances=[dict(bbox=[5, 7, 5 + w, 7 + h], bbox_label=0, ignore_flag=0)
                               for w, h in whs])


CLUSTERS = [(8, 12), (40, 20), (90, 100)]  # (w, h) at the 200 x 100 images' own scale


def clustered_boxes():
    """20 images of 200 x 100 with 3 to 5 boxes each, all of the 3 exact sizes."""
    images = []
    for i in range(20):
        images.append((200, 100, [CLUSTERS[(i + j) % 3] for j in range(i % 3 + 3)]))
    return BoxList(images)


def test_boxes_are_scaled_like_a_keep_ratio_resize():
    optimizer = YOLOKMeansAnchorOptimizer(
        dataset=BoxList([(200, 100, [(8, 12), (40, 20)]), (50, 80, [(10, 10)])]),
        input_shape=[100, 100], logger=LOGGER, device='cpu', num_anchors=2, iters=5)
    # longer side 200 -> 100 (x 0.5); longer side 80 -> 100 (x 1.25)
    np.testing.assert_allclose(optimizer.bbox_whs, [[4, 6], [20, 10], [12.5, 12.5]])
    np.testing.assert_allclose(optimizer.get_zero_center_bbox_tensor().numpy(),
                               [[-2, -3, 2, 3], [-10, -5, 10, 5], [-6.25, -6.25, 6.25, 6.25]])


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_kmeans_recovers_three_exact_size_clusters(seed, tmp_path):
    torch.manual_seed(seed)
    optimizer = YOLOKMeansAnchorOptimizer(
        dataset=clustered_boxes(), input_shape=[400, 400], logger=LOGGER, device='cpu',
        num_anchors=3, iters=50, out_dir=str(tmp_path))
    anchors = optimizer.optimize()
    # input 400 over the longer side 200: sizes doubled; smallest area first
    np.testing.assert_allclose(anchors, [(16, 24), (80, 40), (180, 200)], atol=1e-4)
    saved = json.loads((tmp_path / 'anchor_optimize_result.json').read_text())
    assert saved == [[16, 24], [80, 40], [180, 200]]


def test_kmeans_with_jittered_clusters_finds_their_means():
    rng = np.random.default_rng(0)
    whs = [tuple(np.array(size) + rng.uniform(-1, 1, 2)) for size in CLUSTERS
           for _ in range(20)]
    torch.manual_seed(0)
    optimizer = YOLOKMeansAnchorOptimizer(
        dataset=BoxList([(100, 100, whs)]), input_shape=[100, 100], logger=LOGGER,
        device='cpu', num_anchors=3, iters=100)
    anchors = optimizer.kmeans_anchors()
    means = [np.mean(whs[i * 20:(i + 1) * 20], axis=0) for i in range(3)]
    np.testing.assert_allclose(anchors, means, atol=1e-3)


def test_one_anchor_is_the_mean_size():
    optimizer = YOLOKMeansAnchorOptimizer(
        dataset=BoxList([(100, 100, [(10, 20), (30, 40)])]), input_shape=[100, 100],
        logger=LOGGER, device='cpu', num_anchors=1, iters=10)
    np.testing.assert_allclose(optimizer.kmeans_anchors(), [(20, 30)])


@pytest.mark.slow
def test_differential_evolution_fits_the_clusters():
    np.random.seed(0)
    optimizer = YOLODEAnchorOptimizer(
        dataset=clustered_boxes(), input_shape=[200, 200], logger=LOGGER, device='cpu',
        num_anchors=3, iters=60)
    anchors = optimizer.differential_evolution()
    whs = np.array(optimizer.bbox_whs)
    assert average_best_iou(whs, anchors) > 0.95
    assert average_best_iou(whs, anchors) == pytest.approx(
        1 - optimizer.avg_iou_cost(np.ravel(anchors), optimizer.get_zero_center_bbox_tensor()),
        abs=1e-5)
    np.testing.assert_allclose(anchors, CLUSTERS, rtol=0.1)
    with pytest.raises(AssertionError, match='pairs'):
        optimizer.avg_iou_cost([1, 2, 3], optimizer.get_zero_center_bbox_tensor())


def test_cost_is_one_minus_the_average_best_iou():
    boxes = BaseAnchorOptimizer(dataset=BoxList([(100, 100, [(10, 10), (20, 40)])]),
                                input_shape=[100, 100], logger=LOGGER,
                                device='cpu').get_zero_center_bbox_tensor()
    # box (10, 10): anchor (10, 20) gives 100 / 200, (100, 100) 100 / 10000;
    # box (20, 40): (10, 20) gives 200 / 800, (100, 100) 800 / 10000
    cost = YOLODEAnchorOptimizer.avg_iou_cost([10, 20, 100, 100], boxes)
    assert cost == pytest.approx(1 - (0.5 + 0.25) / 2)


def test_an_empty_dataset_is_reported():
    with pytest.raises(AnchorOptimizerArgumentError, match='no ground-truth boxes'):
        BaseAnchorOptimizer(dataset=BoxList([(100, 100, [])]), input_shape=[100, 100],
                            logger=LOGGER, device='cpu')


def _shapes_cfg_options(data_root):
    return ['train_dataloader.dataset.type=ShapesDataset',
            f'train_dataloader.dataset.data_root={data_root}/',
            'train_dataloader.dataset.ann_file=annotations/instances_train.json',
            'train_dataloader.dataset.data_prefix.img=train/',
            'train_dataloader.dataset.num_images=8', 'train_dataloader.dataset.image_size=96',
            'train_dataloader.dataset.max_objects=3',
            'train_dataloader.dataset.size_range=(16,40)',
            'train_dataloader.dataset.pipeline=[]']


def _shapes_box_whs(data_root, scale):
    with open(osp.join(data_root, 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    sides = {img['id']: max(img['width'], img['height']) for img in coco['images']}
    return np.array([[a['bbox'][2] * scale / sides[a['image_id']],
                      a['bbox'][3] * scale / sides[a['image_id']]]
                     for a in coco['annotations']])


@pytest.mark.slow
@pytest.mark.parametrize('algorithm, iters', [('k-means', 100),
                                              ('differential_evolution', 30)])
def test_tool_beats_the_default_and_random_anchors_on_shapes(algorithm, iters, tmp_path):
    torch.manual_seed(0)
    np.random.seed(0)
    data_root, out_dir = tmp_path / 'data', tmp_path / 'out'
    tool.main([YOLOV3_CONFIG, '--algorithm', algorithm, '--input-shape', '192', '192',
               '--iters', str(iters), '--device', 'cpu', '--output-dir', str(out_dir),
               '--cfg-options', *_shapes_cfg_options(data_root)])
    anchors = json.loads((out_dir / 'anchor_optimize_result.json').read_text())
    assert len(anchors) == 9 and all(len(a) == 2 and all(isinstance(v, int) for v in a)
                                     for a in anchors)
    assert [w * h for w, h in anchors] == sorted(w * h for w, h in anchors)
    whs = _shapes_box_whs(data_root, scale=192)  # 96-px images at a 192 input: x 2
    assert len(whs) >= 8
    fitted = average_best_iou(whs, anchors)
    random_anchors = np.random.default_rng(0).uniform(1, 192, (9, 2))
    assert fitted > average_best_iou(whs, YOLOV3_ANCHORS) + 0.1
    assert fitted > average_best_iou(whs, random_anchors) + 0.1
    assert fitted > 0.75


def test_tool_refuses_other_anchor_generators(capsys):
    config = osp.join(REPO_ROOT, 'configs/retinanet/retinanet_r50_fpn_1x_coco.py')
    with pytest.raises(SystemExit) as exit_info:
        tool.main([config, '--device', 'cpu'])
    assert exit_info.value.code == 2
    assert 'Only support optimize YOLOAnchor' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        tool.main([YOLOV3_CONFIG, '--input-shape', '320'])
    assert exit_info.value.code == 2
    assert '--input-shape needs 2 numbers' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([YOLOV3_CONFIG, '--algorithm', 'genetic'])
    assert "invalid choice: 'genetic'" in capsys.readouterr().err


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        tool.main(['--help'])
    assert 'optimize_anchors.py \\\n      configs/yolo/' in capsys.readouterr().out
