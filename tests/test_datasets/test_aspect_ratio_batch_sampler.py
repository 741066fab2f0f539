"""AspectRatioBatchSampler: portrait and landscape images go to separate batches."""
import pytest
from mmengine.dataset import DefaultSampler

from mmdet_lite.datasets import AspectRatioBatchSampler
from mmdet_lite.registry import DATA_SAMPLERS


class SizedDataset:
    """Only what the sampler reads: a length and per-index width / height."""

    def __init__(self, sizes):
        self.sizes = sizes  # list of (width, height)

    def __len__(self):
        return len(self.sizes)

    def get_data_info(self, idx):
        width, height = self.sizes[idx]
        return dict(width=width, height=height)


LANDSCAPE, PORTRAIT, SQUARE = (640, 480), (480, 640), (500, 500)


def make_sampler(sizes, batch_size, drop_last=False):
    sampler = DefaultSampler(SizedDataset(sizes), shuffle=False)
    return AspectRatioBatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)


def test_batches_hold_one_orientation_and_leftovers_come_last():
    #         0          1         2          3         4         5       6
    sizes = [LANDSCAPE, PORTRAIT, LANDSCAPE, PORTRAIT, PORTRAIT, SQUARE, PORTRAIT]
    batches = list(make_sampler(sizes, batch_size=2))
    # A square image counts as landscape (width >= height).
    assert batches == [[0, 2], [1, 3], [4, 6], [5]]
    assert len(make_sampler(sizes, batch_size=2)) == 4


def test_drop_last_drops_the_short_final_batch():
    sizes = [LANDSCAPE, PORTRAIT, LANDSCAPE, PORTRAIT, PORTRAIT, SQUARE, PORTRAIT]
    sampler = make_sampler(sizes, batch_size=2, drop_last=True)
    assert list(sampler) == [[0, 2], [1, 3], [4, 6]]
    assert len(sampler) == 3


def test_leftovers_of_both_buckets_are_mixed_portrait_first():
    sizes = [LANDSCAPE, PORTRAIT, LANDSCAPE, PORTRAIT]
    assert list(make_sampler(sizes, batch_size=3)) == [[1, 3, 0], [2]]


def test_iterating_twice_gives_the_same_batches():
    sampler = make_sampler([LANDSCAPE, PORTRAIT, PORTRAIT], batch_size=2)
    assert list(sampler) == list(sampler) == [[1, 2], [0]]


def test_build_from_registry():
    sampler = DefaultSampler(SizedDataset([LANDSCAPE] * 3), shuffle=False)
    batch_sampler = DATA_SAMPLERS.build(
        dict(type='AspectRatioBatchSampler', sampler=sampler, batch_size=2))
    assert isinstance(batch_sampler, AspectRatioBatchSampler)
    assert list(batch_sampler) == [[0, 1], [2]]


def test_bad_arguments():
    sampler = DefaultSampler(SizedDataset([LANDSCAPE]), shuffle=False)
    with pytest.raises(ValueError, match='batch_size must be a positive int, got 0'):
        AspectRatioBatchSampler(sampler, batch_size=0)
    with pytest.raises(TypeError, match='needs a torch Sampler'):
        AspectRatioBatchSampler([0, 1], batch_size=2)
