"""mask_matrix_nms: hand-computed decays (linear and gaussian), the pre/post filters, and a
loop-by-loop reference on random masks.

The 3-mask case lives on a 1 x 8 strip (all of class 0 unless stated):

    A = columns 0-3 (score 0.9), B = columns 2-5 (0.8), C = columns 3-6 (0.7)
    IoU(A, B) = 2/6 = 1/3, IoU(A, C) = 1/7, IoU(B, C) = 3/5

Compensation (how suppressed each mask is by the masks above it): A 0, B 1/3, C 3/5.
Decay of j = min over i of f(iou[i, j]) / f(comp[i]) (iou 0 unless i is above j):

- linear f(x) = 1 - x: B = min(2/3, 1/(2/3), 1/(2/5)) = 2/3;
  C = min(6/7, (2/5)/(2/3), 1/(2/5)) = 3/5.
- gaussian, sigma 2: B = exp(-2/9);
  C = min(exp(-2/49), exp(-2 * 9/25) / exp(-2/9), exp(2 * 9/25)) = exp(-18/25 + 2/9).
"""
import math

import numpy as np
import pytest
import torch

from mmdet_lite.models.layers import mask_matrix_nms


def strip(*spans) -> torch.Tensor:
    """Masks [N, 1, 8] with columns [lo, hi) set."""
    masks = torch.zeros(len(spans), 1, 8, dtype=torch.bool)
    for mask, (lo, hi) in zip(masks, spans):
        mask[0, lo:hi] = True
    return masks


# Inputs in a shuffled order (C, A, B) so that keep_inds must map back to it.
MASKS = strip((3, 7), (0, 4), (2, 6))
SCORES = torch.tensor([0.7, 0.9, 0.8])
A, B, C = 1, 2, 0  # input indices


def test_linear_decay_matches_the_hand_computed_case():
    scores, labels, masks, keep = mask_matrix_nms(MASKS, torch.zeros(3, dtype=torch.long),
                                                  SCORES, kernel='linear')
    # A 0.9, B 0.8 * 2/3 = 0.5333, C 0.7 * 3/5 = 0.42
    assert keep.tolist() == [A, B, C]
    assert torch.allclose(scores, torch.tensor([0.9, 0.8 * 2 / 3, 0.7 * 3 / 5]))
    assert torch.equal(masks, MASKS[[A, B, C]])
    assert labels.tolist() == [0, 0, 0]


def test_gaussian_decay_matches_the_hand_computed_case():
    scores, _, _, keep = mask_matrix_nms(MASKS, torch.zeros(3, dtype=torch.long), SCORES,
                                         kernel='gaussian', sigma=2.0)
    decay_b = math.exp(-2 / 9)
    decay_c = math.exp(-18 / 25 + 2 / 9)
    assert keep.tolist() == [A, B, C]
    assert torch.allclose(scores, torch.tensor([0.9, 0.8 * decay_b, 0.7 * decay_c]))


def test_a_different_class_is_not_suppressed():
    # C becomes class 1: nothing above it is of its class, so it keeps 0.7 and ranks second.
    labels = torch.tensor([1, 0, 0])
    scores, out_labels, _, keep = mask_matrix_nms(MASKS, labels, SCORES, kernel='linear')
    assert keep.tolist() == [A, C, B]
    assert torch.allclose(scores, torch.tensor([0.9, 0.7, 0.8 * 2 / 3]))
    assert out_labels.tolist() == [0, 1, 0]


def test_filter_thr_and_max_num_apply_after_the_decay():
    labels = torch.zeros(3, dtype=torch.long)
    # 0.42 < 0.5 <= 0.533: C goes.
    scores, _, masks, keep = mask_matrix_nms(MASKS, labels, SCORES, kernel='linear',
                                             filter_thr=0.5)
    assert keep.tolist() == [A, B] and masks.shape == (2, 1, 8)
    scores, _, _, keep = mask_matrix_nms(MASKS, labels, SCORES, kernel='linear', max_num=1)
    assert keep.tolist() == [A] and torch.allclose(scores, torch.tensor([0.9]))
    # Nothing passes: empty outputs of the right shapes.
    scores, out_labels, masks, keep = mask_matrix_nms(MASKS, labels, SCORES, filter_thr=0.95)
    assert scores.shape == (0, ) and out_labels.shape == (0, ) and keep.shape == (0, )
    assert masks.shape == (0, 1, 8)


def test_nms_pre_drops_the_low_scores_before_the_decay():
    # Only A and C take part: C is decayed by A alone, 1 - 1/7.
    masks = strip((0, 4), (3, 7), (2, 6))
    scores, _, _, keep = mask_matrix_nms(masks, torch.zeros(3, dtype=torch.long),
                                         torch.tensor([0.9, 0.85, 0.1]), kernel='linear',
                                         nms_pre=2)
    assert keep.tolist() == [0, 1]
    assert torch.allclose(scores, torch.tensor([0.9, 0.85 * 6 / 7]))


def test_given_mask_areas_replace_the_pixel_counts():
    # Doubling the declared areas: IoU(A, B) = 2 / (8 + 8 - 2) = 1/7.
    masks = strip((0, 4), (2, 6))
    scores, *_ = mask_matrix_nms(masks, torch.zeros(2, dtype=torch.long),
                                 torch.tensor([0.9, 0.8]), kernel='linear',
                                 mask_area=torch.tensor([8., 8.]))
    assert torch.allclose(scores, torch.tensor([0.9, 0.8 * 6 / 7]))


def test_empty_input_and_bad_arguments():
    scores, labels, masks, keep = mask_matrix_nms(torch.zeros(0, 5, 6), torch.zeros(0),
                                                  torch.zeros(0))
    assert masks.shape == (0, 5, 6) and scores.numel() == labels.numel() == keep.numel() == 0
    with pytest.raises(AssertionError, match='one label and one score per mask'):
        mask_matrix_nms(MASKS, torch.zeros(2), SCORES)
    with pytest.raises(AssertionError, match='mask_area'):
        mask_matrix_nms(MASKS, torch.zeros(3), SCORES, mask_area=torch.ones(2))
    with pytest.raises(NotImplementedError, match='box kernel'):
        mask_matrix_nms(MASKS, torch.zeros(3), SCORES, kernel='box')


def reference_decay(masks: np.ndarray, labels: np.ndarray, scores: np.ndarray, kernel: str,
                    sigma: float) -> np.ndarray:
    """Decayed scores of masks already sorted by score, one pair at a time."""
    n = len(masks)
    flat = masks.reshape(n, -1).astype(np.float64)
    iou = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if labels[i] == labels[j]:
                inter = (flat[i] * flat[j]).sum()
                iou[i, j] = inter / (flat[i].sum() + flat[j].sum() - inter)
    comp = iou.max(0)  # suppression of each mask by those above it
    f = (lambda x: 1 - x) if kernel == 'linear' else (lambda x: np.exp(-sigma * x**2))
    return np.array([scores[j] * min(f(iou[i, j]) / f(comp[i]) for i in range(n))
                     for j in range(n)])


@pytest.mark.parametrize('kernel', ['linear', 'gaussian'])
def test_random_masks_match_the_pairwise_reference(kernel):
    generator = torch.Generator().manual_seed(3)
    masks = torch.rand(12, 10, 10, generator=generator) > 0.5
    labels = torch.randint(0, 3, (12, ), generator=generator)
    scores = torch.rand(12, generator=generator)
    out_scores, out_labels, out_masks, keep = mask_matrix_nms(masks, labels, scores,
                                                              kernel=kernel, sigma=2.0)
    order = torch.argsort(scores, descending=True)
    expected = reference_decay(masks[order].numpy(), labels[order].numpy(),
                               scores[order].numpy(), kernel, 2.0)
    expected_order = np.argsort(-expected, kind='stable')
    assert keep.tolist() == order[expected_order].tolist()
    assert np.allclose(out_scores.numpy(), expected[expected_order], atol=1e-6)
    assert torch.equal(out_labels, labels[keep]) and torch.equal(out_masks, masks[keep])
