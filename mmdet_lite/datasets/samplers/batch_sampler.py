"""Batch sampler that keeps landscape and portrait images in separate batches."""
from typing import Iterator, List

from torch.utils.data import BatchSampler, Sampler

from ...registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class AspectRatioBatchSampler(BatchSampler):
    """Batch indices of images with the same orientation (``width < height`` or not).

    Padding a portrait and a landscape image to one batch shape wastes most of both; this
    sampler fills two buckets from ``sampler`` and yields a bucket once it holds
    ``batch_size`` indices. Indices left in both buckets at the end are mixed into the final
    batches (the last one shorter, or dropped with ``drop_last``), as in mmdetection.

    Args:
        sampler (Sampler): Index sampler with a ``dataset`` attribute whose
            ``get_data_info(idx)`` has ``width`` and ``height`` (e.g. mmengine's
            ``DefaultSampler``).
        batch_size (int): Indices per batch.
        drop_last (bool): Drop the final batch if it is shorter than ``batch_size``.
            Defaults to False.
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool = False) -> None:
        if not isinstance(sampler, Sampler):
            raise TypeError('AspectRatioBatchSampler needs a torch Sampler as sampler, got '
                            f'{type(sampler).__name__}')
        if not hasattr(sampler, 'dataset'):
            raise TypeError(f'sampler {type(sampler).__name__} has no dataset attribute; '
                            'AspectRatioBatchSampler reads image sizes from '
                            'sampler.dataset.get_data_info(idx)')
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[List[int]]:
        buckets: List[List[int]] = [[], []]  # [portrait, landscape or square]
        for idx in self.sampler:
            data_info = self.sampler.dataset.get_data_info(idx)
            bucket = buckets[0 if data_info['width'] < data_info['height'] else 1]
            bucket.append(idx)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()
        leftover = buckets[0] + buckets[1]
        for start in range(0, len(leftover), self.batch_size):
            batch = leftover[start:start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        """Batch count as mmdetection computes it; with ``drop_last`` and two part-filled
        buckets, iteration may yield one batch fewer."""
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
