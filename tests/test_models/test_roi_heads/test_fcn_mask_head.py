"""FCNMaskHead: shapes, training targets and loss, pasting masks into the image."""
import math
from types import SimpleNamespace

import pytest
import torch
from helpers import box_masks, init_weights_quietly
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.roi_heads import FCNMaskHead
from mmdet_lite.models.roi_heads.mask_heads import paste_masks_in_image

TRAIN_CFG = ConfigDict(mask_size=28)
TEST_CFG = ConfigDict(mask_thr_binary=0.5)


def make_head(num_classes: int = 3, **kwargs) -> FCNMaskHead:
    head = FCNMaskHead(num_convs=2, in_channels=4, conv_out_channels=4,
                       num_classes=num_classes, **kwargs)
    init_weights_quietly(head)
    return head


def positives(priors, gt_inds, labels):
    """What the mask head reads from a ``SamplingResult``."""
    return SimpleNamespace(pos_priors=torch.tensor(priors, dtype=torch.float32),
                           pos_assigned_gt_inds=torch.tensor(gt_inds),
                           pos_gt_labels=torch.tensor(labels))


# ----------------------------------------------------------------------------- layers


def test_coco_head_shapes_and_keys():
    head = FCNMaskHead(num_classes=80)
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    expected = {}
    for i in range(4):
        expected.update({f'convs.{i}.conv.weight': (256, 256, 3, 3),
                         f'convs.{i}.conv.bias': (256, )})
    expected.update({'upsample.weight': (256, 256, 2, 2), 'upsample.bias': (256, ),
                     'conv_logits.weight': (80, 256, 1, 1), 'conv_logits.bias': (80, )})
    assert shapes == expected
    assert head(torch.rand(2, 256, 14, 14)).shape == (2, 80, 28, 28)


def test_class_agnostic_and_interpolation_upsampling():
    assert make_head(class_agnostic=True)(torch.rand(3, 4, 14, 14)).shape == (3, 1, 28, 28)
    head = make_head(upsample_cfg=dict(type='bilinear', scale_factor=2))
    assert 'upsample.weight' not in head.state_dict()
    assert head(torch.rand(1, 4, 14, 14)).shape == (1, 3, 28, 28)
    with pytest.raises(ValueError, match='upsample_cfg.type must be one of'):
        make_head(upsample_cfg=dict(type='carafe'))


# ----------------------------------------------------------------------------- training


def test_mask_target_of_a_proposal_equal_to_its_gt_rectangle_is_all_ones():
    gt = InstanceData(masks=box_masks([[8, 10, 40, 30]], 64, 64))
    res = positives([[8, 10, 40, 30]], [0], [2])
    mask_preds = torch.zeros(1, 3, 28, 28)
    out = make_head().loss_and_target(mask_preds, [res], [gt], TRAIN_CFG)
    assert out['mask_targets'].shape == (1, 28, 28)
    assert (out['mask_targets'] == 1).all()
    # Zero logits: BCE is ln 2 at every pixel.
    assert out['loss_mask']['loss_mask'].item() == pytest.approx(math.log(2), abs=1e-6)


def test_mask_target_of_a_larger_proposal_is_the_gt_part_of_it():
    # GT fills the left half of the proposal: the 28 target columns split 14 / 14.
    gt = InstanceData(masks=box_masks([[0, 0, 32, 64]], 64, 64))
    res = positives([[0, 0, 64, 64]], [0], [0])
    target = make_head().loss_and_target(torch.zeros(1, 3, 28, 28), [res], [gt],
                                         TRAIN_CFG)['mask_targets'][0]
    assert (target[:, :14] == 1).all()
    assert (target[:, 14:] == 0).all()


def test_loss_reads_the_gt_class_channel():
    gt = InstanceData(masks=box_masks([[8, 10, 40, 30]], 64, 64))
    res = positives([[8, 10, 40, 30]], [0], [1])
    mask_preds = torch.full((1, 3, 28, 28), -20.0)
    mask_preds[0, 1] = 20.0  # confident and right on class 1, wrong on the others
    loss = make_head().loss_and_target(mask_preds, [res], [gt], TRAIN_CFG)['loss_mask']
    assert loss['loss_mask'].item() == pytest.approx(0.0, abs=1e-6)


def test_no_positives_gives_zero_loss():
    gt = InstanceData(masks=box_masks([], 64, 64))
    res = positives([], [], [])
    res.pos_priors = res.pos_priors.reshape(0, 4)
    mask_preds = torch.zeros(0, 3, 28, 28, requires_grad=True)
    out = make_head().loss_and_target(mask_preds, [res], [gt], TRAIN_CFG)
    assert out['mask_targets'].shape == (0, 28, 28)
    assert out['loss_mask']['loss_mask'].item() == 0


# ----------------------------------------------------------------------------- predict


def test_paste_all_ones_fills_exactly_the_box():
    masks = paste_masks_in_image(torch.ones(1, 28, 28), torch.tensor([[10., 10., 30., 20.]]),
                                 img_h=40, img_w=50, threshold=0.5)
    expected = torch.zeros(1, 40, 50, dtype=torch.bool)
    expected[0, 10:20, 10:30] = True
    assert masks.dtype == torch.bool
    assert torch.equal(masks, expected)


def test_paste_clips_boxes_leaving_the_image():
    boxes = torch.tensor([[-10., -10., 5., 5.], [45., 30., 70., 60.]])
    masks = paste_masks_in_image(torch.ones(2, 28, 28), boxes, img_h=40, img_w=50,
                                 threshold=0.5)
    expected = torch.zeros(2, 40, 50, dtype=torch.bool)
    expected[0, :5, :5] = True
    expected[1, 30:, 45:] = True
    assert torch.equal(masks, expected)


def test_paste_with_negative_threshold_gives_bilinear_probabilities():
    # Box rows 30..60 hold 28 mask cells of 30/28 px. Pixel row 29 (centre 29.5) lies
    # 0.5 px = 0.467 cells before the box: the sample point is 0.967 cells before the first
    # cell centre, so it gets 1/30 of its value; row 30 gets 29/30.
    boxes = torch.tensor([[45., 30., 70., 60.]])
    probs = paste_masks_in_image(torch.full((1, 28, 28), 0.75), boxes, img_h=40, img_w=50,
                                 threshold=-1)[0]
    assert probs.dtype == torch.float32
    assert probs[29, 47].item() == pytest.approx(0.75 / 30, abs=1e-5)
    assert probs[30, 47].item() == pytest.approx(0.75 * 29 / 30, abs=1e-5)
    torch.testing.assert_close(probs[31:, 46:], torch.full((9, 4), 0.75))
    assert probs[:29].sum() == 0 and probs[:, :44].sum() == 0


def test_predict_rescales_boxes_and_masks_to_the_original_image():
    head = make_head()
    results = InstanceData(bboxes=torch.tensor([[10., 10., 30., 20.]]),
                           labels=torch.tensor([2]), scores=torch.tensor([0.9]))
    mask_preds = torch.full((1, 3, 28, 28), -10.0)
    mask_preds[0, 2] = 10.0  # only the predicted class's channel is used
    meta = dict(img_shape=(40, 50), ori_shape=(80, 100), scale_factor=(0.5, 0.5))
    res = head.predict_by_feat((mask_preds, ), [results], [meta], TEST_CFG, rescale=True)[0]
    torch.testing.assert_close(res.bboxes, torch.tensor([[20., 20., 60., 40.]]))
    expected = torch.zeros(1, 80, 100, dtype=torch.bool)
    expected[0, 20:40, 20:60] = True
    assert torch.equal(res.masks, expected)


def test_predict_without_rescale_uses_the_input_image_and_handles_no_detections():
    head = make_head()
    meta = dict(img_shape=(40, 50), ori_shape=(80, 100), scale_factor=(0.5, 0.5))
    results = InstanceData(bboxes=torch.tensor([[10., 10., 30., 20.]]),
                           labels=torch.tensor([0]))
    res = head.predict_by_feat((torch.full((1, 3, 28, 28), 10.0), ), [results], [meta],
                               TEST_CFG, rescale=False)[0]
    assert res.masks.shape == (1, 40, 50)
    assert res.masks.sum() == 20 * 10
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    res = head.predict_by_feat((torch.zeros(0, 3, 28, 28), ), [empty], [meta], TEST_CFG,
                               rescale=True)[0]
    assert res.masks.shape == (0, 80, 100) and res.masks.dtype == torch.bool
