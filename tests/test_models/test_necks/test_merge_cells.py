"""NAS merge cells: resize rules and fusions by hand, keys as mmcv's."""
import pytest
import torch

from mmdet_lite.models.necks.merge_cells import ConcatCell, GlobalPoolingCell, SumCell


def test_sum_cell_keys_and_defaults():
    cell = SumCell(4, 6)
    assert {k: tuple(v.shape) for k, v in cell.state_dict().items()} == {
        'out_conv.conv.weight': (6, 4, 3, 3), 'out_conv.conv.bias': (6,)}
    assert cell.out_conv.order == ('act', 'conv', 'norm')
    with_inputs = SumCell(4, 4, with_input1_conv=True, with_input2_conv=True,
                          input_norm_cfg=dict(type='BN'))
    assert {'input1_conv.conv.weight', 'input1_conv.conv.bias', 'input1_conv.bn.weight',
            'input2_conv.conv.weight'} <= set(with_inputs.state_dict())


def test_resize_up_down_and_padding():
    cell = SumCell(1, 1, with_out_conv=False)
    x = torch.arange(16.).view(1, 1, 4, 4)
    # Down by an integer factor: 2x2 max-pool.
    torch.testing.assert_close(cell._resize(x, (2, 2)), torch.tensor([[[[5., 7.], [13., 15.]]]]))
    # Up: nearest.
    small = torch.tensor([[[[1., 2.]]]])
    torch.testing.assert_close(cell._resize(small, (2, 4)),
                               torch.tensor([[[[1., 1., 2., 2.], [1., 1., 2., 2.]]]]))
    # 5 -> 2: zero-pad to 6 (left 0, right 1), then 3x3 max-pool.
    y = -torch.ones(1, 1, 5, 5)
    y[0, 0, 4, 4] = -5.0
    out = cell._resize(y, (2, 2))
    torch.testing.assert_close(out, torch.tensor([[[[-1., 0.], [0., 0.]]]]))


def test_fusions_by_hand():
    x1 = torch.rand(1, 2, 4, 4)
    x2 = torch.rand(1, 2, 2, 2)
    plain = dict(with_out_conv=False)
    # out_size None: the larger size, nearest upsampling of x2.
    up2 = x2.repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(SumCell(2, 2, **plain)(x1, x2), x1 + up2)
    torch.testing.assert_close(ConcatCell(2, 2, **plain)(x1, x2), torch.cat([x1, up2], 1))
    att = up2.mean(dim=(2, 3), keepdim=True).sigmoid()
    torch.testing.assert_close(GlobalPoolingCell(**plain)(x1, x2), up2 + att * x1)
    assert ConcatCell(2, 3).out_conv.conv.in_channels == 4


def test_bad_inputs():
    cell = SumCell(2, 2)
    with pytest.raises(AssertionError, match='share batch size and channels'):
        cell(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4))
    with pytest.raises(AssertionError, match="upsample_mode must be 'nearest' or 'bilinear'"):
        SumCell(2, 2, upsample_mode='bicubic')
