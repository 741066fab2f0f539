"""AutoAugment / RandAugment: seeded choice among policies and end-to-end runs with labels."""
import numpy as np
import pytest
from mmcv.transforms import RandomChoice as MMCVRandomChoice
from transform_helpers import make_image, make_results

from mmdet_lite.datasets.transforms import (AutoAugment, Invert, Posterize, RandAugment,
                                            Solarize, SolarizeAdd)
from mmdet_lite.datasets.transforms.augment_wrappers import (AUTOAUG_POLICIES_V0,
                                                             RANDAUG_SPACE, policies_v0)
from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import HorizontalBoxes

BOXES = [[3, 2, 9, 8], [10, 5, 28, 18]]

# Deterministic colour ops (prob 1, fixed level), each with a distinct, known effect.
COLOR_POLICIES = [[dict(type='Invert')], [dict(type='Posterize', level=5)],
                  [dict(type='Solarize', level=5)], [dict(type='SolarizeAdd', level=5)]]
EXPECTED_OPS = [Invert(), Posterize(level=5), Solarize(level=5), SolarizeAdd(level=5)]


def colour(op, img: np.ndarray) -> np.ndarray:
    return op(dict(img=img.copy()))['img']


def test_autoaugment_is_mmcv_random_choice_and_registered():
    transform = TRANSFORMS.build(dict(type='AutoAugment', policies=COLOR_POLICIES))
    assert isinstance(transform, AutoAugment) and isinstance(transform, MMCVRandomChoice)
    assert isinstance(TRANSFORMS.build(dict(type='RandAugment')), MMCVRandomChoice)


def test_autoaugment_picks_the_seeded_policy():
    transform = AutoAugment(policies=COLOR_POLICIES)
    img = make_image()
    picked = set()
    for seed in range(12):
        np.random.seed(seed)
        index = np.random.choice(np.arange(len(COLOR_POLICIES)))
        picked.add(int(index))
        np.random.seed(seed)
        out = transform(dict(img=img.copy()))['img']
        np.testing.assert_array_equal(out, colour(EXPECTED_OPS[index], img))
    assert picked == {0, 1, 2, 3}


def test_autoaugment_prob_selects_policy():
    transform = AutoAugment(policies=COLOR_POLICIES, prob=[0.0, 0.0, 1.0, 0.0])
    img = make_image()
    for _ in range(3):
        np.testing.assert_array_equal(transform(dict(img=img.copy()))['img'],
                                      colour(EXPECTED_OPS[2], img))


def test_autoaugment_runs_a_policy_in_order():
    # Invert then Posterize(2 bits) differs from the other order.
    transform = AutoAugment(policies=[[dict(type='Invert'), dict(type='Posterize', level=5)]])
    img = make_image()
    np.testing.assert_array_equal(
        transform(dict(img=img.copy()))['img'], (255 - img) & 0b11000000)


def test_default_policies_are_v0():
    transform = AutoAugment()
    assert transform.policies == policies_v0()
    assert len(transform.transforms) == len(AUTOAUG_POLICIES_V0) == 25
    first = transform.transforms[0].transforms
    assert [type(op).__name__ for op in first] == ['Equalize', 'ShearY']
    assert (first[0].prob, first[0].level, first[1].prob, first[1].level) == (0.8, 1, 0.8, 4)
    names = {op for policy in AUTOAUG_POLICIES_V0 for op, _, _ in policy}
    assert names == {'Equalize', 'ShearY', 'Color', 'Rotate', 'Solarize', 'SolarizeAdd',
                     'ShearX', 'Invert', 'Posterize', 'AutoContrast', 'TranslateY'}


@pytest.mark.parametrize('box_kind', ['numpy', 'hbox'])
@pytest.mark.parametrize('transform_cfg', [dict(type='AutoAugment'), dict(type='RandAugment'),
                                           dict(type='RandAugment', aug_num=4)])
def test_default_spaces_run_end_to_end(box_kind, transform_cfg):
    transform = TRANSFORMS.build(transform_cfg)
    for seed in range(8):
        np.random.seed(seed)
        results = make_results(BOXES, labels=[3, 4], ignore=[False, True])
        if box_kind == 'hbox':
            results['gt_bboxes'] = HorizontalBoxes(results['gt_bboxes'])
        results['gt_seg_map'] = np.zeros(results['img'].shape[:2], dtype=np.uint8)
        out = transform(results)
        boxes = out['gt_bboxes']
        assert isinstance(boxes, HorizontalBoxes if box_kind == 'hbox' else np.ndarray)
        assert len(boxes) == len(out['gt_bboxes_labels']) == len(out['gt_masks']) == 2
        np.testing.assert_array_equal(out['gt_bboxes_labels'], [3, 4])
        np.testing.assert_array_equal(out['gt_ignore_flags'], [False, True])
        h, w = out['img'].shape[:2]
        assert out['img'].dtype == np.uint8
        assert (out['gt_masks'].height, out['gt_masks'].width) == (h, w)
        assert out['gt_seg_map'].shape == (h, w)
        box_array = boxes.numpy() if box_kind == 'hbox' else boxes
        assert np.all(box_array >= 0) and np.all(box_array[:, [0, 2]] <= w)
        assert np.all(box_array[:, [1, 3]] <= h)


def test_randaugment_applies_seeded_distinct_ops_in_order():
    transform = RandAugment(aug_space=COLOR_POLICIES, aug_num=2)
    img = make_image()
    pairs = set()
    for seed in range(20):
        np.random.seed(seed)
        first, second = np.random.choice(np.arange(4), 2, replace=False)
        assert first != second
        pairs.add((int(first), int(second)))
        np.random.seed(seed)
        out = transform(dict(img=img.copy()))['img']
        expected = colour(EXPECTED_OPS[second], colour(EXPECTED_OPS[first], img))
        np.testing.assert_array_equal(out, expected)
    assert len(pairs) > 4


def test_randaugment_prob_and_aug_num():
    transform = RandAugment(aug_space=COLOR_POLICIES, aug_num=1, prob=[0.0, 1.0, 0.0, 0.0])
    img = make_image()
    np.testing.assert_array_equal(transform(dict(img=img.copy()))['img'], img & 0b11000000)
    assert RandAugment().aug_num == 2 and RandAugment().prob is None
    assert RandAugment().aug_space == RANDAUG_SPACE


def test_randaugment_default_space_has_random_levels():
    transform = RandAugment()
    assert len(transform.transforms) == 15
    ops = [pipeline.transforms[0] for pipeline in transform.transforms]
    assert all(op.level is None for op in ops)
    assert [type(op).__name__ for op in ops] == [space[0]['type'] for space in RANDAUG_SPACE]


def test_reprs():
    policies = [[dict(type='Invert', prob=0.5)]]
    assert repr(AutoAugment(policies=policies)) == (
        "AutoAugment(policies=[[{'type': 'Invert', 'prob': 0.5}]], prob=None)")
    assert repr(RandAugment(aug_space=[[dict(type='Invert')], [dict(type='Equalize')]],
                            aug_num=1, prob=[0.5, 0.5])) == (
        "RandAugment(aug_space=[[{'type': 'Invert'}], [{'type': 'Equalize'}]], "
        'aug_num=1, prob=[0.5, 0.5])')


@pytest.mark.parametrize('kwargs', [
    dict(policies=[]), dict(policies=dict(type='Invert')), dict(policies=[[]]),
    dict(policies=[dict(type='Invert')]), dict(policies=[[dict(prob=0.5)]]),
    dict(policies=[['Invert']]),
    dict(policies=COLOR_POLICIES, prob=[0.5, 0.5]),
    dict(policies=COLOR_POLICIES, prob=[0.5, 0.5, 0.5, 0.5]),
])
def test_autoaugment_invalid_args(kwargs):
    with pytest.raises(AssertionError):
        AutoAugment(**kwargs)


@pytest.mark.parametrize('kwargs', [
    dict(aug_space=[]), dict(aug_space=[dict(type='Invert')]),
    dict(aug_space=[[dict(type='Invert'), dict(type='Equalize')]]),
    dict(aug_space=[[dict(prob=1.0)]]),
    dict(aug_space=COLOR_POLICIES, prob=[1.0]),
])
def test_randaugment_invalid_args(kwargs):
    with pytest.raises(AssertionError):
        RandAugment(**kwargs)


def test_unknown_op_name_raises_key_error():
    with pytest.raises(KeyError, match='NotAnOp'):
        AutoAugment(policies=[[dict(type='NotAnOp')]])
