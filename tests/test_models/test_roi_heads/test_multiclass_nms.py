"""multiclass_nms: background column, score threshold, per-class NMS and max_num."""
import pytest
import torch

from mmdet_lite.models.layers import multiclass_nms

NMS = dict(type='nms', iou_threshold=0.5)


def test_background_column_is_ignored():
    bboxes = torch.tensor([[0., 0., 10., 10.]])
    # Two object classes, then background with by far the highest score.
    scores = torch.tensor([[0.1, 0.2, 0.7]])
    det_bboxes, det_scores, det_labels = multiclass_nms(bboxes, scores, 0.05, NMS)
    assert det_labels.tolist() == [1, 0]  # sorted by score; never label 2
    torch.testing.assert_close(det_scores, torch.tensor([0.2, 0.1]))
    torch.testing.assert_close(det_bboxes, bboxes.expand(2, 4))
    assert det_labels.dtype == torch.int64


def test_score_threshold_is_strict():
    bboxes = torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.], [40., 40., 50., 50.]])
    scores = torch.tensor([[0.3, 0.0], [0.05, 0.0], [0.04, 0.0]])
    det_bboxes, det_scores, det_labels = multiclass_nms(bboxes, scores, 0.05, NMS)
    assert det_scores.tolist() == pytest.approx([0.3])  # 0.05 is not above 0.05
    torch.testing.assert_close(det_bboxes, bboxes[:1])


def test_nms_runs_per_class():
    # IoU of the two boxes: 90 / 110 = 0.82 > 0.5.
    bboxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.]])
    different = torch.tensor([[0.9, 0.0, 0.0], [0.0, 0.8, 0.0]])
    _, det_scores, det_labels = multiclass_nms(bboxes, different, 0.05, NMS)
    assert det_labels.tolist() == [0, 1]
    assert det_scores.tolist() == pytest.approx([0.9, 0.8])

    same = torch.tensor([[0.9, 0.0, 0.0], [0.8, 0.0, 0.0]])
    det_bboxes, det_scores, det_labels = multiclass_nms(bboxes, same, 0.05, NMS)
    assert det_labels.tolist() == [0]
    torch.testing.assert_close(det_bboxes, bboxes[:1])


def test_class_specific_boxes_are_read_per_class():
    # One RoI with a different box for each of the 2 classes.
    bboxes = torch.tensor([[0., 0., 10., 10., 50., 50., 60., 60.]])
    scores = torch.tensor([[0.6, 0.3, 0.1]])
    det_bboxes, _, det_labels = multiclass_nms(bboxes, scores, 0.05, NMS)
    assert det_labels.tolist() == [0, 1]
    torch.testing.assert_close(det_bboxes,
                               torch.tensor([[0., 0., 10., 10.], [50., 50., 60., 60.]]))


def test_max_num_keeps_the_best():
    bboxes = torch.tensor([[i * 20., 0., i * 20. + 10., 10.] for i in range(5)])
    scores = torch.tensor([[0.2, 0.], [0.9, 0.], [0.5, 0.], [0.7, 0.], [0.3, 0.]])
    det_bboxes, det_scores, _ = multiclass_nms(bboxes, scores, 0.05, NMS, max_num=2)
    assert det_scores.tolist() == pytest.approx([0.9, 0.7])
    torch.testing.assert_close(det_bboxes, bboxes[[1, 3]])
    assert len(multiclass_nms(bboxes, scores, 0.05, NMS, max_num=-1)[0]) == 5


def test_nothing_above_threshold_gives_empty_results():
    det_bboxes, det_scores, det_labels = multiclass_nms(
        torch.rand(3, 8), torch.full((3, 3), 0.01), 0.05, NMS)
    assert det_bboxes.shape == (0, 4)
    assert det_scores.shape == (0, )
    assert det_labels.shape == (0, )


def test_unsupported_nms_type_is_rejected():
    with pytest.raises(ValueError, match="nms.type must be 'nms'"):
        multiclass_nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([[0.9, 0.1]]), 0.05,
                       dict(type='soft_nms', iou_threshold=0.5))


def test_class_agnostic_nms_suppresses_across_classes():
    bboxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.]])
    scores = torch.tensor([[0.9, 0.0, 0.0], [0.0, 0.8, 0.0]])
    _, det_scores, det_labels = multiclass_nms(bboxes, scores, 0.05,
                                               dict(NMS, class_agnostic=True))
    assert det_labels.tolist() == [0]
    assert det_scores.tolist() == pytest.approx([0.9])
