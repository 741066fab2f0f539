"""The analysis library behind confusion_matrix.py and analyze_results.py, on hand cases.

mmdet_lite.analysis.confusion_matrix: the counting rules of mmdetection 3.3's tool (a
match, a wrong-class match, a miss, a false positive, an ignored box, a score below the
threshold, NMS) and the PNG. mmdet_lite.analysis.result_ranking: per-image mAP, the
good / bad ranking and the side-by-side drawing.
"""
import warnings

import cv2
import numpy as np
import pytest
import torch

from mmdet_lite.analysis.confusion_matrix import (NumResultsError, analyze_per_img_dets,
                                                  calculate_confusion_matrix,
                                                  plot_confusion_matrix)
from mmdet_lite.analysis.result_ranking import (TopkError, draw_gt_and_prediction,
                                                image_map, per_class_dets, per_image_map,
                                                rank_results)

CAT, DOG, BG = 0, 1, 2  # rows / columns of a 2-class matrix


class FakeDataset:
    """What the analysis functions use of a dataset: metainfo, len, get_data_info."""

    def __init__(self, images, classes=('cat', 'dog')):
        self.images = images  # per image: list of (bbox, label, ignore_flag)
        self.metainfo = dict(classes=classes)

    def __len__(self):
        return len(self.images)

    def get_data_info(self, index):
        return dict(img_path=f'img_{index}.jpg', instances=[
            dict(bbox=list(bbox), bbox_label=label, ignore_flag=ignore)
            for bbox, label, ignore in self.images[index]])


def preds(*items):
    """``pred_instances`` as tools/test.py --out saves them: tensors. items: (box, score, label)."""
    boxes = torch.tensor([box for box, _, _ in items], dtype=torch.float32).reshape(-1, 4)
    return dict(bboxes=boxes, scores=torch.tensor([s for _, s, _ in items]),
                labels=torch.tensor([lab for _, _, lab in items], dtype=torch.long))


@pytest.fixture
def two_images():
    """Image 0: cat A found, dog B only found as a cat (its dog prediction scores 0.2),
    a false-positive dog, an ignored cat found. Image 1: dog D overlapped at IoU 1/3 only."""
    dataset = FakeDataset([
        [((0, 0, 10, 10), CAT, 0), ((20, 20, 30, 30), DOG, 0), ((40, 40, 50, 50), CAT, 1)],
        [((0, 0, 20, 20), DOG, 0)],
    ])
    results = [
        dict(pred_instances=preds(((0, 0, 10, 10), .9, CAT),     # A, right class
                                  ((20, 20, 30, 30), .8, CAT),   # B, wrong class
                                  ((60, 60, 70, 70), .7, DOG),   # nothing there
                                  ((40, 40, 50, 50), .6, CAT),   # the ignored cat
                                  ((20, 20, 30, 30), .2, DOG))),  # B, but low score
        dict(pred_instances=preds(((10, 0, 30, 20), .9, DOG))),  # IoU 200 / 600 with D
    ]
    return dataset, results


def test_hand_computed_matrix_at_score_thr_0_3(two_images):
    dataset, results = two_images
    matrix = calculate_confusion_matrix(dataset, results, score_thr=0.3)
    expected = np.zeros((3, 3))
    expected[CAT, CAT] = 2   # A, and the ignored cat: ignore flags are not consulted
    expected[DOG, CAT] = 1   # B predicted as a cat
    expected[DOG, BG] = 2    # B (no dog prediction above 0.3) and D (IoU 1/3) missed
    expected[BG, DOG] = 2    # the dog on empty ground, the dog at IoU 1/3 with D
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.shape == (3, 3) and matrix.dtype == np.float64


def test_score_and_iou_thresholds_change_the_counts(two_images):
    dataset, results = two_images
    # at score_thr 0 the 0.2 dog finds B: B is no longer missed
    matrix = calculate_confusion_matrix(dataset, results, score_thr=0)
    np.testing.assert_array_equal(matrix, [[2, 0, 0], [1, 1, 1], [0, 2, 0]])
    # at tp_iou_thr 0.3 the IoU-1/3 dog finds D
    matrix = calculate_confusion_matrix(dataset, results, score_thr=0.3, tp_iou_thr=0.3)
    np.testing.assert_array_equal(matrix, [[2, 0, 0], [1, 1, 1], [0, 1, 0]])


def test_a_prediction_counts_once_per_overlapped_gt_and_nms_removes_duplicates():
    # a cat and a dog box almost on top of each other (IoU 100/110), two cat predictions
    dataset = FakeDataset([[((0, 0, 10, 10), CAT, 0), ((0, 0, 10, 11), DOG, 0)]])
    results = [dict(pred_instances=preds(((0, 0, 10, 10), .9, CAT),
                                         ((0, 0, 10, 10.5), .8, CAT)))]
    matrix = calculate_confusion_matrix(dataset, results)
    # each cat prediction counts for the cat and for the dog; the dog is missed
    np.testing.assert_array_equal(matrix, [[2, 0, 0], [2, 0, 1], [0, 0, 0]])
    matrix = calculate_confusion_matrix(dataset, results, nms_iou_thr=0.5)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [1, 0, 1], [0, 0, 0]])
    # a score equal to score_thr counts; with NMS (mmcv's nms) it must be above it
    results = [dict(pred_instances=preds(((0, 0, 10, 10), .5, CAT)))]
    matrix = calculate_confusion_matrix(dataset, results, score_thr=.5)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [1, 0, 1], [0, 0, 0]])
    matrix = calculate_confusion_matrix(dataset, results, score_thr=.5, nms_iou_thr=0.5)
    np.testing.assert_array_equal(matrix, [[0, 0, 1], [0, 0, 1], [0, 0, 0]])


def test_images_without_gt_or_predictions_and_numpy_input():
    matrix = np.zeros((3, 3))
    analyze_per_img_dets(matrix, [], dict(bboxes=np.array([[0, 0, 5, 5]]),
                                          scores=np.array([.5]), labels=np.array([DOG])))
    analyze_per_img_dets(matrix, [dict(bbox=[0, 0, 5, 5], bbox_label=CAT, ignore_flag=0)],
                         preds())
    np.testing.assert_array_equal(matrix, [[0, 0, 1], [0, 0, 0], [0, 1, 0]])


def test_length_mismatch_is_a_value_and_assertion_error(two_images):
    dataset, results = two_images
    with pytest.raises(NumResultsError, match='1 images but the test dataset has 2'):
        calculate_confusion_matrix(dataset, results[:1])
    assert issubclass(NumResultsError, AssertionError)
    with pytest.raises(KeyError, match='pred_instances'):
        calculate_confusion_matrix(dataset, [dict(img_id=0), dict(img_id=1)])


def test_plot_writes_a_png_and_tolerates_empty_rows(tmp_path):
    matrix = np.array([[5., 1, 2], [0, 7, 1], [0, 0, 0]])  # background row: no counts
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)  # no division warnings
        path = plot_confusion_matrix(matrix, ('cat', 'dog', 'background'),
                                     save_dir=str(tmp_path / 'out'), show=False)
    assert path == str(tmp_path / 'out' / 'confusion_matrix.png')
    image = cv2.imread(path)
    assert image.shape[0] >= 500 and image.shape[1] >= 700  # 5 x 4 inches at 180 dpi
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50
    assert plot_confusion_matrix(matrix, ('cat', 'dog', 'background'), show=False) is None


# ---------------------------------------------------------------- per-image mAP, ranking

def test_per_image_map_perfect_none_and_hand_case():
    gts = [((0, 0, 10, 10), CAT, 0), ((20, 20, 30, 30), CAT, 0)]
    dataset = FakeDataset([gts, gts, gts, []])
    results = [
        dict(pred_instances=preds(((0, 0, 10, 10), 1., CAT), ((20, 20, 30, 30), 1., CAT))),
        dict(pred_instances=preds()),
        # second box IoU 0.72: a match at IoU 0.5..0.7 (AP 1), a false positive at
        # 0.75..0.95 (recall 1/2 at precision 1: AP 0.5); the dog has no gt so it does
        # not count in the class mean
        dict(pred_instances=preds(((0, 0, 10, 10), .9, CAT), ((20, 20, 30, 27.2), .8, CAT),
                                  ((50, 50, 60, 60), .95, DOG))),
        dict(pred_instances=preds(((0, 0, 10, 10), .9, CAT))),  # no objects: 0
    ]
    maps = per_image_map(dataset, results)
    np.testing.assert_allclose(maps, [1., 0., (5 * 1 + 5 * .5) / 10, 0.], atol=1e-6)
    # a single threshold
    dets = per_class_dets(results[2]['pred_instances'], 2)
    assert [d.shape for d in dets] == [(2, 5), (1, 5)]
    bboxes = np.array([g[0] for g in gts], dtype=np.float32)
    assert image_map(dets, bboxes, np.array([CAT, CAT]), iou_thrs=[.5]) == 1.0
    assert image_map(dets, bboxes, np.array([CAT, CAT]), iou_thrs=[.8]) == 0.5


def _scored_dataset(num_images):
    """Image i has one cat; the prediction of image i overlaps it at IoU depending on i."""
    gt = [((0, 0, 100, 100), CAT, 0)]
    ious = [0.52, 0.97, 0.0, 0.77, 0.62][:num_images]  # mAP .1, 1, 0, .6, .3
    results = [dict(pred_instances=preds(((0, 0, 100, 100 * iou), .9, CAT))) for iou in ious]
    return FakeDataset([gt] * num_images), results


def test_rank_results_as_mmdetection():
    dataset, results = _scored_dataset(5)
    np.testing.assert_allclose(per_image_map(dataset, results), [.1, 1., 0., .6, .3],
                               atol=1e-6)
    good, bad = rank_results(dataset, results, topk=2)
    assert [i for i, _ in good] == [3, 1] and [i for i, _ in bad] == [2, 0]  # ascending
    assert good[1][1] == pytest.approx(1.0) and bad[0][1] == 0.0
    good, bad = rank_results(dataset, results, topk=3)  # 6 > 5 images: cut to 2
    assert len(good) == len(bad) == 2
    dataset, results = _scored_dataset(1)
    assert rank_results(dataset, results, topk=5) == ([(0, pytest.approx(.1))], [])
    with pytest.raises(TopkError, match='topk must be > 0'):
        rank_results(dataset, results, topk=0)
    assert issubclass(TopkError, AssertionError)


def test_draw_gt_and_prediction_side_by_side():
    img = np.full((48, 64, 3), 90, dtype=np.uint8)
    gt = dict(instances=[dict(bbox=[5, 5, 25, 25], bbox_label=CAT, ignore_flag=0)])
    pred = preds(((35, 20, 60, 45), .9, DOG), ((5, 30, 20, 45), .2, CAT))
    drawn = draw_gt_and_prediction(img, gt, pred, ('cat', 'dog'), score_thr=0.3,
                                   palette=[(255, 0, 0), (0, 0, 255)])
    assert drawn.shape == (48, 128, 3) and drawn.dtype == np.uint8
    changed = np.abs(drawn.astype(int) - 90).sum(-1) > 30  # [48, 128]
    left, right = changed[:, :64], changed[:, 64:]
    assert left[5:26, 5:26].any() and not left[:, 30:].any()  # the gt box only
    assert right[20:46, 35:61].any() and not right[:18, :30].any()  # not the gt box
    assert not right[30:46, 4:21].any()  # the 0.2 prediction is under the threshold
    # the dog box is drawn in the dog colour (blue)
    blue = drawn[:, 64:][right]
    assert (blue[:, 2] > blue[:, 0] + 50).any()
