"""MultiImageMixDataset: mix_results from get_indexes, skipping, refetching, Mosaic/MixUp."""
import numpy as np
import pytest
from mmengine.dataset import BaseDataset

from mmcv.transforms import BaseTransform
from mmdet_lite.datasets import MultiImageMixDataset
from mmdet_lite.registry import DATASETS, TRANSFORMS
from mmdet_lite.structures.bbox import HorizontalBoxes

H, W = 20, 30


class TinyDataset(BaseDataset):
    """Four in-memory samples: image k is all 50 k, with one box and label k."""
    METAINFO = dict(classes=('a', 'b', 'c', 'd'))

    def __init__(self, **kwargs):
        super().__init__(ann_file='', serialize_data=False, **kwargs)

    def load_data_list(self):
        return [dict(img_id=k, img=np.full((H, W, 3), 50 * k, np.uint8), img_shape=(H, W),
                     gt_bboxes=np.array([[k, k, 10 + k, 10 + k]], np.float32),
                     gt_bboxes_labels=np.array([k]), gt_ignore_flags=np.array([False]))
                for k in range(4)]


@TRANSFORMS.register_module(force=True)
class RecordMixForTest(BaseTransform):
    """Asks for samples 1 and 3 and records the ids it received."""

    def get_indexes(self, dataset):
        return [1, 3]

    def transform(self, results):
        results['seen'] = [r['img_id'] for r in results['mix_results']]
        results['mix_results'][0]['img_id'] = -1  # must not leak into the dataset
        return results


@TRANSFORMS.register_module(force=True)
class SingleIndexForTest(BaseTransform):
    def get_indexes(self, dataset):
        return 2  # an int is wrapped in a list

    def transform(self, results):
        results['seen_single'] = [r['img_id'] for r in results['mix_results']]
        return results


@TRANSFORMS.register_module(force=True)
class FlakyForTest(BaseTransform):
    """Returns None for its first ``fails`` calls."""

    def __init__(self, fails):
        self.fails = fails
        self.calls = 0

    def transform(self, results):
        self.calls += 1
        if self.calls <= self.fails:
            results['dirty'] = True  # edits before giving up must not survive
            return None
        results['tries'] = self.calls
        return results


def test_get_indexes_samples_arrive_as_mix_results_and_are_removed():
    dataset = MultiImageMixDataset(TinyDataset(), [dict(type='RecordMixForTest'),
                                                   dict(type='SingleIndexForTest')])
    out = dataset[0]
    assert out['img_id'] == 0 and out['seen'] == [1, 3] and out['seen_single'] == [2]
    assert 'mix_results' not in out
    assert dataset.dataset[1]['img_id'] == 1
    assert len(dataset) == 4
    assert dataset.metainfo['classes'] == ('a', 'b', 'c', 'd')
    assert dataset.get_data_info(2)['img_id'] == 2


def test_skip_type_keys_and_their_update():
    dataset = MultiImageMixDataset(TinyDataset(), [dict(type='RecordMixForTest'),
                                                   dict(type='SingleIndexForTest')],
                                   skip_type_keys=['RecordMixForTest'])
    out = dataset[0]
    assert 'seen' not in out and out['seen_single'] == [2]
    dataset.update_skip_type_keys(['SingleIndexForTest'])
    out = dataset[0]
    assert out['seen'] == [1, 3] and 'seen_single' not in out
    with pytest.raises(AssertionError, match='skip_type_keys'):
        dataset.update_skip_type_keys([1])
    with pytest.raises(AssertionError, match='skip_type_keys'):
        MultiImageMixDataset(TinyDataset(), [], skip_type_keys=[None])


def test_a_transform_returning_none_is_retried_on_a_fresh_copy():
    dataset = MultiImageMixDataset(TinyDataset(), [dict(type='FlakyForTest', fails=2)])
    out = dataset[1]
    assert out['tries'] == 3 and 'dirty' not in out
    dataset = MultiImageMixDataset(TinyDataset(), [dict(type='FlakyForTest', fails=99)],
                                   max_refetch=3)
    with pytest.raises(RuntimeError, match='always return None'):
        dataset[0]
    assert dataset.pipeline[0].calls == 3


def test_build_from_configs_lazily_and_reject_bad_pipelines():
    DATASETS.register_module(module=TinyDataset, force=True)
    dataset = DATASETS.build(dict(type='MultiImageMixDataset',
                                  dataset=dict(type='TinyDataset', lazy_init=True),
                                  pipeline=[dict(type='RecordMixForTest')], lazy_init=True))
    assert not dataset._fully_initialized
    assert dataset[2]['seen'] == [1, 3]
    dataset.full_init()
    assert dataset._fully_initialized and len(dataset) == 4
    with pytest.raises(TypeError, match='pipeline must be a dict'):
        MultiImageMixDataset(TinyDataset(), [RecordMixForTest()])
    with pytest.raises(TypeError, match='BaseDataset'):
        MultiImageMixDataset([1, 2], [])
    with pytest.raises(AssertionError, match='pipeline'):
        MultiImageMixDataset(TinyDataset(), dict(type='RecordMixForTest'))


def test_mosaic_then_mixup_through_the_wrapper():
    """Mosaic pinned at (30, 20): quadrant k is the whole image ids[k]; MixUp then fits its
    20 x 30 image at ratio 2 onto the whole 40 x 60 mosaic (no jitter, flip or offset)."""
    dataset = MultiImageMixDataset(TinyDataset(), [
        dict(type='Mosaic', img_scale=(W, H), center_ratio_range=(1., 1.)),
        dict(type='MixUp', img_scale=(2 * W, 2 * H), ratio_range=(1., 1.), flip_ratio=1.)])
    np.random.seed(0)
    out = dataset[0]

    rng = np.random.RandomState(0)  # replay: Mosaic's indices, prob and center draws,
    ids = [0] + [int(rng.randint(0, 4)) for _ in range(3)]
    rng.uniform(0, 1, size=3)
    mixed = int(rng.randint(0, 4))  # MixUp's index: every sample has a box, kept at once

    assert out['img'].shape == (2 * H, 2 * W, 3) and 'mix_results' not in out
    for k, (y, x) in enumerate([(0, 0), (0, W), (H, 0), (H, W)]):
        value = int(0.5 * 50 * ids[k] + 0.5 * 50 * mixed)
        assert (out['img'][y:y + H, x:x + W] == value).all(), k
    assert isinstance(out['gt_bboxes'], np.ndarray)  # arrays in, arrays out
    expected = [[i + dx, i + dy, 10 + i + dx, 10 + i + dy]
                for i, (dy, dx) in zip(ids, [(0, 0), (0, W), (H, 0), (H, W)])]
    expected.append([2 * mixed, 2 * mixed, 20 + 2 * mixed, 20 + 2 * mixed])
    np.testing.assert_allclose(out['gt_bboxes'], expected)
    assert out['gt_bboxes_labels'].tolist() == ids + [mixed]


def test_box_objects_pass_through_the_wrapper():
    class BoxDataset(TinyDataset):
        def load_data_list(self):
            data = super().load_data_list()
            for item in data:
                item['gt_bboxes'] = HorizontalBoxes(item['gt_bboxes'])
            return data

    dataset = MultiImageMixDataset(BoxDataset(), [
        dict(type='Mosaic', img_scale=(W, H), center_ratio_range=(1., 1.))])
    out = dataset[3]
    assert isinstance(out['gt_bboxes'], HorizontalBoxes) and len(out['gt_bboxes']) == 4
    np.testing.assert_allclose(out['gt_bboxes'].numpy()[0], [3, 3, 13, 13])
