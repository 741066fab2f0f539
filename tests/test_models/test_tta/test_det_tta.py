"""DetTTAModel: flip-back, pooling and per-class NMS of the views of each image.

Hand-made views of a 100 (wide) x 80 (high) image: the detector's boxes of a flipped view
are in original-image pixels of the flipped image, so ``x1' = 100 - x2``, ``x2' = 100 - x1``
(``y' = 80 - y`` for a vertical flip) brings them back.
"""
from typing import List

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmengine.structures import InstanceData

from mmdet_lite.models.test_time_augs import DetTTAModel, TTAUnsupportedError
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

W, H = 100, 80
TTA_CFG = ConfigDict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)


class ViewDetector(BaseModel):
    """Stands in for a detector: ``test_step`` answers each view with preset predictions,
    chosen by the view's ``flip`` meta, and records the views it saw."""

    def __init__(self, preds_by_flip: dict) -> None:
        super().__init__()
        self.preds_by_flip = preds_by_flip
        self.seen: List[dict] = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        raise NotImplementedError

    def test_step(self, data: dict) -> List[DetDataSample]:
        self.seen.append(data)
        for sample in data['data_samples']:
            sample.pred_instances = self.preds_by_flip[sample.flip]
        return data['data_samples']


def preds(bboxes, scores, labels) -> InstanceData:
    return InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                        scores=torch.tensor(scores, dtype=torch.float32),
                        labels=torch.tensor(labels, dtype=torch.long))


def view(flip: bool, instances: InstanceData, direction='horizontal') -> DetDataSample:
    sample = DetDataSample(metainfo=dict(img_id=7, ori_shape=(H, W), img_shape=(H, W),
                                         scale_factor=(1.0, 1.0), flip=flip,
                                         flip_direction=direction if flip else None))
    sample.pred_instances = instances
    return sample


def tta_model(tta_cfg=TTA_CFG, detector=None) -> DetTTAModel:
    return DetTTAModel(tta_cfg=tta_cfg, module=detector or ViewDetector({}))


def test_registered_and_keeps_module_and_cfg():
    register_all_modules(init_default_scope=False)
    assert MODELS.get('DetTTAModel') is DetTTAModel
    detector = ViewDetector({})
    model = MODELS.build(dict(type='DetTTAModel', tta_cfg=TTA_CFG, module=detector))
    assert model.module is detector and model.tta_cfg == TTA_CFG


def test_flipped_view_maps_back_and_nms_merges_the_duplicate():
    original = preds([[61, 21, 89, 59],    # class 0, the same object as the flipped view's
                      [5, 5, 25, 30]],     # class 1, only seen here
                     [0.7, 0.6], [0, 1])
    flipped = preds([[10, 20, 40, 60],     # -> [60, 20, 90, 60] on the original image
                     [10, 20, 40, 60]],    # same place, class 2: another class, kept
                    [0.9, 0.3], [0, 2])
    merged = tta_model().merge_preds([[view(True, flipped), view(False, original)]])
    assert len(merged) == 1
    result = merged[0].pred_instances
    # IoU([61,21,89,59], [60,20,90,60]) = 1064 / 1200 > 0.5: the 0.7 box is suppressed
    torch.testing.assert_close(result.bboxes, torch.tensor(
        [[60., 20., 90., 60.], [5., 5., 25., 30.], [60., 20., 90., 60.]]))
    torch.testing.assert_close(result.scores, torch.tensor([0.9, 0.6, 0.3]))
    assert result.labels.tolist() == [0, 1, 2]
    # the first view's sample comes back, with its meta, as in mmdetection
    assert merged[0].flip is True and merged[0].img_id == 7


def test_vertical_and_diagonal_flips_map_back():
    box = [[10, 20, 40, 60]]
    for direction, expected in (('vertical', [10, 20, 40, 60]),  # y: 80-60, 80-20
                                ('diagonal', [60, 20, 90, 60])):
        sample = view(True, preds(box, [0.5], [0]), direction=direction)
        result = tta_model().merge_preds([[sample]])[0].pred_instances
        assert result.bboxes.tolist() == [expected]
    # a box off the vertical axis of symmetry shows the vertical mapping is not the identity
    sample = view(True, preds([[0, 0, 10, 30]], [0.5], [0]), direction='vertical')
    assert tta_model().merge_preds([[sample]])[0].pred_instances.bboxes.tolist() == [
        [0, 50, 10, 80]]


def test_max_per_img_keeps_the_highest_scores():
    boxes = [[i * 20, 0, i * 20 + 10, 10] for i in range(5)]  # disjoint: NMS keeps all
    sample = view(False, preds(boxes, [0.1, 0.5, 0.3, 0.9, 0.2], [0] * 5))
    cfg = ConfigDict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=2)
    result = tta_model(cfg).merge_preds([[sample]])[0].pred_instances
    assert result.scores.tolist() == pytest.approx([0.9, 0.5])
    assert result.bboxes.tolist() == [boxes[3], boxes[1]]


def test_no_predictions_in_any_view_returns_the_first_view_unchanged():
    empty = preds([], [], [])
    first = view(True, empty)
    assert tta_model().merge_preds([[first, view(False, preds([], [], []))]])[0] is first
    assert first.pred_instances is empty


def test_masks_are_not_supported():
    instances = preds([[0, 0, 10, 10]], [0.5], [0])
    instances.masks = torch.zeros(1, H, W, dtype=torch.bool)
    with pytest.raises(TTAUnsupportedError, match='mask') as info:
        tta_model().merge_preds([[view(False, instances)]])
    assert isinstance(info.value, AssertionError)


def test_views_need_flip_meta():
    sample = DetDataSample(metainfo=dict(ori_shape=(H, W)))
    sample.pred_instances = preds([[0, 0, 10, 10]], [0.5], [0])
    with pytest.raises(KeyError, match='flip'):
        tta_model().merge_preds([[sample]])


def test_test_step_runs_the_detector_per_view_and_merges_per_image():
    """mmengine's BaseTTAModel splits the batch by view; two images, two views each."""
    detector = ViewDetector({True: preds([[10, 20, 40, 60]], [0.9], [0]),
                             False: preds([[60, 20, 90, 60]], [0.4], [0])})
    model = tta_model(detector=detector)

    def meta_only(flip):
        return DetDataSample(metainfo=dict(ori_shape=(H, W), flip=flip,
                                           flip_direction='horizontal' if flip else None))

    # as pseudo_collate lays out TestTimeAug's output: outer list the views, inner the images
    inputs = [[torch.zeros(3, H, W)] * 2, [torch.zeros(3, H, W)] * 2]
    data = dict(inputs=inputs, data_samples=[[meta_only(True), meta_only(True)],
                                             [meta_only(False), meta_only(False)]])
    results = model.test_step(data)
    assert len(detector.seen) == 2  # one detector call per view, with both images
    assert [s.flip for s in detector.seen[0]['data_samples']] == [True, True]
    assert len(results) == 2
    for result in results:  # both views agree after the flip-back: one box survives
        assert result.pred_instances.bboxes.tolist() == [[60, 20, 90, 60]]
        assert result.pred_instances.scores.tolist() == pytest.approx([0.9])
