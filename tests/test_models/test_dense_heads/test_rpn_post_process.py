"""RPNHead._bbox_post_process as mmdetection 3.3: NMS per level, labels all 0."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import MODELS

CFG = dict(nms_pre=1000, max_per_img=1000, min_bbox_size=1,
           nms=dict(type='nms', iou_threshold=0.7))


def make_head():
    return MODELS.build(dict(
        type='RPNHead', in_channels=4, feat_channels=4,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[1.0],
                              strides=[4, 8]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                        target_stds=[1.0] * 4)))


def candidates():
    # B overlaps A with IoU 100/120 > 0.7 in the same level: suppressed. C repeats B on
    # level 1: kept. D is 0.5 px wide (<= min_bbox_size): dropped before NMS.
    return InstanceData(
        bboxes=torch.tensor([[0., 0., 10., 10.], [0., 0., 12., 10.], [0., 0., 12., 10.],
                             [0., 0., 0.5, 10.]]),
        scores=torch.tensor([0.9, 0.8, 0.7, 0.95]),
        level_ids=torch.tensor([0, 0, 1, 0]))


def test_nms_within_levels_and_zero_labels():
    res = make_head()._bbox_post_process(candidates(), CFG, img_meta=dict(img_shape=(32, 32)))
    assert torch.equal(res.bboxes, torch.tensor([[0., 0., 10., 10.], [0., 0., 12., 10.]]))
    assert torch.allclose(res.scores, torch.tensor([0.9, 0.7]))
    assert res.labels.dtype == torch.long and torch.equal(res.labels, torch.zeros(2).long())
    assert 'level_ids' not in res


def test_max_per_img_and_rescale():
    cfg = dict(CFG, max_per_img=1)
    res = make_head()._bbox_post_process(candidates(), cfg, rescale=True,
                                         img_meta=dict(scale_factor=(2.0, 0.5)))
    assert torch.allclose(res.bboxes, torch.tensor([[0., 0., 5., 20.]]))
    assert res.labels.tolist() == [0]


def test_everything_filtered_gives_empty_fields():
    results = candidates()[[3]]  # only the thin box
    res = make_head()._bbox_post_process(results, CFG)
    assert res.bboxes.shape == (0, 4) and res.scores.shape == (0, ) and len(res.labels) == 0
    assert set(res.keys()) == {'bboxes', 'scores', 'labels'}


def test_with_nms_false_is_an_assertion():
    with pytest.raises(AssertionError, match='with_nms'):
        make_head()._bbox_post_process(candidates(), CFG, with_nms=False)


def test_predict_gives_class_agnostic_proposals():
    head = make_head()
    head.test_cfg = dict(CFG, min_bbox_size=0)
    from mmdet_lite.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=(32, 32), scale_factor=(1.0, 1.0)))
    res = head.predict((torch.rand(1, 4, 8, 8), torch.rand(1, 4, 4, 4)), [sample])[0]
    assert len(res) > 0 and torch.all(res.labels == 0) and res.labels.dtype == torch.long
    assert torch.all(res.scores[:-1] >= res.scores[1:])
