"""YOLOV3Neck: mmdetection's keys and shapes, coarse-to-fine wiring, errors."""
import pytest
import torch
import torch.nn.functional as F

from mmdet_lite.models.necks import YOLOV3Neck

# configs/yolo: in_channels=[1024, 512, 256], out_channels=[512, 256, 128]; scaled by 1/16.
IN, OUT = [64, 32, 16], [32, 16, 8]


def block_shapes(prefix, c_in, n):
    shapes = {}
    for j, (ci, co, k) in enumerate([(c_in, n, 1), (n, 2 * n, 3), (2 * n, n, 1),
                                     (n, 2 * n, 3), (2 * n, n, 1)], start=1):
        shapes.update(conv_bn(f'{prefix}.conv{j}', ci, co, k))
    return shapes


def conv_bn(prefix, c_in, c_out, k):
    shapes = {f'{prefix}.conv.weight': (c_out, c_in, k, k)}  # no bias before BN
    shapes.update({f'{prefix}.bn.{p}': (c_out,)
                   for p in ('weight', 'bias', 'running_mean', 'running_var')})
    shapes[f'{prefix}.bn.num_batches_tracked'] = ()
    return shapes


def test_state_dict_keys_and_shapes():
    neck = YOLOV3Neck(3, IN, OUT)
    expected = block_shapes('detect1', 64, 32)
    expected.update(conv_bn('conv1', 32, 16, 1))
    expected.update(block_shapes('detect2', 32 + 16, 16))
    expected.update(conv_bn('conv2', 16, 8, 1))
    expected.update(block_shapes('detect3', 16 + 8, 8))
    shapes = {k: tuple(v.shape) for k, v in neck.state_dict().items()}
    assert shapes == expected
    # Module registration order as in mmdetection (checkpoint key order).
    assert [name for name, _ in neck.named_children()] == [
        'detect1', 'conv1', 'detect2', 'conv2', 'detect3']
    assert isinstance(neck.detect1.conv1.activate, torch.nn.LeakyReLU)
    assert neck.detect1.conv1.activate.negative_slope == 0.1


def test_outputs_coarse_to_fine_and_wiring():
    neck = YOLOV3Neck(3, IN, OUT).eval()
    feats = [torch.rand(2, 16, 32, 32), torch.rand(2, 32, 16, 16), torch.rand(2, 64, 8, 8)]
    outs = neck(feats)
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 8), (2, 16, 16, 16), (2, 8, 32, 32)]
    torch.testing.assert_close(outs[0], neck.detect1(feats[2]))
    skip = F.interpolate(neck.conv1(outs[0]), scale_factor=2, mode='nearest')
    torch.testing.assert_close(outs[1], neck.detect2(torch.cat([skip, feats[1]], 1)))
    skip = F.interpolate(neck.conv2(outs[1]), scale_factor=2, mode='nearest')
    torch.testing.assert_close(outs[2], neck.detect3(torch.cat([skip, feats[0]], 1)))


def test_errors():
    with pytest.raises(AssertionError, match=r'num_scales \(2\) =='):
        YOLOV3Neck(2, IN, OUT)
    with pytest.raises(AssertionError, match='expects num_scales=3 input maps, got 2'):
        YOLOV3Neck(3, IN, OUT)([torch.rand(1, 32, 4, 4), torch.rand(1, 64, 2, 2)])
