"""merge_aug_* helpers (mmdetection 3.3's ``mmdet.models.test_time_augs.merge_augs``).

A view's boxes are mapped back by undoing its flip inside ``img_shape`` (the augmented
image), then dividing by ``scale_factor``. Expected values are worked out by hand.
"""
import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.test_time_augs import (MergeAugsArgumentError, merge_aug_bboxes,
                                              merge_aug_masks, merge_aug_proposals,
                                              merge_aug_results, merge_aug_scores)


def meta(flip=False, scale=1.0, img_shape=(80, 100), direction='horizontal'):
    return dict(img_shape=img_shape, scale_factor=(scale, scale), flip=flip,
                flip_direction=direction)


def test_exported_from_models_like_mmdetection():
    import mmdet_lite.models as models
    assert models.merge_aug_bboxes is merge_aug_bboxes
    assert models.DetTTAModel.__name__ == 'DetTTAModel'


def test_merge_aug_bboxes_maps_back_and_averages():
    plain = torch.tensor([[10., 20., 30., 40.]])
    # the same box on a 2x image (200 wide), flipped: x1' = 200 - 60, x2' = 200 - 20
    flipped_2x = torch.tensor([[140., 40., 180., 80.]])
    scores = [torch.tensor([[0.2, 0.8]]), torch.tensor([[0.4, 0.6]])]
    bboxes, merged_scores = merge_aug_bboxes(
        [plain, flipped_2x], scores,
        [[meta()], [meta(flip=True, scale=2.0, img_shape=(160, 200))]], rcnn_test_cfg=None)
    torch.testing.assert_close(bboxes, torch.tensor([[10., 20., 30., 40.]]))
    torch.testing.assert_close(merged_scores, torch.tensor([[0.3, 0.7]]))
    only_boxes = merge_aug_bboxes([plain, plain + 2], None, [[meta()], [meta()]], None)
    torch.testing.assert_close(only_boxes, plain + 1)


def test_merge_aug_proposals_nms_then_keeps_max_per_img():
    view1 = torch.tensor([[0., 0., 10., 10., 0.9], [50., 50., 60., 60., 0.3]])
    # on a flipped 100-wide image: [90, 0, 100, 10] is [0, 0, 10, 10] back on the original
    view2 = torch.tensor([[90., 0., 100., 10., 0.8], [20., 20., 30., 30., 0.5]])
    cfg = dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=2)
    merged = merge_aug_proposals([view1, view2], [meta(), meta(flip=True)], cfg)
    # the 0.8 duplicate is suppressed; of the three left the two best stay
    torch.testing.assert_close(merged, torch.tensor([[0., 0., 10., 10., 0.9],
                                                     [70., 20., 80., 30., 0.5]]))
    assert view2[0, 0] == 90  # the inputs are not modified


def test_merge_aug_proposals_reads_deprecated_keys_with_a_warning():
    proposals = torch.tensor([[0., 0., 10., 10., 0.9], [1., 0., 11., 10., 0.8],
                              [40., 40., 50., 50., 0.7]])
    with pytest.warns(UserWarning, match='deprecated'):
        merged = merge_aug_proposals([proposals], [meta()], ConfigDict(nms_thr=0.5, max_num=5))
    assert merged[:, 4].tolist() == pytest.approx([0.9, 0.7])


@pytest.mark.parametrize('cfg', [
    dict(nms=dict(type='nms', iou_threshold=0.5), max_num=3, max_per_img=4),
    dict(nms=dict(type='nms', iou_threshold=0.5), nms_thr=0.7, max_per_img=4),
])
def test_merge_aug_proposals_rejects_disagreeing_deprecated_keys(cfg):
    proposals = torch.tensor([[0., 0., 10., 10., 0.9]])
    with pytest.warns(UserWarning), pytest.raises(MergeAugsArgumentError) as info:
        merge_aug_proposals([proposals], [meta()], cfg)
    assert isinstance(info.value, AssertionError)


def test_merge_aug_results_maps_back_and_concatenates_per_image():
    def results(boxes):
        return InstanceData(bboxes=torch.tensor(boxes), scores=torch.ones(len(boxes)),
                            labels=torch.zeros(len(boxes), dtype=torch.long))

    view1 = [results([[10., 20., 30., 40.]]), results([[0., 0., 5., 5.]])]
    view2 = [results([[140., 40., 180., 80.]]), results([[2., 2., 4., 4.]])]
    metas = [[meta(), meta()], [meta(flip=True, scale=2.0, img_shape=(160, 200)),
                                meta(scale=2.0, img_shape=(160, 200))]]
    merged = merge_aug_results([view1, view2], metas)
    assert [m.bboxes.tolist() for m in merged] == [
        [[10., 20., 30., 40.], [10., 20., 30., 40.]],
        [[0., 0., 5., 5.], [1., 1., 2., 2.]]]
    assert view2[0].bboxes.tolist() == [[140., 40., 180., 80.]]  # inputs untouched


def test_merge_aug_scores_tensors_and_arrays():
    torch.testing.assert_close(merge_aug_scores([torch.tensor([0.2, 1.0]),
                                                 torch.tensor([0.4, 0.0])]),
                               torch.tensor([0.3, 0.5]))
    np.testing.assert_allclose(merge_aug_scores([np.array([1., 2.]), np.array([3., 6.])]),
                               [2., 4.])


def test_merge_aug_masks_weighted_mean():
    a, b = torch.full((1, 1, 2, 2), 1.0), torch.full((1, 1, 2, 2), 4.0)
    torch.testing.assert_close(merge_aug_masks([a, b], {}), torch.full((1, 1, 2, 2), 2.5))
    # weights 1 and 3: (1 * 1 + 3 * 4) / 4
    torch.testing.assert_close(merge_aug_masks([a, b], {}, weights=[1, 3]),
                               torch.full((1, 1, 2, 2), 13 / 4))
    with pytest.raises(MergeAugsArgumentError) as info:
        merge_aug_masks([a, b], {}, weights=[1])
    assert isinstance(info.value, AssertionError)


def test_merge_aug_masks_flips_back():
    mask = torch.arange(6.).reshape(1, 1, 2, 3)
    horizontal = merge_aug_masks([mask], dict(flip=True, flip_direction='horizontal'))
    assert horizontal[0, 0].tolist() == [[2., 1., 0.], [5., 4., 3.]]
    vertical = merge_aug_masks([mask], dict(flip=True, flip_direction='vertical'))
    assert vertical[0, 0].tolist() == [[3., 4., 5.], [0., 1., 2.]]
    diagonal = merge_aug_masks([mask], dict(flip=True, flip_direction='diagonal'))
    assert diagonal[0, 0].tolist() == [[5., 4., 3.], [2., 1., 0.]]
    with pytest.raises(ValueError, match='flip_direction'):
        merge_aug_masks([mask], dict(flip=True, flip_direction='sideways'))
