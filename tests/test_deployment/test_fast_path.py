"""The CPU inference fast path gives the plain model's detections, for every family.

Each covered detector (the export tests' tiny versions of the real configs) gets random
BatchNorm statistics and affines first, so that folding them is not an identity; then
``optimize_for_inference`` (BN folded, channels-last) under ``torch.inference_mode`` must
give the plain eval model's detections on a batch of two images: same count and labels,
boxes within 1e-3, scores within 1e-4, masks equal.
"""
import copy

import pytest
import torch
import torchvision
from export_checks import make_metas
from tiny_detectors import TINY, tiny_detector
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.utils import (compile_detector, inference_context,
                                     optimize_for_inference, untie_shared_convs)
from mmdet_lite.structures import DetDataSample

SHAPE = (64, 64)


def _random_bn_stats(model: nn.Module, seed: int = 0) -> int:
    """Random running statistics and affines for every BN; returns how many BNs."""
    gen = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                count += 1
    return count


def _predict(model, images, grad_mode=torch.no_grad):
    metas = make_metas(SHAPE, batch_size=len(images))
    samples = [DetDataSample(metainfo=meta) for meta in metas]
    with grad_mode():
        data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), False)
        return [r.pred_instances for r in model(**data, mode='predict')]


def _images(seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, *SHAPE), generator=gen, dtype=torch.uint8).float()
            for _ in range(2)]


def assert_detections_match(expected_list, actual_list, min_paired: float = 1.0) -> None:
    """Same count per image; at least ``min_paired`` of the detections paired greedily (in
    score order) by label, IoU >= 0.995 and score within 1e-3 (masks: 99.9% pixels)."""
    total = paired = 0
    for expected, actual in zip(expected_list, actual_list):
        assert len(expected) == len(actual), (len(expected), len(actual))
        iou = torchvision.ops.box_iou(expected.bboxes, actual.bboxes)  # [N, N]
        free = torch.ones(len(actual), dtype=torch.bool)
        for i in torch.argsort(expected.scores, descending=True).tolist():
            ok = (free & (actual.labels == expected.labels[i]) & (iou[i] >= 0.995) &
                  ((actual.scores - expected.scores[i]).abs() <= 1e-3))
            if not ok.any():
                continue
            j = int(torch.where(ok, iou[i], torch.zeros_like(iou[i])).argmax())
            if 'masks' in expected:
                same = (expected.masks[i] == actual.masks[j]).float().mean().item()
                assert same >= 0.999, f'mask {i}: {1 - same:.4%} of pixels differ'
            free[j] = False
            paired += 1
        total += len(expected)
    assert total >= 2, 'too few detections: the comparison tests nothing'
    assert paired >= min_paired * total, f'only {paired} of {total} detections paired'


def _assert_features_close(model, fast, images) -> None:
    x = torch.stack(images) / 255.0
    with torch.no_grad():
        expected = model.extract_feat(x)
        actual = fast.extract_feat(x)
    for exp, act in zip(expected, actual):
        scale = exp.abs().max().item()
        assert (exp - act).abs().max().item() <= 1e-5 * scale


def _num_bns(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


@pytest.mark.parametrize('name', sorted(TINY))
def test_fast_path_gives_plain_detections(name):
    model = tiny_detector(name)
    num_bns = _random_bn_stats(model)
    images = _images()
    expected = _predict(model, images)

    fast = optimize_for_inference(copy.deepcopy(model))
    assert fast.fast_path == dict(fuse_bn=True, channels_last=True)
    if num_bns:  # every BN of these models directly follows a conv
        assert _num_bns(fast) == 0, f'{_num_bns(fast)} of {num_bns} BNs left'
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    _assert_features_close(model, fast, images)
    actual = _predict(fast, images, torch.inference_mode)
    assert_detections_match(expected, actual)


def test_fold_changes_no_weights_of_the_plain_model():
    model = tiny_detector('retinanet')
    _random_bn_stats(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize_for_inference(copy.deepcopy(model))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_untie_shared_convs_gives_each_parent_its_copy():
    shared = nn.Conv2d(2, 2, 3, padding=1)
    model = nn.ModuleDict(dict(a=nn.Sequential(shared, nn.BatchNorm2d(2)),
                               b=nn.Sequential(shared, nn.BatchNorm2d(2)),
                               c=nn.Sequential(nn.Conv2d(2, 2, 1))))
    assert untie_shared_convs(model) == 1
    assert model.a[0] is shared and model.b[0] is not shared
    assert torch.equal(model.b[0].weight, shared.weight)
    assert untie_shared_convs(model) == 0


def test_rtmdet_shared_convs_fold_per_level():
    """RTMDetSepBNHead shares each tower conv across levels, with a BN per level: folding
    without untying would put every level's statistics into the one conv."""
    model = tiny_detector('rtmdet')
    _random_bn_stats(model)
    head = model.bbox_head
    assert head.cls_convs[0][0].conv is head.cls_convs[1][0].conv  # shared as configured
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, *SHAPE))
        expected = head(feats)
        optimize_for_inference(model, channels_last=False)
        actual = head(feats)
    assert head.cls_convs[0][0].conv is not head.cls_convs[1][0].conv
    flat = [level for outputs in (expected, actual) for part in outputs for level in part]
    for exp_level, act_level in zip(flat[:len(flat) // 2], flat[len(flat) // 2:]):
        torch.testing.assert_close(act_level, exp_level, atol=1e-4, rtol=1e-4)


def test_optimize_keeps_options_off():
    model = tiny_detector('faster-rcnn')
    num_bns = _num_bns(model)
    optimize_for_inference(model, fuse_bn=False, channels_last=False)
    assert _num_bns(model) == num_bns
    assert model.fast_path == dict(fuse_bn=False, channels_last=False)
    assert 'fast_path' not in str(list(model.state_dict()))


def test_inference_context_picks_the_grad_mode():
    with inference_context(True):
        assert torch.is_inference_mode_enabled()
    with inference_context(False):
        assert not torch.is_inference_mode_enabled() and not torch.is_grad_enabled()


@pytest.mark.slow
def test_compiled_detector_gives_plain_detections():
    model = tiny_detector('retinanet')
    _random_bn_stats(model)
    images = _images()
    expected = _predict(model, images)
    fast = optimize_for_inference(copy.deepcopy(model))
    keys = list(fast.state_dict())
    assert compile_detector(fast) == ['backbone', 'neck', 'bbox_head']
    assert list(fast.state_dict()) == keys  # nn.Module.compile keeps the names
    actual = _predict(fast, images, torch.inference_mode)
    assert_detections_match(expected, actual)
