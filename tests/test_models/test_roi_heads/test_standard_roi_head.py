"""StandardRoIHead on its own: losses, raw outputs and predictions from given proposals."""
import copy

import pytest
import torch
from helpers import (assert_finite_losses, init_weights_quietly, make_det_sample,
                     tiny_two_stage_cfg)
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.registry import MODELS

FPN = 16  # channels of the tiny FPN in helpers.tiny_two_stage_cfg
STRIDES = [4, 8, 16, 32, 64]


def make_roi_head(with_mask: bool = True, **overrides):
    cfg = tiny_two_stage_cfg(with_mask=with_mask)
    head_cfg = copy.deepcopy(cfg['roi_head'])
    head_cfg.update(train_cfg=ConfigDict(cfg['train_cfg']['rcnn']),
                    test_cfg=ConfigDict(cfg['test_cfg']['rcnn']))
    head_cfg.update(overrides)
    head = MODELS.build(head_cfg)
    init_weights_quietly(head)
    return head


def make_feats(batch: int = 1, img: int = 64):
    return tuple(torch.rand(batch, FPN, max(img // s, 1), max(img // s, 1)) for s in STRIDES)


def proposals(bboxes):
    bboxes = torch.as_tensor(bboxes, dtype=torch.float32).reshape(-1, 4)
    return InstanceData(bboxes=bboxes, scores=torch.ones(len(bboxes)))


def test_loss_keys_and_finite_values():
    head = make_roi_head()
    sample = make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2], with_mask=True)
    props = proposals([[10, 10, 40, 40], [0, 0, 20, 20], [30, 22, 58, 50], [40, 0, 63, 20]])
    losses = head.loss(make_feats(), [props], [sample])
    assert set(losses) == {'loss_cls', 'acc', 'loss_bbox', 'loss_mask'}
    assert_finite_losses(losses)
    assert losses['loss_mask'].item() > 0


def test_zero_area_gt_boxes_are_left_out_of_the_losses():
    # The sampler adds each GT as a positive proposal; a zero-area one would encode to NaN.
    head = make_roi_head()
    feats, props = make_feats(), [proposals([[20, 20, 40, 36]])]
    sample = make_det_sample([[10, 10, 10, 30], [5, 5, 5, 5], [20, 20, 40, 36]], [0, 1, 2],
                             with_mask=True)
    torch.manual_seed(3)  # the same sampler draws for both calls
    losses = head.loss(feats, props, [sample])
    assert_finite_losses(losses)
    # Exactly the losses of the image holding only the box with an area.
    torch.manual_seed(3)
    clean = head.loss(feats, props, [make_det_sample([[20, 20, 40, 36]], [2], with_mask=True)])
    assert set(losses) == set(clean) == {'loss_cls', 'acc', 'loss_bbox', 'loss_mask'}
    for name in clean:
        torch.testing.assert_close(losses[name], clean[name], msg=name)
    assert losses['loss_mask'].item() > 0 and losses['loss_cls'].item() > 0


def test_tensor_forward_returns_raw_outputs_with_at_most_100_mask_rois():
    head = make_roi_head()
    boxes = torch.rand(120, 2) * 40
    props = proposals(torch.cat([boxes, boxes + 20], 1))
    cls_score, bbox_pred, mask_preds = head.forward(make_feats(), [props])
    assert cls_score.shape == (120, 4)  # 3 classes + background
    assert bbox_pred.shape == (120, 12)
    assert mask_preds.shape == (100, 3, 28, 28)


def test_predict_gives_detections_in_the_original_image():
    head = make_roi_head()
    sample = make_det_sample(img_shape=(64, 64), ori_shape=(128, 96),
                             scale_factor=(1.5, 0.5))
    props = proposals([[8, 8, 40, 40], [30, 20, 60, 50]])
    res = head.predict(make_feats(), [props], [sample], rescale=True)[0]
    assert len(res) > 0
    assert res.masks.shape == (len(res), 128, 96)
    assert res.masks.dtype == torch.bool
    assert (res.bboxes[:, [0, 2]] <= 96 + 1e-4).all()
    assert (res.bboxes[:, [1, 3]] <= 128 + 1e-4).all()


def test_predict_with_no_proposals_is_empty():
    head = make_roi_head()
    sample = make_det_sample(img_shape=(64, 64), ori_shape=(32, 32), scale_factor=(2., 2.))
    res = head.predict(make_feats(), [proposals([])], [sample], rescale=True)[0]
    assert res.bboxes.shape == (0, 4)
    assert res.labels.shape == (0, )
    assert res.masks.shape == (0, 32, 32)


def test_shared_extractor_reuses_the_box_extractor():
    # 7x7 box features give 14x14 masks, so the targets are 14x14 too.
    train_cfg = ConfigDict(tiny_two_stage_cfg(with_mask=True)['train_cfg']['rcnn'],
                           mask_size=14)
    head = make_roi_head(share_roi_extractor=True, train_cfg=train_cfg)
    assert head.mask_roi_extractor is head.bbox_roi_extractor
    assert head.forward(make_feats(), [proposals([[8, 8, 40, 40]])])[2].shape == (1, 3, 14, 14)
    sample = make_det_sample([[8, 8, 40, 40]], [1], with_mask=True)
    losses = head.loss(make_feats(), [proposals([[8, 8, 40, 40]])], [sample])
    assert_finite_losses(losses)


def test_faster_rcnn_head_has_no_mask_branch():
    head = make_roi_head(with_mask=False)
    assert head.with_bbox and not head.with_mask
    sample = make_det_sample([[8, 8, 40, 40]], [1])
    assert set(head.loss(make_feats(), [proposals([[9, 9, 40, 40]])], [sample])) == {
        'loss_cls', 'acc', 'loss_bbox'}


def test_unsupported_configs_are_rejected():
    with pytest.raises(ValueError, match='needs bbox_head'):
        make_roi_head(bbox_head=None)
