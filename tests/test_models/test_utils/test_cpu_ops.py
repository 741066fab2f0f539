"""The CPU RoIAlign (weighted gather) and threaded batched NMS equal torchvision's ops."""
import pytest
import torch
import torchvision

from mmdet_lite.models.layers.roi_align import RoIAlign
from mmdet_lite.models.utils import cpu_ops
from mmdet_lite.models.utils import gather_roi_align as gather_module
from mmdet_lite.models.utils.gather_roi_align import gather_roi_align


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


def _edge_rois(num: int, seed: int = 0) -> torch.Tensor:
    """RoIs over a 32x32 map at stride 4, with the cases torchvision's kernel treats
    specially: an empty RoI, one outside the map, ones across the borders, large ones."""
    rois = _rois(num, size=150.0, seed=seed)
    rois[:, 1:3] -= 10  # some start left of / above the map
    rois[0, 3:] = rois[0, 1:3]  # empty: zero output
    rois[1, 1:] = torch.tensor([200., 200., 230., 240.])  # entirely outside
    rois[2, 1:] = torch.tensor([-30., -30., 160., 160.])  # larger than the map
    rois[3, 1:] = torch.tensor([120., 120., 128., 128.])  # on the last row/column
    return rois


@pytest.mark.parametrize('sampling_ratio,aligned,output_size',
                         [(0, True, (7, 7)), (2, False, (7, 7)), (0, False, (3, 5)),
                          (1, True, (14, 14))])
def test_gather_roi_align_equals_torchvision(sampling_ratio, aligned, output_size):
    feats = torch.randn(2, 8, 32, 32)
    rois = _edge_rois(101)
    expected = torchvision.ops.roi_align(feats, rois, output_size, 0.25, sampling_ratio,
                                         aligned)
    actual = gather_roi_align(feats, rois, output_size, 0.25, sampling_ratio, aligned)
    assert actual.shape == expected.shape == (101, 8, *output_size)
    assert expected[1].abs().sum() == 0  # outside the map
    if sampling_ratio == 0 and aligned:
        assert expected[0].abs().sum() == 0  # empty: no sampling points
    # the same points and weights; only the order of the float sums differs
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    channels_last = feats.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        gather_roi_align(channels_last, rois, output_size, 0.25, sampling_ratio, aligned),
        expected, rtol=1e-5, atol=1e-6)


def test_gather_roi_align_in_chunks_equals_one_call(monkeypatch):
    feats, rois = torch.randn(2, 8, 32, 32), _edge_rois(60)
    whole = gather_roi_align(feats, rois, (7, 7), 0.25)
    monkeypatch.setattr(gather_module, 'MAX_POINTS_PER_CHUNK', 500)
    grid = torch.ceil((rois[:, 3:] - rois[:, 1:3]) * 0.25 / 7).clamp(min=0)
    assert (grid.prod(1) * 49).sum() > 10 * 500  # really more than 10 chunks
    assert torch.equal(gather_roi_align(feats, rois, (7, 7), 0.25), whole)
    assert gather_roi_align(feats, rois[:0], (7, 7), 0.25).shape == (0, 8, 7, 7)


def test_gather_roi_align_backward_equals_torchvision():
    feats = torch.randn(2, 8, 32, 32, requires_grad=True)
    rois = _edge_rois(80)
    grad_out = torch.randn(80, 8, 7, 7)
    torchvision.ops.roi_align(feats, rois, (7, 7), 0.25, 0, True).backward(grad_out)
    expected, feats.grad = feats.grad.clone(), None
    gather_roi_align(feats, rois, (7, 7), 0.25, 0, True).backward(grad_out)
    torch.testing.assert_close(feats.grad, expected, rtol=1e-5, atol=1e-5)
    # deterministic: the same gradient, bit for bit, a second time
    first, feats.grad = feats.grad.clone(), None
    gather_roi_align(feats, rois, (7, 7), 0.25, 0, True).backward(grad_out)
    assert torch.equal(feats.grad, first)
    assert torch.autograd.gradcheck(
        lambda f: gather_roi_align(f, rois[4:20].double(), (2, 2), 0.25, 2, True),
        (torch.randn(2, 2, 8, 8, dtype=torch.double, requires_grad=True),))


def test_roi_align_layer_uses_the_gather_kernel_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(cpu_ops, 'gather_roi_align',
                        lambda *args: calls.append(1) or gather_roi_align(*args))
    layer = RoIAlign(7, spatial_scale=0.25)
    feats, rois = torch.randn(2, 8, 32, 32), _rois(64)
    expected = torchvision.ops.roi_align(feats, rois, (7, 7), 0.25, 0, True)
    torch.testing.assert_close(layer(feats, rois), expected, rtol=1e-5, atol=1e-6)
    assert calls == [1]


def test_switched_off_or_exporting_calls_torchvision(monkeypatch):
    monkeypatch.setattr(cpu_ops, 'gather_roi_align', None)  # would fail if called
    feats, rois = torch.randn(2, 8, 32, 32), _rois(100)
    expected = torchvision.ops.roi_align(feats, rois, (7, 7), 0.25, 0, True)
    previous = cpu_ops.set_cpu_ops(False)
    try:
        assert torch.equal(cpu_ops.roi_align(feats, rois, (7, 7), 0.25), expected)
    finally:
        cpu_ops.set_cpu_ops(previous)
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
    assert torch.equal(cpu_ops.roi_align(feats, rois, (7, 7), 0.25), expected)


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
    assert boxes.numel() > cpu_ops.NMS_VANILLA_MIN_NUMEL  # the threaded path runs
    expected = torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
    actual = cpu_ops.batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(actual, expected)


def test_a_new_process_builds_its_own_pool(two_threads, monkeypatch):
    """A pool copied into a forked DataLoader worker has no threads: the worker (another
    pid) must not submit to it."""
    boxes, scores, idxs = _nms_inputs(2000, 10)
    cpu_ops.batched_nms(boxes, scores, idxs, 0.5)
    parent_pool = cpu_ops._pool
    monkeypatch.setattr(cpu_ops.os, 'getpid', lambda: -1)
    keep = cpu_ops.batched_nms(boxes, scores, idxs, 0.5)
    assert cpu_ops._pool is not parent_pool
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize('num,k', [(200_003, 1000), (400_000, 7), (131_072, 65_536)])
def test_topk_over_threads_equals_torch_topk(two_threads, num, k):
    values = torch.randn(num, generator=torch.Generator().manual_seed(num))
    assert num // max(k, cpu_ops.MIN_TOPK_SLICE) >= 2  # really split
    expected_values, _ = values.topk(k)
    top_values, top_idxs = cpu_ops.topk(values, k)
    assert torch.equal(top_values, expected_values)
    assert torch.equal(values[top_idxs], top_values)  # indices of those values
    assert top_idxs.unique().numel() == k
    # the last (num % threads) values, outside the per-thread slices, are candidates too
    values[-1] = values.max() + 1
    assert cpu_ops.topk(values, k)[1][0] == num - 1


def test_topk_of_small_inputs_is_torch_topk(two_threads):
    values = torch.randn(5000)
    assert all(torch.equal(a, b) for a, b in zip(cpu_ops.topk(values, 10), values.topk(10)))


def test_low_precision_features_are_pooled_in_float32_like_torchvision():
    feats = torch.randn(1, 8, 32, 32).bfloat16()
    rois = _edge_rois(40)[:, :5]
    rois[:, 0] = 0
    expected = torchvision.ops.roi_align(feats.float(), rois, (7, 7), 0.25, 0, True)
    actual = cpu_ops.roi_align(feats, rois, (7, 7), 0.25, 0, True)
    assert actual.dtype == torch.bfloat16
    # float32 pooling then one rounding to bf16: within bf16's half-ulp of the float result
    torch.testing.assert_close(actual.float(), expected.bfloat16().float(), rtol=8e-3,
                               atol=1e-6)
