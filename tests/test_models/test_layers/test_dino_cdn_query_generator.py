"""CdnQueryGenerator (DINO's denoising queries): hand cases with the random draws pinned."""
import math

import numpy as np
import pytest
import torch
from helpers import make_det_sample

from mmdet_lite.models.layers.transformer.dino_layers import CdnQueryGenerator
from mmdet_lite.structures.bbox import HorizontalBoxes


def logit(values):
    values = np.asarray(values, dtype=np.float64)
    return np.log(values / (1 - values))


def generator(**kwargs):
    cfg = dict(num_classes=3, embed_dims=8, num_matching_queries=3, label_noise_scale=0.5,
               box_noise_scale=1.0, group_cfg=dict(dynamic=True, num_dn_queries=100))
    cfg.update(kwargs)
    return CdnQueryGenerator(**cfg)


def test_state_dict_and_defaults():
    gen = CdnQueryGenerator(num_classes=80, embed_dims=256, num_matching_queries=900,
                            group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100))
    assert {k: tuple(v.shape) for k, v in gen.state_dict().items()} == {
        'label_embedding.weight': (80, 256)}
    assert (gen.label_noise_scale, gen.box_noise_scale) == (0.5, 1.0)
    assert gen.dynamic_dn_groups is True and gen.num_dn_queries == 100


def test_group_cfg_checks():
    with pytest.warns(UserWarning, match='num_dn_queries'):
        gen = generator(group_cfg=None)
    assert gen.dynamic_dn_groups and gen.num_dn_queries == 100
    with pytest.raises(AssertionError, match='num_groups'):
        generator(group_cfg=dict(dynamic=False))
    with pytest.raises(AssertionError, match='num_groups'):
        generator(group_cfg=dict(dynamic=False, num_groups=2.0))
    with pytest.raises(AssertionError, match='num_dn_queries'):
        generator(group_cfg=dict(dynamic=True, num_dn_queries=10.0))
    with pytest.raises(AssertionError, match='label_noise_scale'):
        generator(label_noise_scale=0.).generate_dn_label_query(torch.tensor([1]), 1)
    with pytest.raises(AssertionError, match='box_noise_scale'):
        generator(box_noise_scale=0.).generate_dn_bbox_query(torch.rand(1, 4), 1)


def test_get_num_groups():
    dynamic = generator(group_cfg=dict(dynamic=True, num_dn_queries=100))
    assert dynamic.get_num_groups(3) == 33
    assert dynamic.get_num_groups(0) == 1
    assert dynamic.get_num_groups(150) == 1  # 100 // 150 = 0, at least one group
    with pytest.raises(AssertionError, match='max_num_target'):
        dynamic.get_num_groups(None)
    static = generator(group_cfg=dict(dynamic=False, num_groups=5))
    assert static.get_num_groups(50) == 5 and static.get_num_groups() == 5


def test_dn_mask_hand_case():
    # M = 1 target, K = 2 groups -> D = 4 denoising queries, then Q = 3 matching queries.
    mask = generator(num_matching_queries=3).generate_dn_mask(1, 2, device='cpu')
    expected = torch.tensor([
        [0, 0, 1, 1, 0, 0, 0],  # group 0 sees itself and the matching queries
        [0, 0, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],  # group 1 likewise
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],  # matching queries see no denoising query
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
    ], dtype=torch.bool)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_dn_mask_three_groups_blocks():
    mask = generator(num_matching_queries=5).generate_dn_mask(2, 3, device='cpu')
    assert mask.shape == (17, 17)
    group = torch.arange(17) // 4  # 4 queries per group; 3 = matching part
    group[12:] = 3
    for row in range(17):
        for col in range(17):
            if group[row] == 3:
                visible = group[col] == 3
            else:
                visible = group[col] in (group[row], 3)
            assert mask[row, col].item() == (not visible), (row, col)


def test_label_noise_with_pinned_draws(monkeypatch):
    gen = generator(num_classes=3, label_noise_scale=0.5)  # replace where draw < 0.25
    calls = {}

    def fake_rand_like(t, **kwargs):
        calls['rand_shape'] = tuple(t.shape)
        return torch.tensor([0.10, 0.90, 0.30, 0.20])

    def fake_randint_like(t, low, high, **kwargs):
        calls['randint'] = (tuple(t.shape), low, high)
        return torch.tensor([1, 1])

    monkeypatch.setattr(torch, 'rand_like', fake_rand_like)
    monkeypatch.setattr(torch, 'randint_like', fake_randint_like)
    query = gen.generate_dn_label_query(torch.tensor([2, 0]), num_groups=1)
    # Copies: [2, 0 | 2, 0]; draws 0.10 and 0.20 are chosen -> positions 0 and 3 become 1.
    assert calls == {'rand_shape': (4, ), 'randint': ((2, ), 0, 3)}
    weight = gen.label_embedding.weight
    assert torch.equal(query, weight[torch.tensor([1, 0, 2, 1])])


def test_box_noise_with_pinned_draws(monkeypatch):
    gen = generator(box_noise_scale=1.0)
    gt = torch.tensor([[0.2, 0.2, 0.6, 0.4]])  # w = 0.4, h = 0.2
    sign_bits = torch.tensor([[1., 0., 1., 0.],  # positive copy: signs +, -, +, -
                              [0., 1., 1., 1.]])  # negative copy: -, +, +, +
    draws = torch.tensor([[0.5, 0.5, 0.25, 0.0], [0.0, 0.5, 0.5, 0.99]])
    monkeypatch.setattr(torch, 'randint_like', lambda t, low, high, dtype: sign_bits.clone())
    monkeypatch.setattr(torch, 'rand_like', lambda t: draws.clone())
    query = gen.generate_dn_bbox_query(gt, num_groups=1)
    # positive: x1 + 0.5*0.2, y1 - 0.5*0.1, x2 + 0.25*0.2, y2 + 0 -> (0.3, 0.15, 0.65, 0.4)
    # negative: x1 - 1.0*0.2 (clamped to 0), y1 + 1.5*0.1, x2 + 1.5*0.2, y2 + 1.99*0.1
    #           -> (0.0, 0.35, 0.9, 0.599)
    expected_xyxy = np.array([[0.3, 0.15, 0.65, 0.4], [0.0, 0.35, 0.9, 0.599]])
    cxcywh = np.concatenate([(expected_xyxy[:, :2] + expected_xyxy[:, 2:]) / 2,
                             expected_xyxy[:, 2:] - expected_xyxy[:, :2]], 1)
    np.testing.assert_allclose(query.numpy(), logit(cxcywh), rtol=1e-5, atol=1e-5)


def test_box_noise_clamp_and_eps(monkeypatch):
    gen = generator(box_noise_scale=1.0)
    gt = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    monkeypatch.setattr(torch, 'randint_like',
                        lambda t, low, high, dtype: torch.tensor([[0., 0., 1., 1.]] * 2))
    monkeypatch.setattr(torch, 'rand_like', lambda t: torch.full((2, 4), 0.5))
    query = gen.generate_dn_bbox_query(gt, num_groups=1)
    # Every corner moves outwards and is clamped back: the box stays (0.5, 0.5, 1, 1);
    # inverse_sigmoid bounds 1 - x below by eps = 1e-3: logit(1) = log(1 / 1e-3).
    expected = [0.0, 0.0, math.log(1 / 1e-3), math.log(1 / 1e-3)]
    np.testing.assert_allclose(query.numpy(), [expected, expected], atol=1e-4)


@pytest.mark.parametrize('scale', [0.4, 0.2])
def test_box_noise_stays_in_its_band(scale):
    # Scales below 0.5 keep every noisy box upright (x1 < x2): with 1.0 a negative copy can
    # flip, and its (cx, cy, w, h) no longer gives back the moved corners.
    torch.manual_seed(0)
    gen = generator(box_noise_scale=scale)
    centers = torch.rand(20, 2) * 0.2 + 0.4  # boxes well inside the image: no clamping
    sizes = torch.rand(20, 2) * 0.1 + 0.1
    gt = torch.cat([centers - sizes / 2, centers + sizes / 2], 1)
    num_groups = 3
    query = gen.generate_dn_bbox_query(gt, num_groups)
    assert query.shape == (2 * num_groups * 20, 4)
    cx, cy, w, h = query.sigmoid().double().unbind(-1)
    noisy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    noisy = noisy.view(num_groups, 2, 20, 4)  # group, positive / negative, gt, corner
    offset = (noisy - gt.double()).abs() / (sizes.double().repeat(1, 2) * scale / 2)
    tol = 1e-3
    assert (offset[:, 0] < 1 + tol).all()  # positives: less than half the noise scale
    assert (offset[:, 1] > 1 - tol).all() and (offset[:, 1] < 2 + tol).all()


def test_collate_layout():
    # Image A has 1 target, image B has 2; K = 2 groups -> M = 2, D = 8.
    gen = generator(embed_dims=1)
    labels_in = torch.arange(12, dtype=torch.float32)[:, None] + 1  # row r holds r + 1
    boxes_in = labels_in.repeat(1, 4)
    batch_idx = torch.tensor([0, 1, 1])  # ground truths A1, B1, B2
    labels, boxes = gen.collate_dn_queries(labels_in, boxes_in, batch_idx, 2, 2)
    assert labels.shape == (2, 8, 1) and boxes.shape == (2, 8, 4)
    # Copy j of ground truth g is input row 3j + g (+1 stored); slot j*M + i per image.
    expected_a = [1, 0, 4, 0, 7, 0, 10, 0]
    expected_b = [2, 3, 5, 6, 8, 9, 11, 12]
    assert labels[..., 0].tolist() == [expected_a, expected_b]
    assert torch.equal(boxes, labels.repeat(1, 1, 4))


def test_forward_batch():
    torch.manual_seed(1)
    gen = generator(num_classes=3, embed_dims=8, num_matching_queries=5,
                    group_cfg=dict(dynamic=True, num_dn_queries=4))
    samples = [make_det_sample([[8, 8, 40, 24]], [2], img_shape=(64, 96)),
               make_det_sample([[0, 0, 32, 32], [16, 16, 64, 48]], [0, 1], img_shape=(64, 64))]
    samples[0].gt_instances.bboxes = HorizontalBoxes(samples[0].gt_instances.bboxes)
    label_query, bbox_query, attn_mask, dn_meta = gen(samples)
    # M = 2 -> K = 4 // 2 = 2 groups, D = 2 * 2 * 2 = 8.
    assert dn_meta == dict(num_denoising_queries=8, num_denoising_groups=2)
    assert label_query.shape == (2, 8, 8) and bbox_query.shape == (2, 8, 4)
    assert torch.equal(attn_mask, gen.generate_dn_mask(2, 2, device='cpu'))
    # Image 0 has one target: slots 1, 3, 5, 7 are padding (zeros).
    assert (label_query[0, 1::2] == 0).all() and (bbox_query[0, 1::2] == 0).all()
    # The positive copies (slots 0-1 and 4-5) stay near the normalized gt boxes.
    gt0 = torch.tensor([24 / 96, 16 / 64, 32 / 96, 16 / 64])
    gt1 = torch.tensor([[16 / 64, 16 / 64, 32 / 64, 32 / 64], [40 / 64, 32 / 64, 48 / 64,
                                                               32 / 64]])
    for slot in (0, 4):
        box = bbox_query[0, slot].sigmoid()
        assert (box[:2] - gt0[:2]).abs().max() <= gt0[2:].max() / 2 + 1e-4
        for i in range(2):
            box = bbox_query[1, slot + i].sigmoid()
            assert (box[:2] - gt1[i, :2]).abs().max() <= gt1[i, 2:].max() / 2 + 1e-4


def test_forward_without_ground_truth():
    gen = generator(num_matching_queries=4)
    samples = [make_det_sample([], [], img_shape=(32, 32)) for _ in range(2)]
    label_query, bbox_query, attn_mask, dn_meta = gen(samples)
    assert dn_meta == dict(num_denoising_queries=0, num_denoising_groups=1)
    assert label_query.shape == (2, 0, 8) and bbox_query.shape == (2, 0, 4)
    assert attn_mask.shape == (4, 4) and not attn_mask.any()
