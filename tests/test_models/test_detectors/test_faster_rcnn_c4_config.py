"""The Faster R-CNN C4 config builds mmdetection 3.3's model and runs loss / predict.

Expected keys come from mmdetection's definitions: caffe ResNet-50 with ``num_stages=3``
(stem + layer1..layer3, no layer4), RPNHead on the stride-16 map with 15 anchors
(5 scales x 3 ratios, sigmoid objectness) and 1024 feat_channels, the ``ResLayer`` shared
head holding ResNet stage 4 as ``roi_head.shared_head.layer4``, and an average-pooled
``BBoxHead`` (2048 -> 81 classes, 320 deltas).
"""
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses, make_batch, make_det_sample
from mmengine.config import Config
from test_coco_state_dict import conv, linear, norm

from mmdet_lite.models.roi_heads import BBoxHead, ResLayer
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
C4 = CONFIGS / 'faster_rcnn' / 'faster-rcnn_r50-caffe-c4_1x_coco.py'
C4_MMDET_NAME = CONFIGS / 'faster_rcnn' / 'faster-rcnn_r50-caffe_c4-1x_coco.py'


def bottleneck_stage(prefix: str, in_c: int, planes: int, num_blocks: int) -> dict:
    """Keys of one ResNet Bottleneck stage (``conv{k}``/``bn{k}``, ``downsample`` in 0)."""
    keys = {}
    for block in range(num_blocks):
        p = f'{prefix}.{block}'
        keys.update(conv(f'{p}.conv1', planes, in_c, 1, bias=False))
        keys.update(norm(f'{p}.bn1', planes))
        keys.update(conv(f'{p}.conv2', planes, planes, 3, bias=False))
        keys.update(norm(f'{p}.bn2', planes))
        keys.update(conv(f'{p}.conv3', planes * 4, planes, 1, bias=False))
        keys.update(norm(f'{p}.bn3', planes * 4))
        if block == 0:
            keys.update(conv(f'{p}.downsample.0', planes * 4, in_c, 1, bias=False))
            keys.update(norm(f'{p}.downsample.1', planes * 4))
        in_c = planes * 4
    return keys


def c4_keys() -> dict:
    keys = conv('backbone.conv1', 64, 3, 7, bias=False)
    keys.update(norm('backbone.bn1', 64))
    for stage, (in_c, num_blocks) in enumerate(((64, 3), (256, 4), (512, 6)), start=1):
        keys.update(bottleneck_stage(f'backbone.layer{stage}', in_c, 64 * 2**(stage - 1),
                                     num_blocks))
    keys.update(conv('rpn_head.rpn_conv', 1024, 1024, 3))
    keys.update(conv('rpn_head.rpn_cls', 15, 1024, 1))
    keys.update(conv('rpn_head.rpn_reg', 60, 1024, 1))
    # The shared head is ResNet-50 stage 4: 1024 -> 3 blocks of 512 -> 2048 channels.
    keys.update(bottleneck_stage('roi_head.shared_head.layer4', 1024, 512, 3))
    keys.update(linear('roi_head.bbox_head.fc_cls', 81, 2048))
    keys.update(linear('roi_head.bbox_head.fc_reg', 320, 2048))
    return keys


def load_cfg(path: Path = C4) -> Config:
    register_all_modules()
    return Config.fromfile(str(path))


@pytest.fixture(scope='module')
def c4_model():
    cfg = load_cfg()
    # Lighter training and test settings; the architecture is untouched.
    cfg.model.train_cfg.rcnn.sampler.num = 32
    cfg.model.train_cfg.rpn_proposal.max_per_img = 50
    cfg.model.test_cfg.rpn.max_per_img = 20
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    return model


@pytest.mark.slow
def test_mmdetection_values_and_both_file_names():
    cfg = load_cfg()
    assert cfg.model.roi_head.shared_head == dict(
        type='ResLayer', depth=50, stage=3, stride=2, dilation=1, style='caffe',
        norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True)
    assert cfg.model.roi_head.bbox_roi_extractor.roi_layer.output_size == 14
    assert cfg.model.backbone.out_indices == (2, ) and cfg.model.backbone.num_stages == 3
    assert cfg.model.train_cfg.rpn_proposal.nms_pre == 12000
    assert cfg.model.test_cfg.rpn.nms_pre == 6000
    assert load_cfg(C4_MMDET_NAME).model == cfg.model


def test_expected_key_count():
    # 258 backbone + 6 RPN + 60 shared head + 4 box head.
    assert len(c4_keys()) == 328


@pytest.mark.slow
def test_state_dict_keys_and_shapes(c4_model):
    assert {k: tuple(v.shape) for k, v in c4_model.state_dict().items()} == c4_keys()
    assert isinstance(c4_model.roi_head.shared_head, ResLayer)
    assert type(c4_model.roi_head.bbox_head) is BBoxHead
    assert c4_model.with_shared_head and c4_model.roi_head.with_shared_head
    assert not any(k.startswith('backbone.layer4') for k in c4_model.state_dict())


@pytest.mark.slow
def test_loss_and_predict_on_a_small_image(c4_model):
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 56]], [3, 17],
                               img_shape=(64, 64))]
    c4_model.train()
    data = c4_model.data_preprocessor(make_batch(samples), True)
    assert data['inputs'].shape == (1, 3, 64, 64)
    torch.manual_seed(1)
    losses = c4_model(data['inputs'], data['data_samples'], mode='loss')
    assert set(losses) == {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_bbox'}
    assert_finite_losses(losses)
    # norm_eval keeps the frozen BNs of the backbone and the shared head in eval mode.
    assert not c4_model.roi_head.shared_head.layer4[0].bn1.training
    assert not c4_model.backbone.layer3[0].bn1.training

    c4_model.eval()
    c4_model.roi_head.test_cfg.score_thr = 0.0
    c4_model.roi_head.test_cfg.max_per_img = 7
    data = c4_model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        pred = c4_model(data['inputs'], data['data_samples'], mode='predict')[0]
    result = pred.pred_instances
    assert len(result) == 7
    assert result.bboxes.shape == (7, 4) and result.labels.dtype == torch.long
    assert torch.all((result.labels >= 0) & (result.labels < 80))
    assert torch.all(result.bboxes[:, 2:] <= 64) and torch.all(result.bboxes >= 0)
