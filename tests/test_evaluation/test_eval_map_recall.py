"""eval_map / average_precision / eval_recalls on hand-computed cases, and their tables."""
import logging

import numpy as np
import pytest

from mmdet_lite.evaluation.functional import (average_precision, eval_map, eval_recalls,
                                              print_map_summary)
from mmdet_lite.evaluation.functional.ascii_table import ascii_table
from mmdet_lite.evaluation.functional.mean_ap import tpfp_default, tpfp_imagenet


class ListHandler(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def logger():
    log = logging.getLogger('test_eval_map_recall')
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = ListHandler()
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)
    log.messages = None


def messages(log):
    return log.handlers[-1].messages


def dets(*rows):
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def boxes(*rows):
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


# One class, two objects; by score: TP (0.9), FP (0.8), TP (0.7).
# recall 0.5, 0.5, 1; precision 1, 0.5, 2/3.
HAND_DETS = [[dets([0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.8], [20, 20, 30, 30, 0.7])]]
HAND_GTS = [dict(bboxes=boxes([0, 0, 10, 10], [20, 20, 30, 30]), labels=np.array([0, 0]))]


def test_average_precision_area_and_11points_by_hand():
    recalls, precisions = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    # area: envelope precision 1 up to recall 0.5, 2/3 up to 1
    assert average_precision(recalls, precisions, 'area') == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11 points: recall >= 0, .1, .., .5 reach precision 1 (6 points), .6 .. 1 reach 2/3
    assert average_precision(recalls, precisions, '11points') == pytest.approx(
        (6 * 1 + 5 * 2 / 3) / 11)
    stacked = average_precision(np.stack([recalls] * 2), np.stack([precisions] * 2))
    assert stacked.shape == (2, ) and stacked.dtype == np.float32
    with pytest.raises(AssertionError, match="eval_mode must be one of .*'voc'"):
        average_precision(recalls, precisions, 'voc')


@pytest.mark.parametrize('mode, expected', [('area', 0.5 + 0.5 * 2 / 3),
                                            ('11points', (6 + 5 * 2 / 3) / 11)])
def test_eval_map_hand_case(mode, expected):
    mean_ap, results = eval_map(HAND_DETS, HAND_GTS, eval_mode=mode, logger='silent')
    assert mean_ap == pytest.approx(expected)
    assert isinstance(mean_ap, float)
    (result, ) = results
    assert result['num_gts'] == 2 and result['num_dets'] == 3
    np.testing.assert_allclose(result['recall'], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(result['precision'], [1.0, 0.5, 2 / 3], rtol=1e-6)


def test_ignored_boxes_duplicates_and_classes_without_gt():
    # class 0: a detection on the ignored (difficult) box counts as neither TP nor FP,
    # the second detection of the same object is a FP; class 1 has no gt and no say.
    det_results = [[dets([0, 0, 10, 10, 0.9], [40, 40, 50, 50, 0.8], [0, 0, 10, 10, 0.7]),
                    dets([0, 0, 10, 10, 0.5])]]
    annotations = [dict(bboxes=boxes([0, 0, 10, 10]), labels=np.array([0]),
                        bboxes_ignore=boxes([40, 40, 50, 50]), labels_ignore=np.array([0]))]
    mean_ap, results = eval_map(det_results, annotations, logger='silent')
    np.testing.assert_allclose(results[0]['precision'], [1.0, 1.0, 0.5])
    np.testing.assert_allclose(results[0]['recall'], [1.0, 1.0, 1.0])
    assert results[1]['num_gts'] == 0
    assert mean_ap == pytest.approx(1.0)  # class 1 is left out of the mean


def test_iou_threshold_and_legacy_coordinates():
    # gt [0, 0, 9, 9]; det [0, 0, 9, 4]: IoU 36/81 = 0.444 in pixels, but with the VOC
    # legacy convention (w = x2 - x1 + 1) 50/100 = 0.5
    det_results = [[dets([0, 0, 9, 4, 0.9])]]
    annotations = [dict(bboxes=boxes([0, 0, 9, 9]), labels=np.array([0]))]
    for iou_thr, legacy, expected in [(0.44, False, 1.0), (0.45, False, 0.0),
                                      (0.5, True, 1.0), (0.51, True, 0.0)]:
        mean_ap, _ = eval_map(det_results, annotations, iou_thr=iou_thr,
                              use_legacy_coordinate=legacy, logger='silent')
        assert mean_ap == expected, (iou_thr, legacy)


def test_scale_ranges_count_only_boxes_of_the_range():
    # a small object (side 10) found, a large one (side 100) missed
    det_results = [[dets([0, 0, 10, 10, 0.9])]]
    annotations = [dict(bboxes=boxes([0, 0, 10, 10], [100, 100, 200, 200]),
                        labels=np.array([0, 0]))]
    mean_ap, results = eval_map(det_results, annotations, scale_ranges=[(0, 32), (32, 1e5)],
                                logger='silent')
    assert mean_ap == pytest.approx([1.0, 0.0])
    np.testing.assert_array_equal(results[0]['num_gts'], [1, 1])
    mean_ap, _ = eval_map(det_results, annotations, logger='silent')
    assert mean_ap == pytest.approx(0.5)


def test_tpfp_imagenet_lets_a_detection_take_the_next_free_box():
    # two overlapping gts; det 1 takes gt A, det 2 overlaps A best but A is taken: with the
    # ImageNet rule it takes gt B (TP), with the VOC rule it is a duplicate (FP)
    gts = boxes([0, 0, 100, 100], [0, 10, 100, 110])
    det = dets([0, 0, 100, 100, 0.9], [0, 2, 100, 102, 0.8])
    tp, fp = tpfp_default(det, gts, boxes(), iou_thr=0.5)
    np.testing.assert_array_equal(tp, [[1, 0]])
    np.testing.assert_array_equal(fp, [[0, 1]])
    tp, fp = tpfp_imagenet(det, gts, boxes(), default_iou_thr=0.5)
    np.testing.assert_array_equal(tp, [[1, 1]])
    np.testing.assert_array_equal(fp, [[0, 0]])


def test_summary_table_is_logged_like_mmdetection(logger):
    eval_map(HAND_DETS * 1, HAND_GTS, dataset=['cat'], logger=logger)
    assert messages(logger)[-1] == '\n' + '\n'.join([
        '+-------+-----+------+--------+-------+',
        '| class | gts | dets | recall | ap    |',
        '+-------+-----+------+--------+-------+',
        '| cat   | 2   | 3    | 1.000  | 0.833 |',
        '+-------+-----+------+--------+-------+',
        '| mAP   |     |      |        | 0.833 |',
        '+-------+-----+------+--------+-------+'])
    # dataset='voc' names the 20 VOC classes
    det_results = [[dets() for _ in range(20)]]
    annotations = [dict(bboxes=boxes(), labels=np.zeros(0, dtype=int))]
    eval_map(det_results, annotations, dataset='voc', logger=logger)
    assert '| aeroplane   | 0   | 0    | 0.000  | 0.000 |' in messages(logger)[-1]
    with pytest.raises(ValueError, match="Unrecognized dataset 'nope'"):
        print_map_summary(0.0, [dict(recall=np.zeros(0), ap=0.0, num_gts=0, num_dets=0)],
                          dataset='nope')


def test_eval_map_argument_errors():
    with pytest.raises(AssertionError, match='det_results has 1 images but annotations has 2'):
        eval_map(HAND_DETS, HAND_GTS * 2)
    with pytest.raises(AssertionError, match="got 'all'"):
        eval_map(HAND_DETS, HAND_GTS, eval_mode='all')


def test_eval_recalls_greedy_matching_by_hand(logger):
    gts = [boxes([0, 0, 10, 10], [20, 20, 30, 30])]
    # by score: p3 (misses both), p1 (IoU 1 with the first box), p2 (IoU 0.5 with the second)
    proposals = [dets([0, 0, 10, 10, 0.9], [20, 20, 30, 25, 0.8], [100, 100, 110, 110, 0.95])]
    recalls = eval_recalls(gts, proposals, proposal_nums=(1, 2, 3), iou_thrs=(0.5, 0.7),
                           logger=logger)
    np.testing.assert_allclose(recalls, [[0.0, 0.0], [0.5, 0.5], [1.0, 0.5]])
    assert messages(logger)[-1] == '\n' + '\n'.join([
        '+---+-------+-------+',
        '|   | 0.5   | 0.7   |',
        '+---+-------+-------+',
        '| 1 | 0.000 | 0.000 |',
        '| 2 | 0.500 | 0.500 |',
        '| 3 | 1.000 | 0.500 |',
        '+---+-------+-------+'])
    # proposals without scores are taken in the given order; an image without gt adds none
    recalls = eval_recalls(gts + [None], [proposals[0][:, :4], boxes([0, 0, 1, 1])],
                           proposal_nums=1, iou_thrs=0.5, logger='silent')
    np.testing.assert_allclose(recalls, [[0.5]])
    with pytest.raises(AssertionError, match='gts has 1 images but proposals has 2'):
        eval_recalls(gts, proposals * 2)


def test_ascii_table_footer_border():
    assert ascii_table([['a', 'bb'], [1, 2], ['x', 'y']], footer_border=True) == '\n'.join([
        '+---+----+', '| a | bb |', '+---+----+', '| 1 | 2  |', '+---+----+', '| x | y  |',
        '+---+----+'])
