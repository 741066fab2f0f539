"""MultiBranch, RandomOrder and ProposalBroadcaster on hand-made results."""
import numpy as np
import pytest
import torch
from transform_helpers import H, W, make_image, make_results

from mmcv.transforms import BaseTransform
from mmdet_lite.datasets.transforms import MultiBranch, ProposalBroadcaster, RandomOrder
from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.bbox import HorizontalBoxes
from mmdet_lite.utils import register_all_modules

register_all_modules(init_default_scope=False)

BOXES = [[4, 10, 12, 20], [20, 2, 28, 9]]
PROPOSALS = [[1, 1, 5, 6], [10, 3, 29, 18], [0, 0, 30, 20]]


class Append(BaseTransform):
    """Appends its name to results['trace']."""

    def __init__(self, name):
        self.name = name

    def transform(self, results):
        results.setdefault('trace', []).append(self.name)
        return results


class Drop(BaseTransform):
    def transform(self, results):
        return None


# ------------------------------------------------------------------ MultiBranch

def test_multi_branch_groups_outputs_by_key_then_branch():
    branch_field = ['sup', 'unsup_teacher', 'unsup_student']
    wrapper = TRANSFORMS.build(dict(
        type='MultiBranch', branch_field=branch_field,
        unsup_teacher=[dict(type='RandomFlip', prob=0.), dict(type='PackDetInputs')],
        unsup_student=[dict(type='RandomFlip', prob=1.), dict(type='PackDetInputs')]))
    assert repr(wrapper) == "MultiBranch(branch_pipelines=['unsup_teacher', 'unsup_student'])"
    results = make_results(BOXES, masks=None)
    out = wrapper(results)
    assert set(out) == {'inputs', 'data_samples'}
    for key in out:
        assert list(out[key]) == branch_field
        assert out[key]['sup'] is None
    teacher, student = out['inputs']['unsup_teacher'], out['inputs']['unsup_student']
    assert isinstance(teacher, torch.Tensor) and teacher.shape == (3, H, W)
    # the student branch flipped its own copy; the teacher and the input did not
    torch.testing.assert_close(student, teacher.flip(-1))
    np.testing.assert_array_equal(results['img'], make_image())
    assert isinstance(out['data_samples']['unsup_student'], DetDataSample)
    np.testing.assert_allclose(
        out['data_samples']['unsup_student'].gt_instances.bboxes.numpy(),
        [[W - 12, 10, W - 4, 20], [W - 28, 2, W - 20, 9]])


def test_multi_branch_keeps_extra_keys_and_returns_none_when_a_branch_does():
    wrapper = MultiBranch(branch_field=['a', 'b'], a=[Append('x')], b=Append('y'))
    out = wrapper({'img_id': 3})
    assert out['trace'] == {'a': ['x'], 'b': ['y']}
    assert out['img_id'] == {'a': 3, 'b': 3}
    # placeholders only stand for branches without a pipeline here
    assert 'inputs' not in out
    assert MultiBranch(branch_field=['a', 'b'], a=[Append('x')], b=[Drop()])({}) is None


# ------------------------------------------------------------------ RandomOrder

@pytest.mark.parametrize('seed', range(4))
def test_random_order_applies_each_transform_once_in_a_seeded_permutation(seed):
    order = RandomOrder([Append('a'), Append('b'), Append('c')])
    np.random.seed(seed)
    out = order({})
    expected = [['a', 'b', 'c'][i] for i in np.random.RandomState(seed).permutation(3)]
    assert out['trace'] == expected


def test_random_order_builds_configs_and_stops_at_none():
    order = TRANSFORMS.build(dict(type='RandomOrder', transforms=[
        dict(type='RandomFlip', prob=1.), dict(type='YOLOXHSVRandomAug')]))
    assert repr(order) == 'RandomOrder(RandomFlip, YOLOXHSVRandomAug, )'
    assert RandomOrder([Append('a'), Drop()])({}) is None


# ------------------------------------------------------------------ ProposalBroadcaster

def proposal_results(kind='hbox'):
    results = make_results(BOXES, masks=None)
    results['proposals'] = np.array(PROPOSALS, dtype=np.float32)
    if kind == 'hbox':
        results['gt_bboxes'] = HorizontalBoxes(results['gt_bboxes'])
    return results


@pytest.mark.parametrize('seed', range(6))
def test_proposal_broadcaster_flips_proposals_with_the_boxes(seed):
    broadcaster = TRANSFORMS.build(dict(type='ProposalBroadcaster', transforms=[
        dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical'])]))
    np.random.seed(seed)
    out = broadcaster(proposal_results())
    direction = out['flip_direction'] if out['flip'] else None

    def flipped(boxes):
        boxes = np.array(boxes, dtype=np.float32)
        if direction == 'horizontal':
            boxes[:, [0, 2]] = W - boxes[:, [2, 0]]
        elif direction == 'vertical':
            boxes[:, [1, 3]] = H - boxes[:, [3, 1]]
        return boxes

    np.testing.assert_allclose(out['gt_bboxes'].numpy(), flipped(BOXES))
    np.testing.assert_allclose(out['proposals'], flipped(PROPOSALS))
    assert isinstance(out['proposals'], np.ndarray)


def test_proposal_broadcaster_resizes_proposals_like_the_boxes():
    broadcaster = ProposalBroadcaster(transforms=[
        dict(type='RandomResize', scale=[(15, 10), (60, 40)], keep_ratio=True)])
    for seed in range(4):
        np.random.seed(seed)
        out = broadcaster(proposal_results('numpy'))
        sx, sy = out['scale_factor']
        scale = np.array([sx, sy, sx, sy], dtype=np.float32)
        np.testing.assert_allclose(out['gt_bboxes'], np.array(BOXES) * scale, rtol=1e-5)
        expected = np.array(PROPOSALS) * scale
        expected[:, 0::2] = expected[:, 0::2].clip(0, out['img_shape'][1])
        expected[:, 1::2] = expected[:, 1::2].clip(0, out['img_shape'][0])
        np.testing.assert_allclose(out['proposals'], expected, rtol=1e-5)


def test_proposal_broadcaster_needs_proposals():
    with pytest.raises(AssertionError, match='proposals'):
        ProposalBroadcaster(transforms=[dict(type='RandomFlip', prob=1.)])(
            make_results(BOXES, masks=None))
    out = ProposalBroadcaster()(proposal_results())  # no transforms: unchanged
    np.testing.assert_allclose(out['proposals'], PROPOSALS)
