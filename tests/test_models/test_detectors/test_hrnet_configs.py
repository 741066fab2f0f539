"""The HRNet Faster / Mask R-CNN configs: mmdetection 3.3's values, its state_dict keys, and
loss / predict on a small image.

Expected values are written out from mmdetection's ``configs/hrnet`` files, expected keys
from its HRNet / HRFPN / R-CNN head definitions (tests/helpers_hrnet_keys.py).
"""
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses, init_weights_quietly, make_batch, make_det_sample
from helpers_hrnet_keys import hrfpn, hrnet, rcnn_heads
from helpers_state_dict import shapes_of
from mmengine.config import Config

from mmdet_lite.models.backbones import HRNet
from mmdet_lite.models.necks import HRFPN
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
HRNET = CONFIGS / 'hrnet'

W32_EXTRA = dict(
    stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(4, ),
                num_channels=(64, )),
    stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(4, 4),
                num_channels=(32, 64)),
    stage3=dict(num_modules=4, num_branches=3, block='BASIC', num_blocks=(4, 4, 4),
                num_channels=(32, 64, 128)),
    stage4=dict(num_modules=3, num_branches=4, block='BASIC', num_blocks=(4, 4, 4, 4),
                num_channels=(32, 64, 128, 256)))
W18_EXTRA = dict(
    W32_EXTRA,
    stage2=dict(W32_EXTRA['stage2'], num_channels=(18, 36)),
    stage3=dict(W32_EXTRA['stage3'], num_channels=(18, 36, 72)),
    stage4=dict(W32_EXTRA['stage4'], num_channels=(18, 36, 72, 144)))

# (file, base detector config, width, detector type)
CASES = [
    ('faster-rcnn_hrnetv2p-w32-1x_coco.py', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', 32),
    ('faster-rcnn_hrnetv2p-w18-1x_coco.py', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', 18),
    ('mask-rcnn_hrnetv2p-w32-1x_coco.py', 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', 32),
    ('mask-rcnn_hrnetv2p-w18-1x_coco.py', 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', 18),
]
TWO_X = ['faster-rcnn_hrnetv2p-w18-2x_coco.py', 'faster-rcnn_hrnetv2p-w32_2x_coco.py',
         'mask-rcnn_hrnetv2p-w18-2x_coco.py', 'mask-rcnn_hrnetv2p-w32-2x_coco.py']


def load(path) -> Config:
    register_all_modules()
    return Config.fromfile(str(path))


@pytest.mark.parametrize('name,base,width', CASES)
def test_model_values_are_mmdetections(name, base, width):
    cfg = load(HRNET / name)
    channels = [width * 2**k for k in range(4)]
    # _delete_ drops every ResNet argument: the backbone is exactly the HRNet dict.
    assert cfg.model.backbone == dict(
        type='HRNet', extra=W32_EXTRA if width == 32 else W18_EXTRA,
        init_cfg=dict(type='Pretrained', checkpoint=f'open-mmlab://msra/hrnetv2_w{width}'))
    assert cfg.model.neck == dict(type='HRFPN', in_channels=channels, out_channels=256)
    # Everything else is the ResNet-50 FPN detector's.
    reference = load(CONFIGS / base)
    for key in ('type', 'data_preprocessor', 'rpn_head', 'roi_head', 'train_cfg', 'test_cfg'):
        assert cfg.model[key] == reference.model[key], key
    assert cfg.train_cfg == reference.train_cfg and cfg.param_scheduler == \
        reference.param_scheduler


@pytest.mark.parametrize('name', TWO_X)
def test_2x_schedules(name):
    cfg = load(HRNET / name)
    one_x = load(HRNET / name.replace('-2x', '-1x').replace('_2x', '-1x'))
    assert cfg.model == one_x.model
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=1)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22],
             gamma=0.1)]


def expected_keys(width: int, with_mask: bool) -> dict:
    return {**hrnet('backbone', width),
            **hrfpn('neck', [width * 2**k for k in range(4)]),
            **rcnn_heads(with_mask)}


def test_expected_key_counts():
    # W18 backbone 1830 + HRFPN 12 (1x1 reduction + 5 3x3 convs) + RPN 6 + box head 8.
    assert len(expected_keys(18, False)) == 1856
    assert len(expected_keys(18, True)) == 1856 + 12


@pytest.mark.parametrize('name,base,width', CASES)
def test_state_dict_keys_and_shapes(name, base, width):
    model = MODELS.build(load(HRNET / name).model)
    assert isinstance(model.backbone, HRNet) and isinstance(model.neck, HRFPN)
    assert shapes_of(model) == expected_keys(width, name.startswith('mask'))


def build_small(name: str, **backbone):
    """The config's model with lighter sampling; random weights (no ImageNet download)."""
    cfg = load(HRNET / name)
    cfg.model.backbone.update(init_cfg=None, **backbone)
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    cfg.model.test_cfg.rpn.max_per_img = 50
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=7)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    init_weights_quietly(model)
    return model


SAMPLE_BOXES = [[8, 8, 40, 40], [30, 20, 60, 56]]


def calibrate_batchnorms(model, inputs: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of ``inputs``' activations.

    Random weights under unit running statistics let the deep HRNet's activations blow up
    (every box then degenerates); real models start from ImageNet statistics.
    """
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives its exact statistics
        m.train()
    with torch.no_grad():
        model.backbone(inputs)
    model.backbone.train(False)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['faster-rcnn_hrnetv2p-w18-1x_coco.py',
                                  'mask-rcnn_hrnetv2p-w18-1x_coco.py'])
def test_loss_and_predict_on_a_small_image(name):
    with_mask = name.startswith('mask')
    model = build_small(name)
    samples = [make_det_sample(SAMPLE_BOXES, [3, 17], img_shape=(64, 64), with_mask=with_mask)]

    model.train()
    data = model.data_preprocessor(make_batch(samples), True)
    feats = model.extract_feat(data['inputs'])
    assert [tuple(f.shape) for f in feats] == [(1, 256, 16 // 2**i, 16 // 2**i)
                                               for i in range(5)]
    losses = model(**data, mode='loss')
    expected = {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_bbox'}
    assert set(losses) == (expected | {'loss_mask'} if with_mask else expected)
    assert_finite_losses(losses)

    model.eval()
    data = model.data_preprocessor(make_batch(samples), False)
    calibrate_batchnorms(model, data['inputs'])
    with torch.no_grad():
        result = model(**data, mode='predict')[0].pred_instances
    assert len(result) == 7 and result.bboxes.shape == (7, 4)
    assert torch.all((result.labels >= 0) & (result.labels < 80))
    assert torch.all(result.bboxes >= 0) and torch.all(result.bboxes <= 64)
    if with_mask:
        assert result.masks.shape == (7, 64, 64) and result.masks.dtype == torch.bool


@pytest.mark.slow
def test_a_few_sgd_steps_lower_the_losses():
    # From random weights the eval-mode BatchNorms (norm_eval) have unit statistics and the
    # deep HRNet's activations blow up; batch statistics keep this short run stable.
    model = build_small('faster-rcnn_hrnetv2p-w18-1x_coco.py', norm_eval=False).train()
    samples = [make_det_sample(SAMPLE_BOXES, [3, 17], img_shape=(64, 64))]
    data = model.data_preprocessor(make_batch(samples), True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9)

    def step(update: bool) -> dict:
        torch.manual_seed(0)  # the same proposal sampling each time
        total, logs = model.parse_losses(model(**data, mode='loss'))
        if update:
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
        return logs

    before = step(update=True)
    for _ in range(5):
        step(update=True)
    after = step(update=False)
    assert after['loss_rpn_cls'] < 0.6 * before['loss_rpn_cls']
    assert after['loss'] < before['loss']
