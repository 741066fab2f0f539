"""Awkward ground truth must not crash training or put NaN into any loss or gradient."""
import pytest
import torch
from helpers import (assert_finite_losses, build_detector, make_batch, make_det_sample,
                     tiny_two_stage_cfg)


def train_once(samples, with_mask: bool, cfg=None, seed=None, return_model=False):
    """One loss + backward on a tiny model; returns the losses after checking gradients.

    With ``seed``, the weights and the RoI sampler's draws follow ``torch.manual_seed(seed)``,
    so two calls with the same seed see the same model and differ only by their samples.
    With ``return_model``, returns ``(losses, model)`` for checks on the gradients.
    """
    if seed is not None:
        torch.manual_seed(seed)
    model = build_detector(cfg or tiny_two_stage_cfg(with_mask=with_mask)).train()
    data = model.data_preprocessor(make_batch(samples), True)
    losses = model(**data, mode='loss')
    assert_finite_losses(losses)
    total, _ = model.parse_losses(losses)
    total.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    return (losses, model) if return_model else losses


@pytest.fixture(params=[False, True], ids=['faster_rcnn', 'mask_rcnn'])
def with_mask(request):
    return request.param


def test_image_without_boxes(with_mask):
    samples = [make_det_sample([], [], with_mask=with_mask),
               make_det_sample([[8, 8, 40, 40]], [1], with_mask=with_mask)]
    train_once(samples, with_mask)
    # A batch with no box at all: nothing positive, so box and mask losses are zero.
    losses = train_once([make_det_sample([], [], with_mask=with_mask)], with_mask)
    assert losses['loss_bbox'].item() == 0
    assert sum(losses['loss_rpn_bbox']).item() == 0
    if with_mask:
        assert losses['loss_mask'].item() == 0


def test_boxes_partly_or_fully_outside_the_image(with_mask):
    boxes = [[-20, -20, 10, 10], [50, 50, 100, 100], [70, 70, 90, 90], [-30, 10, -5, 30]]
    losses, model = train_once([make_det_sample(boxes, [0, 1, 2, 0], with_mask=with_mask)],
                               with_mask, return_model=True)
    # Like mmdetection, the model keeps boxes reaching out of the image as they are (the
    # pipeline clips them): the two boxes overlapping the 64x64 image get positives in
    # both stages, so box regression really ran, and its gradient reached both regressors.
    assert sum(losses['loss_rpn_bbox']).item() > 0
    assert losses['loss_bbox'].item() > 0
    assert 0 < losses['acc'].item() <= 100
    assert model.rpn_head.rpn_reg.weight.grad.abs().sum() > 0
    assert model.roi_head.bbox_head.fc_reg.weight.grad.abs().sum() > 0
    if with_mask:
        assert losses['loss_mask'].item() > 0


def test_zero_area_boxes(with_mask):
    """Boxes without area are left out of every target: the losses are those without them.

    (They paint no pixel in ``make_batch`` either, so both batches hold the same image.)
    """
    boxes = [[10, 10, 10, 30], [5, 5, 5, 5], [20, 20, 40, 20], [30, 30, 50, 46]]
    losses = train_once([make_det_sample(boxes, [0, 1, 2, 1], with_mask=with_mask)],
                        with_mask, seed=1)
    clean = train_once([make_det_sample(boxes[3:], [1], with_mask=with_mask)], with_mask,
                       seed=1)
    assert set(losses) == set(clean)
    for name in clean:
        torch.testing.assert_close(losses[name], clean[name], msg=name)
    assert losses['loss_bbox'].item() > 0  # the one real box is still learned from
    # Only degenerate boxes in the image: the same as an image without any box.
    losses = train_once([make_det_sample(boxes[:3], [0, 1, 2], with_mask=with_mask)],
                        with_mask, seed=1)
    empty = train_once([make_det_sample([], [], with_mask=with_mask)], with_mask, seed=1)
    for name in empty:
        torch.testing.assert_close(losses[name], empty[name], msg=name)
    assert losses['loss_bbox'].item() == 0 and sum(losses['loss_rpn_bbox']).item() == 0


def test_more_ground_truths_than_proposals(with_mask):
    cfg = tiny_two_stage_cfg(with_mask=with_mask)
    cfg['train_cfg']['rpn_proposal']['max_per_img'] = 5
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(50, 2, generator=generator) * 48
    sizes = torch.rand(50, 2, generator=generator) * 14 + 2
    boxes = torch.cat([corners, corners + sizes], 1)
    labels = [i % 3 for i in range(50)]
    losses = train_once([make_det_sample(boxes, labels, with_mask=with_mask)], with_mask, cfg)
    assert losses['loss_cls'].item() > 0


def test_image_whose_boxes_are_all_ignored(with_mask):
    cfg = tiny_two_stage_cfg(with_mask=with_mask)
    cfg['train_cfg']['rpn']['assigner']['ignore_iof_thr'] = 0.5
    cfg['train_cfg']['rcnn']['assigner']['ignore_iof_thr'] = 0.5
    sample = make_det_sample([], [], with_mask=with_mask,
                             ignored_bboxes=[[8, 8, 40, 40], [30, 20, 60, 50]])
    losses = train_once([sample], with_mask, cfg)
    assert losses['loss_bbox'].item() == 0
