"""The COCO Faster / Mask R-CNN configs build models whose weights are mmdetection 3.3's.

The expected keys are written from mmdetection's architecture (ResNet-50 Bottleneck stages
of 3, 4, 6, 3 blocks with ``conv{k}``/``bn{k}`` and a ``downsample`` Sequential in each
stage's first block, FPN ``ConvModule``s, RPNHead's three convs, Shared2FCBBoxHead,
FCNMaskHead), not dumped from our own model.
"""
from pathlib import Path

import pytest
import torch
from helpers import make_batch, make_det_sample
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
FASTER = CONFIGS / 'faster_rcnn' / 'faster-rcnn_r50_fpn_1x_coco.py'
MASK = CONFIGS / 'mask_rcnn' / 'mask-rcnn_r50_fpn_1x_coco.py'


def norm(prefix: str, channels: int) -> dict:
    """BatchNorm parameters and buffers."""
    return {f'{prefix}.weight': (channels, ), f'{prefix}.bias': (channels, ),
            f'{prefix}.running_mean': (channels, ), f'{prefix}.running_var': (channels, ),
            f'{prefix}.num_batches_tracked': ()}


def conv(prefix: str, out_c: int, in_c: int, k: int, bias: bool = True) -> dict:
    keys = {f'{prefix}.weight': (out_c, in_c, k, k)}
    if bias:
        keys[f'{prefix}.bias'] = (out_c, )
    return keys


def linear(prefix: str, out_f: int, in_f: int) -> dict:
    return {f'{prefix}.weight': (out_f, in_f), f'{prefix}.bias': (out_f, )}


def resnet50_keys() -> dict:
    keys = conv('backbone.conv1', 64, 3, 7, bias=False)
    keys.update(norm('backbone.bn1', 64))
    in_c = 64
    for stage, num_blocks in enumerate((3, 4, 6, 3), start=1):
        planes = 64 * 2**(stage - 1)
        for block in range(num_blocks):
            prefix = f'backbone.layer{stage}.{block}'
            keys.update(conv(f'{prefix}.conv1', planes, in_c, 1, bias=False))
            keys.update(norm(f'{prefix}.bn1', planes))
            keys.update(conv(f'{prefix}.conv2', planes, planes, 3, bias=False))
            keys.update(norm(f'{prefix}.bn2', planes))
            keys.update(conv(f'{prefix}.conv3', planes * 4, planes, 1, bias=False))
            keys.update(norm(f'{prefix}.bn3', planes * 4))
            if block == 0:
                keys.update(conv(f'{prefix}.downsample.0', planes * 4, in_c, 1, bias=False))
                keys.update(norm(f'{prefix}.downsample.1', planes * 4))
            in_c = planes * 4
    return keys


def faster_rcnn_keys() -> dict:
    keys = resnet50_keys()
    for i, in_c in enumerate([256, 512, 1024, 2048]):
        keys.update(conv(f'neck.lateral_convs.{i}.conv', 256, in_c, 1))
    for i in range(4):  # num_outs=5: the 5th level is a max-pool, without weights
        keys.update(conv(f'neck.fpn_convs.{i}.conv', 256, 256, 3))
    keys.update(conv('rpn_head.rpn_conv', 256, 256, 3))
    keys.update(conv('rpn_head.rpn_cls', 3, 256, 1))  # 3 anchors, sigmoid objectness
    keys.update(conv('rpn_head.rpn_reg', 12, 256, 1))
    keys.update(linear('roi_head.bbox_head.shared_fcs.0', 1024, 256 * 7 * 7))
    keys.update(linear('roi_head.bbox_head.shared_fcs.1', 1024, 1024))
    keys.update(linear('roi_head.bbox_head.fc_cls', 81, 1024))  # 80 classes + background
    keys.update(linear('roi_head.bbox_head.fc_reg', 320, 1024))  # 4 deltas per class
    return keys


def mask_rcnn_keys() -> dict:
    keys = faster_rcnn_keys()
    for i in range(4):
        keys.update(conv(f'roi_head.mask_head.convs.{i}.conv', 256, 256, 3))
    # ConvTranspose2d weights are [in, out, k, k].
    keys.update(conv('roi_head.mask_head.upsample', 256, 256, 2))
    keys.update(conv('roi_head.mask_head.conv_logits', 80, 256, 1))
    return keys


def build(config: Path, **test_overrides):
    register_all_modules()
    cfg = Config.fromfile(str(config))
    cfg.model.test_cfg.rpn.max_per_img = 10  # keep the checkpoint test light
    cfg.model.test_cfg.rcnn.update(test_overrides)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def faster_rcnn():
    return build(FASTER)


@pytest.fixture(scope='module')
def mask_rcnn():
    return build(MASK)


def shapes_of(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_expected_key_counts_are_mmdetections():
    assert len(faster_rcnn_keys()) == 348
    assert len(mask_rcnn_keys()) == 360


def test_faster_rcnn_state_dict_keys_and_shapes(faster_rcnn):
    assert shapes_of(faster_rcnn) == faster_rcnn_keys()


def test_mask_rcnn_state_dict_keys_and_shapes(mask_rcnn):
    assert shapes_of(mask_rcnn) == mask_rcnn_keys()


def test_anchor_generator_extractors_and_preprocessor_hold_no_weights(mask_rcnn):
    assert mask_rcnn.data_preprocessor.state_dict() == {}
    assert mask_rcnn.roi_head.bbox_roi_extractor.state_dict() == {}
    assert mask_rcnn.roi_head.mask_roi_extractor.state_dict() == {}
    assert not any('prior_generator' in k or 'anchor' in k for k in mask_rcnn.state_dict())


@pytest.mark.slow
def test_mmdet_style_checkpoint_loads_strictly_and_predicts_the_same(mask_rcnn, tmp_path):
    source = mask_rcnn.eval()
    torch.save({'meta': {'mmdet_version': '3.3.0', 'epoch': 12},
                'state_dict': source.state_dict()}, tmp_path / 'epoch_12.pth')

    torch.manual_seed(1)  # a different random init than the source model's
    fresh = build(MASK).eval()
    key = 'roi_head.bbox_head.fc_cls.weight'
    assert not torch.equal(fresh.state_dict()[key], source.state_dict()[key])
    load_checkpoint(fresh, str(tmp_path / 'epoch_12.pth'), map_location='cpu', strict=True)

    # Keep every detection of the random model (scores ~1/81) but only a few of them.
    for model in (source, fresh):
        model.roi_head.test_cfg.update(score_thr=0.0, max_per_img=5)
    predictions = []
    for model in (source, fresh):
        batch = make_batch([make_det_sample(img_shape=(64, 64))], seed=3)
        with torch.no_grad():
            predictions.append(model.test_step(batch)[0].pred_instances)
    assert len(predictions[0]) == 5
    for name in ('bboxes', 'scores', 'labels', 'masks'):
        assert torch.equal(predictions[0].get(name), predictions[1].get(name)), name
