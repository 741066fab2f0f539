"""Faster / Mask R-CNN forward in 'loss', 'predict' and 'tensor' modes (tiny models)."""
import pytest
import torch
from helpers import (assert_finite_losses, build_detector, make_batch, make_det_sample,
                     tiny_two_stage_cfg)
from mmengine.structures import InstanceData

from mmdet_lite.models.detectors import FasterRCNN, MaskRCNN
from mmdet_lite.structures import DetDataSample

LOSS_KEYS = {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_bbox'}


def training_samples(with_mask: bool):
    return [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2], with_mask=with_mask),
            make_det_sample([[0, 0, 63, 31]], [1], with_mask=with_mask)]


def resized_samples():
    """64x64 inputs resized from 128x128 (first) and 96x128 (second) originals."""
    return [make_det_sample(img_shape=(64, 64), ori_shape=(128, 128), scale_factor=(0.5, 0.5)),
            make_det_sample(img_shape=(64, 64), ori_shape=(96, 128),
                            scale_factor=(0.5, 2 / 3))]


@pytest.fixture(params=[False, True], ids=['faster_rcnn', 'mask_rcnn'])
def with_mask(request):
    return request.param


def test_config_types_build_the_right_classes(with_mask):
    model = build_detector(tiny_two_stage_cfg(with_mask=with_mask))
    assert type(model) is (MaskRCNN if with_mask else FasterRCNN)
    assert model.with_rpn and model.with_roi_head and model.with_neck
    assert model.roi_head.with_mask == with_mask


def test_loss_mode_returns_the_mmdet_loss_keys(with_mask):
    model = build_detector(tiny_two_stage_cfg(with_mask=with_mask)).train()
    data = model.data_preprocessor(make_batch(training_samples(with_mask)), True)
    losses = model(**data, mode='loss')
    assert set(losses) == (LOSS_KEYS | {'loss_mask'} if with_mask else LOSS_KEYS)
    assert len(losses['loss_rpn_cls']) == 5  # one per FPN level, as mmdet logs them
    assert_finite_losses(losses)
    total, log_vars = model.parse_losses(losses)
    assert 'acc' in log_vars and total.requires_grad


def test_predict_mode_returns_samples_in_original_image_pixels(with_mask):
    model = build_detector(tiny_two_stage_cfg(with_mask=with_mask)).eval()
    with torch.no_grad():
        results = model.test_step(make_batch(resized_samples()))
    assert len(results) == 2 and all(isinstance(r, DetDataSample) for r in results)
    for result, (ori_h, ori_w) in zip(results, [(128, 128), (96, 128)]):
        pred = result.pred_instances
        num = len(pred)
        assert 0 < num <= 20  # max_per_img of the tiny config
        assert pred.bboxes.shape == (num, 4) and pred.bboxes.dtype == torch.float32
        assert pred.scores.shape == (num, ) and pred.labels.dtype == torch.int64
        assert ((pred.labels >= 0) & (pred.labels < 3)).all()
        assert (pred.bboxes >= 0).all()
        assert (pred.bboxes[:, [0, 2]] <= ori_w).all() and (pred.bboxes[:, [1, 3]] <= ori_h).all()
        if with_mask:
            assert pred.masks.shape == (num, ori_h, ori_w)
            assert pred.masks.dtype == torch.bool
        else:
            assert 'masks' not in pred


def test_rescale_divides_boxes_by_the_scale_factor(with_mask):
    model = build_detector(tiny_two_stage_cfg(with_mask=with_mask)).eval()
    data = model.data_preprocessor(make_batch(resized_samples()[:1]), False)
    with torch.no_grad():
        resized = model.predict(data['inputs'], data['data_samples'], rescale=False)
        resized = resized[0].pred_instances.clone()
        original = model.predict(data['inputs'], data['data_samples'])[0].pred_instances
    torch.testing.assert_close(original.bboxes, resized.bboxes * 2)
    assert torch.equal(original.labels, resized.labels)
    if with_mask:
        assert resized.masks.shape[-2:] == (64, 64)
        assert original.masks.shape[-2:] == (128, 128)


def test_tensor_mode_returns_raw_tuples(with_mask):
    model = build_detector(tiny_two_stage_cfg(with_mask=with_mask)).eval()
    data = model.data_preprocessor(make_batch(training_samples(with_mask)), False)
    with torch.no_grad():
        # mmdetection 3.3 returns the RoI head's outputs only: (roi_outs, )
        (roi_outs, ) = model(data['inputs'], data['data_samples'], mode='tensor')
        # Without data samples the input shape stands in for the image shape.
        assert len(model(data['inputs'], mode='tensor')) == 1
    assert isinstance(roi_outs, tuple) and len(roi_outs) == (3 if with_mask else 2)
    num_rois = roi_outs[0].shape[0]
    assert roi_outs[0].shape == (num_rois, 4) and roi_outs[1].shape == (num_rois, 12)
    if with_mask:
        assert roi_outs[2].shape == (min(num_rois, 100), 3, 28, 28)


def test_invalid_mode_is_rejected():
    model = build_detector(tiny_two_stage_cfg())
    with pytest.raises(ValueError, match="Invalid mode 'train'"):
        model(torch.zeros(1, 3, 64, 64), mode='train')


def test_without_rpn_the_samples_carry_the_proposals():
    cfg = tiny_two_stage_cfg()
    cfg['rpn_head'] = None
    model = build_detector(cfg)
    assert not model.with_rpn
    samples = training_samples(with_mask=False)
    for sample in samples:
        boxes = torch.cat([sample.gt_instances.bboxes + 2, torch.tensor([[0., 0., 30., 30.]])])
        sample.proposals = InstanceData(bboxes=boxes, scores=torch.ones(len(boxes)))
    data = model.data_preprocessor(make_batch(samples), True)
    losses = model.train()(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'acc', 'loss_bbox'}
    with torch.no_grad():
        results = model.eval()(**data, mode='predict')
    assert all(len(r.pred_instances) > 0 for r in results)
