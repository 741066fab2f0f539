"""SwinTransformer: mmdetection 3.3 state_dict keys (Swin-T, DINO's Swin-L), output shapes with
padding, window attention against hand computations, the shifted-window mask, freezing,
activation checkpointing, from-scratch init and argument errors."""
import math

import pytest
import torch
from helpers_swin_keys import swin_expected_keys
from torch import nn

from mmdet_lite.models.backbones import SwinTransformer
from mmdet_lite.models.backbones.swin import ShiftWindowMSA, SwinBlock, WindowMSA
from mmdet_lite.models.backbones.swin_blocks import shifted_window_mask
from mmdet_lite.registry import MODELS


def shapes_of(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_swin_t_state_dict_keys_and_shapes():
    model = SwinTransformer()
    assert shapes_of(model) == swin_expected_keys(96, (2, 2, 6, 2), (3, 6, 12, 24), 7,
                                                  (0, 1, 2, 3))
    # Official Swin-T backbone: 28.29M parameters with its 768x1000 head and final norm.
    assert sum(p.numel() for p in model.parameters()) == 28288354 - 769000 - 2 * 768 + (
        2 * (96 + 192 + 384 + 768))


def test_dino_swin_l_state_dict_keys_and_shapes():
    with torch.device('meta'):  # shapes only: no memory or init time for 195M parameters
        model = SwinTransformer(pretrain_img_size=384, embed_dims=192, depths=(2, 2, 18, 2),
                                num_heads=(6, 12, 24, 48), window_size=12,
                                drop_path_rate=0.2, with_cp=True, convert_weights=True,
                                out_indices=(0, 1, 2, 3))
    assert shapes_of(model) == swin_expected_keys(192, (2, 2, 18, 2), (6, 12, 24, 48), 12,
                                                  (0, 1, 2, 3))
    assert model.num_features == [192, 384, 768, 1536]
    assert model.stages[2].blocks[17].attn.drop.drop_prob == pytest.approx(0.2 * 21 / 23)


def test_out_indices_select_norm_layers_and_outputs():
    model = SwinTransformer(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                            out_indices=(1, 3)).eval()
    assert not hasattr(model, 'norm0') and hasattr(model, 'norm1') and hasattr(model, 'norm3')
    outs = model(torch.randn(1, 3, 64, 64))
    assert isinstance(outs, list)
    assert [tuple(o.shape) for o in outs] == [(1, 32, 8, 8), (1, 128, 2, 2)]


@pytest.mark.parametrize('size', [(64, 64), (70, 90)])
def test_swin_t_output_shapes_pad_to_ceil(size):
    model = SwinTransformer().eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    expected = []
    h, w = size
    for i, c in enumerate((96, 192, 384, 768)):
        # Every stage pads bottom/right: patch embed to multiples of 4, merging to even.
        h, w = (math.ceil(h / 4), math.ceil(w / 4)) if i == 0 else (math.ceil(h / 2),
                                                                    math.ceil(w / 2))
        expected.append((2, c, h, w))
    assert [tuple(o.shape) for o in outs] == expected
    if size == (70, 90):
        assert expected == [(2, 96, 18, 23), (2, 192, 9, 12), (2, 384, 5, 6), (2, 768, 3, 3)]


def test_output_is_independent_of_other_images_in_the_batch():
    model = SwinTransformer(embed_dims=16, depths=(2, 2), num_heads=(2, 2), window_size=3,
                            strides=(4, 2), out_indices=(0, 1)).eval()
    x = torch.randn(3, 3, 40, 52)
    with torch.no_grad():
        batched = model(x)
        single = model(x[1:2])
    for b, s in zip(batched, single):
        torch.testing.assert_close(b[1:2], s)


def test_relative_position_index_of_a_2x2_window_by_hand():
    msa = WindowMSA(embed_dims=4, num_heads=2, window_size=(2, 2))
    # Tokens (0,0), (0,1), (1,0), (1,1); row (di + 1) * 3 + (dj + 1) for di, dj = query - key.
    assert msa.relative_position_index.tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3],
                                                    [8, 7, 5, 4]]
    assert msa.relative_position_index.dtype == torch.int64
    assert msa.relative_position_bias_table.shape == (9, 2)
    assert 'relative_position_index' in msa.state_dict()


def test_window_msa_matches_hand_computed_attention_with_bias_table():
    torch.manual_seed(3)
    msa = WindowMSA(embed_dims=4, num_heads=2, window_size=(2, 2), qk_scale=0.5)
    msa.relative_position_bias_table.data = torch.randn(9, 2)
    x = torch.randn(3, 4, 4)
    mask = torch.zeros(3, 4, 4)
    mask[1, 0, 2] = mask[2, 3, 1] = -100.
    out = msa(x, mask=mask)

    wq, wk, wv = msa.qkv.weight.view(3, 4, 4)
    bq, bk, bv = msa.qkv.bias.view(3, 4)
    coords = [(0, 0), (0, 1), (1, 0), (1, 1)]
    table = msa.relative_position_bias_table
    expected = torch.zeros(3, 4, 4)
    for w in range(3):
        q, k, v = x[w] @ wq.T + bq, x[w] @ wk.T + bk, x[w] @ wv.T + bv
        heads = []
        for h in range(2):
            sl = slice(2 * h, 2 * h + 2)
            logits = torch.zeros(4, 4)
            for a, (ia, ja) in enumerate(coords):
                for b, (ib, jb) in enumerate(coords):
                    row = (ia - ib + 1) * 3 + (ja - jb + 1)
                    logit = (q[a, sl] * k[b, sl]).sum() * 0.5  # qk_scale
                    logits[a, b] = logit + table[row, h] + mask[w, a, b]
            heads.append(logits.softmax(-1) @ v[:, sl])
        expected[w] = torch.cat(heads, dim=1) @ msa.proj.weight.T + msa.proj.bias
    torch.testing.assert_close(out, expected)


def test_window_msa_default_scale_is_inverse_sqrt_head_dims():
    assert WindowMSA(embed_dims=12, num_heads=3, window_size=(2, 2)).scale == 0.5
    assert not WindowMSA(embed_dims=4, num_heads=1, window_size=(2, 2), qkv_bias=False).qkv.bias


def test_shifted_window_mask_on_a_4x4_map_by_hand():
    # Window 2, shift 1: rows {0,1} | {2} | {3} and the same columns give region labels
    #   0 0 1 2
    #   0 0 1 2
    #   3 3 4 5
    #   6 6 7 8
    mask = shifted_window_mask((4, 4), window_size=2, shift_size=1)
    labels_per_window = [[0, 0, 0, 0], [1, 2, 1, 2], [3, 3, 6, 6], [4, 5, 7, 8]]
    expected = torch.tensor([[[0. if la == lb else -100. for lb in labels] for la in labels]
                             for labels in labels_per_window])
    assert torch.equal(mask, expected)


def identity_window_attention(window_size, shift_size):
    """ShiftWindowMSA with q = k = v = x, no bias and an identity output projection."""
    attn = ShiftWindowMSA(embed_dims=2, num_heads=1, window_size=window_size,
                          shift_size=shift_size, qk_scale=1.0)
    with torch.no_grad():
        attn.w_msa.qkv.weight.copy_(torch.eye(2).repeat(3, 1))
        attn.w_msa.qkv.bias.zero_()
        attn.w_msa.proj.weight.copy_(torch.eye(2))
        attn.w_msa.proj.bias.zero_()
    return attn


@pytest.mark.parametrize('hw,shift', [((4, 4), 1), ((5, 3), 1), ((6, 7), 0)])
def test_shift_window_msa_attends_within_shifted_windows_of_the_padded_map(hw, shift):
    """Brute force: token (r, c) attends to the tokens that, on the padded map rolled by
    -shift, share its window and were in the same region before the roll (padding included,
    as zero tokens)."""
    ws = 2
    attn = identity_window_attention(ws, shift)
    h, w = hw
    x = torch.randn(1, h * w, 2)
    out = attn(x, hw).view(h, w, 2)

    ph, pw = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
    grid = torch.zeros(ph, pw, 2)
    grid[:h, :w] = x.view(h, w, 2)

    def region(i, n):  # bands of the rolled map: [0, n - ws), [n - ws, n - shift), [n - shift, n)
        return 0 if i < n - ws else (1 if i < n - shift else 2)

    for r in range(h):
        for c in range(w):
            rr, rc = (r - shift) % ph, (c - shift) % pw  # position after the roll
            keys = []
            for kr in range(ph):
                for kc in range(pw):
                    same_window = kr // ws == rr // ws and kc // ws == rc // ws
                    same_region = not shift or (region(kr, ph) == region(rr, ph)
                                                and region(kc, pw) == region(rc, pw))
                    if same_window and same_region:
                        keys.append(grid[(kr + shift) % ph, (kc + shift) % pw])
            keys = torch.stack(keys)
            weights = (keys @ grid[r, c]).softmax(0)
            torch.testing.assert_close(out[r, c], weights @ keys)


def test_shift_window_msa_checks_shift_and_input_size():
    with pytest.raises(AssertionError, match='shift_size'):
        ShiftWindowMSA(embed_dims=4, num_heads=1, window_size=3, shift_size=3)
    attn = ShiftWindowMSA(embed_dims=4, num_heads=1, window_size=3)
    with pytest.raises(AssertionError, match='wrong size'):
        attn(torch.randn(1, 10, 4), (3, 4))


def test_swin_blocks_alternate_shift_and_drop_path_grows_linearly():
    model = SwinTransformer(embed_dims=8, depths=(2, 3), num_heads=(1, 2), strides=(4, 2),
                            window_size=5, drop_path_rate=0.4, out_indices=(0, 1))
    shifts = [[b.attn.shift_size for b in s.blocks] for s in model.stages]
    assert shifts == [[0, 2], [0, 2, 0]]
    rates = [b.ffn.dropout_layer.drop_prob for s in model.stages for b in s.blocks]
    assert rates == pytest.approx([0., 0.1, 0.2, 0.3, 0.4])
    assert model.stages[1].downsample is None
    block = model.stages[0].blocks[0]
    assert type(block.ffn.layers[0][1]) is nn.GELU and block.ffn.feedforward_channels == 32


def test_frozen_stages_freeze_patch_embed_stages_and_their_norms():
    model = SwinTransformer(embed_dims=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                            use_abs_pos_embed=True, frozen_stages=2)
    assert all(p.requires_grad for p in model.parameters())  # only train() freezes
    model.train()
    frozen = [model.patch_embed, model.stages[0], model.stages[1], model.norm0, model.norm1]
    trainable = [model.stages[2], model.stages[3], model.norm2, model.norm3]
    assert not model.absolute_pos_embed.requires_grad
    for module in frozen:
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    for module in trainable:
        assert module.training and all(p.requires_grad for p in module.parameters())
    assert model.train() is model


def test_frozen_stages_zero_freezes_only_the_patch_embedding():
    model = SwinTransformer(embed_dims=8, depths=(1, 1), num_heads=(1, 1), strides=(4, 2),
                            out_indices=(0, 1), frozen_stages=0).train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert all(p.requires_grad for p in model.stages.parameters())


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = SwinBlock(embed_dims=8, num_heads=2, feedforward_channels=16, window_size=3,
                      shift=True)
    ckpt = SwinBlock(embed_dims=8, num_heads=2, feedforward_channels=16, window_size=3,
                     shift=True, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5 * 4, 8)
    grads = []
    for block in (plain, ckpt):
        xi = x.clone().requires_grad_()
        block(xi, (5, 4)).square().sum().backward()
        grads.append((xi.grad, block.attn.w_msa.qkv.weight.grad))
    torch.testing.assert_close(grads[0], grads[1])


def test_init_weights_from_scratch_matches_mmdetection():
    model = SwinTransformer(embed_dims=32, depths=(2, 2), num_heads=(2, 4), strides=(4, 2),
                            out_indices=(0, 1), use_abs_pos_embed=True)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.LayerNorm)):
            nn.init.uniform_(m.weight, 3, 4)
            if m.bias is not None:
                nn.init.uniform_(m.bias, 3, 4)
    model.init_weights()
    linear_w = torch.cat([m.weight.flatten() for m in model.modules()
                          if isinstance(m, nn.Linear)])
    assert linear_w.std().item() == pytest.approx(0.02, rel=0.05)
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.bias is not None:
            assert torch.all(m.bias == 0)
        if isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    assert model.absolute_pos_embed.std().item() == pytest.approx(0.02, rel=0.2)
    # mmdetection's override does not run the submodules' init_weights: tables stay zero.
    assert all(torch.all(m.relative_position_bias_table == 0) for m in model.modules()
               if isinstance(m, WindowMSA))


def test_absolute_position_embedding_is_added_at_pretrain_size():
    model = SwinTransformer(pretrain_img_size=(32, ), embed_dims=8, depths=(1, 1),
                            num_heads=(1, 1), strides=(4, 2), out_indices=(0, ),
                            use_abs_pos_embed=True).eval()
    assert model.absolute_pos_embed.shape == (1, 64, 8)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)[0]
        model.absolute_pos_embed.fill_(0.5)
        after = model(x)[0]
    assert not torch.allclose(before, after)


def test_registry_build_and_pretrained_alias():
    model = MODELS.build(dict(type='SwinTransformer', embed_dims=8, depths=(1, 1),
                              num_heads=(1, 1), strides=(4, 2), out_indices=(1, )))
    assert isinstance(model, SwinTransformer)
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = SwinTransformer(embed_dims=8, depths=(1, ), num_heads=(1, ), strides=(4, ),
                                out_indices=(0, ), pretrained='x.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='x.pth')


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(pretrained=123), TypeError, 'pretrained must be a str'),
    (dict(strides=(2, 2, 2, 2)), AssertionError, 'non-overlapping'),
    (dict(pretrain_img_size=(224, 224, 224)), AssertionError, 'length 1 or 2'),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='a.pth')),
     AssertionError, 'same time'),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        SwinTransformer(**kwargs)
