"""BFP: mmdetection's keys and shapes, gather/scatter by hand, refine types, errors."""
import pytest
import torch

from mmdet_lite.models.necks import BFP
from mmdet_lite.registry import MODELS


def levels(c=4, sizes=(16, 8, 4, 2, 1), batch=2):
    return [torch.rand(batch, c, s, s) for s in sizes]


def test_state_dict_keys_and_shapes():
    assert BFP(8, 5).state_dict() == {}
    conv = {k: tuple(v.shape) for k, v in BFP(8, 5, refine_type='conv').state_dict().items()}
    assert conv == {'refine.conv.weight': (8, 8, 3, 3), 'refine.conv.bias': (8,)}
    # configs/libra_rcnn: BFP(256, 5, refine_level=2, refine_type='non_local')
    nl = {k: tuple(v.shape) for k, v in BFP(8, 5, refine_type='non_local').state_dict().items()}
    assert nl == {f'refine.{m}.conv.{p}': (8, 8, 1, 1) if p == 'weight' else (8,)
                  for m in ('g', 'theta', 'phi', 'conv_out') for p in ('weight', 'bias')}
    nl_bn = set(BFP(8, 5, refine_type='non_local', norm_cfg=dict(type='BN')).state_dict())
    assert 'refine.conv_out.bn.running_mean' in nl_bn and 'refine.conv_out.conv.bias' not in nl_bn


def test_gather_and_scatter_by_hand():
    """3 levels (4x4, 2x2, 1x1), refine_level 1, no refine."""
    fine = torch.arange(16.).view(1, 1, 4, 4)
    mid = torch.tensor([[[[1., 2.], [3., 4.]]]])
    coarse = torch.tensor([[[[6.]]]])
    outs = BFP(1, 3, refine_level=1)([fine, mid, coarse])
    # Gathered at 2x2: max-pooled fine [[5, 7], [13, 15]], mid, coarse broadcast 6.
    bsf = (torch.tensor([[5., 7.], [13., 15.]]) + mid[0, 0] + 6.) / 3
    torch.testing.assert_close(outs[1][0, 0], mid[0, 0] + bsf)
    # Finer levels get the nearest-upsampled bsf, coarser ones its max.
    up = bsf.repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(outs[0][0, 0], fine[0, 0] + up)
    torch.testing.assert_close(outs[2][0, 0, 0, 0], 6. + bsf.max())


@pytest.mark.parametrize('refine_type', [None, 'conv', 'non_local'])
def test_output_shapes_equal_input_shapes(refine_type):
    inputs = levels(sizes=(20, 10, 5, 3, 2))
    outs = BFP(4, 5, refine_type=refine_type)(inputs)
    assert isinstance(outs, tuple)
    assert [o.shape for o in outs] == [x.shape for x in inputs]


def test_non_local_starts_as_identity_refine():
    """After init_weights the non-local block's output conv is zero: same as no refine."""
    inputs = levels()
    neck = BFP(4, 5, refine_type='non_local')
    neck.init_weights()
    assert torch.count_nonzero(neck.refine.conv_out.conv.weight) == 0
    for a, b in zip(neck(inputs), BFP(4, 5)(inputs)):
        torch.testing.assert_close(a, b)


def test_conv_refine_is_applied():
    inputs = levels(sizes=(8, 4, 2))
    neck = BFP(4, 3, refine_level=2, refine_type='conv').eval()
    gathered = [torch.nn.functional.adaptive_max_pool2d(x, 2) for x in inputs[:2]] + [inputs[2]]
    bsf = neck.refine(sum(gathered) / 3)
    torch.testing.assert_close(neck(inputs)[2], inputs[2] + bsf)


def test_registry_and_errors():
    assert isinstance(MODELS.build(dict(type='BFP', in_channels=4, num_levels=3)), BFP)
    with pytest.raises(AssertionError, match='refine_type must be one of'):
        BFP(4, 5, refine_type='dcn')
    with pytest.raises(AssertionError, match=r'refine_level must be in \[0, 2\]'):
        BFP(4, 3, refine_level=3)
    with pytest.raises(AssertionError, match='expects num_levels=5 input maps, got 4'):
        BFP(4, 5)(levels()[:4])
