"""A few SGD steps on a fixed batch lower Faster / Mask R-CNN's losses (tiny models).

The loss a two-stage detector reports while training is not monotone even when it learns:
as the RPN improves, more sampled proposals become positives and add box-regression terms.
So the progress check evaluates the same losses on a *fixed* set of proposals (and a fixed
sampling seed) before and after training: a deterministic function of the weights.
"""
import pytest
import torch
from helpers import build_detector, make_batch, make_det_sample, tiny_two_stage_cfg
from mmengine.structures import InstanceData

STEPS = 15


def fixed_proposals(gt_bboxes: torch.Tensor) -> InstanceData:
    """Shifted copies of the GT boxes plus a grid of 24 px boxes over the 64x64 image."""
    grid = torch.tensor([[x, y, x + 24, y + 24] for x in range(0, 48, 8)
                         for y in range(0, 48, 8)], dtype=torch.float32)
    boxes = torch.cat([gt_bboxes + torch.tensor([3., -2., 2., 3.]),
                       gt_bboxes + torch.tensor([-4., 2., -3., -2.]), grid])
    return InstanceData(bboxes=boxes.clamp(0, 64))


def objective(model, data, proposals) -> dict:
    """RPN losses plus RoI-head losses on the fixed proposals, with a fixed sampling seed."""
    torch.manual_seed(0)
    with torch.no_grad():
        x = model.extract_feat(data['inputs'])
        losses = model.rpn_head.loss(x, data['data_samples'])
        losses.update(model.roi_head.loss(x, proposals, data['data_samples']))
    return model.parse_losses(losses)[1]


@pytest.mark.parametrize('with_mask', [False, True], ids=['faster_rcnn', 'mask_rcnn'])
def test_sgd_steps_reduce_the_loss(with_mask):
    model = build_detector(tiny_two_stage_cfg(with_mask=with_mask)).train()
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2], with_mask=with_mask),
               make_det_sample([[4, 30, 36, 62]], [1], with_mask=with_mask)]
    data = model.data_preprocessor(make_batch(samples), True)
    proposals = [fixed_proposals(s.gt_instances.bboxes) for s in data['data_samples']]
    before = objective(model, data, proposals)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(STEPS):
        total, _ = model.parse_losses(model(**data, mode='loss'))
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    after = objective(model, data, proposals)

    assert after['loss'] < 0.75 * before['loss']
    assert after['loss_rpn_cls'] < before['loss_rpn_cls']
    assert after['loss_cls'] < before['loss_cls']
    assert after['acc'] > before['acc']
    if with_mask:
        assert after['loss_mask'] < before['loss_mask']
