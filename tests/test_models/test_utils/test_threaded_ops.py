"""The threaded RoIAlign and batched NMS equal torchvision's single-threaded ops."""
import pytest
import torch
import torchvision

from mmdet_lite.models.layers.roi_align import RoIAlign
from mmdet_lite.models.utils import threaded_ops


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _rois(num: int, batch: int = 2, size: float = 120.0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=gen) * size
    wh = torch.rand(num, 2, generator=gen) * size / 2 + 1
    idx = torch.randint(0, batch, (num, 1), generator=gen).float()
    return torch.cat([idx, xy, xy + wh], 1)


@pytest.mark.parametrize('sampling_ratio,aligned', [(0, True), (2, False)])
def test_roi_align_forward_equals_torchvision(two_threads, sampling_ratio, aligned):
    feats = torch.randn(2, 8, 32, 32)
    rois = _rois(101)
    assert threaded_ops._roi_chunks(rois) == [(0, 50), (50, 101)]  # really split
    expected = torchvision.ops.roi_align(feats, rois, (7, 7), 0.25, sampling_ratio, aligned)
    actual = threaded_ops.roi_align(feats, rois, (7, 7), 0.25, sampling_ratio, aligned)
    assert torch.equal(actual, expected)  # the same kernel on each RoI: bit-identical


def test_roi_align_backward_equals_torchvision(two_threads):
    feats = torch.randn(2, 8, 32, 32, requires_grad=True)
    rois = _rois(80)
    grad_out = torch.randn(80, 8, 7, 7)
    torchvision.ops.roi_align(feats, rois, (7, 7), 0.25, 0, True).backward(grad_out)
    expected, feats.grad = feats.grad.clone(), None
    threaded_ops.roi_align(feats, rois, (7, 7), 0.25, 0, True).backward(grad_out)
    # the two chunks' partial gradients are added: equal up to the order of the sum
    torch.testing.assert_close(feats.grad, expected, rtol=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(
        lambda f: threaded_ops.roi_align(f, rois.double(), (2, 2), 0.25, 2, True),
        (torch.randn(2, 2, 8, 8, dtype=torch.double, requires_grad=True),))


def test_roi_align_layer_uses_the_threaded_op(two_threads, monkeypatch):
    calls = []
    real = threaded_ops._run_parallel
    monkeypatch.setattr(threaded_ops, '_run_parallel',
                        lambda fn, pieces, workers: calls.append(len(pieces)) or
                        real(fn, pieces, workers))
    layer = RoIAlign(7, spatial_scale=0.25)
    feats, rois = torch.randn(2, 8, 32, 32), _rois(64)
    expected = torchvision.ops.roi_align(feats, rois, (7, 7), 0.25, 0, True)
    assert torch.equal(layer(feats, rois), expected)
    assert calls == [2]


def test_small_or_single_thread_inputs_call_torchvision(monkeypatch):
    monkeypatch.setattr(threaded_ops, '_run_parallel', None)  # would fail if called
    torch.set_num_threads(1)
    feats, rois = torch.randn(2, 8, 32, 32), _rois(100)
    assert torch.equal(threaded_ops.roi_align(feats, rois, (7, 7), 0.25),
                       torchvision.ops.roi_align(feats, rois, (7, 7), 0.25, 0, True))
    torch.set_num_threads(2)
    try:
        assert threaded_ops._roi_chunks(_rois(31)) is None  # < 2 x 16 RoIs
    finally:
        torch.set_num_threads(1)


def _nms_inputs(num: int, groups: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=gen) * 200
    wh = torch.rand(num, 2, generator=gen) * 60 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(num, generator=gen)
    scores[::7] = scores[1::7][:scores[::7].numel()]  # some exact score ties
    idxs = torch.randint(0, groups, (num,), generator=gen)
    return boxes, scores, idxs


@pytest.mark.parametrize('num,groups', [(3000, 80), (2000, 5), (1500, 1), (5000, 3)])
def test_batched_nms_equals_torchvision(two_threads, num, groups):
    boxes, scores, idxs = _nms_inputs(num, groups)
    assert boxes.numel() > threaded_ops.NMS_VANILLA_MIN_NUMEL  # the threaded path runs
    expected = torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
    actual = threaded_ops.batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(actual, expected)


def test_a_new_process_builds_its_own_pool(two_threads, monkeypatch):
    """A pool copied into a forked DataLoader worker has no threads: the worker (another
    pid) must not submit to it."""
    boxes, scores, idxs = _nms_inputs(2000, 10)
    threaded_ops.batched_nms(boxes, scores, idxs, 0.5)
    parent_pool = threaded_ops._pool
    monkeypatch.setattr(threaded_ops.os, 'getpid', lambda: -1)
    keep = threaded_ops.batched_nms(boxes, scores, idxs, 0.5)
    assert threaded_ops._pool is not parent_pool
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, idxs, 0.5))
