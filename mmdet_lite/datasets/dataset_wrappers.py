"""MultiImageMixDataset: a dataset wrapper feeding mixing transforms (Mosaic, MixUp, ...)."""
import collections.abc
import copy
from typing import List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset, force_full_init

from ..registry import DATASETS, TRANSFORMS


class DatasetWrapperArgError(ValueError, AssertionError):
    """A dataset wrapper got an argument outside what it accepts."""


def _check_type_keys(skip_type_keys: Sequence[str]) -> None:
    if not all(isinstance(key, str) for key in skip_type_keys):
        raise DatasetWrapperArgError('MultiImageMixDataset: skip_type_keys must be a list of '
                                     f'transform type names (str), got {skip_type_keys!r}.')


@DATASETS.register_module()
class MultiImageMixDataset:
    """Run a mixing pipeline on the samples of another dataset.

    ``dataset[idx]`` (the inner dataset's loading pipeline, e.g. LoadImageFromFile +
    LoadAnnotations) is copied and passed through ``pipeline`` transform by transform.
    Before a transform that has ``get_indexes`` (Mosaic, MixUp, CopyPaste), the samples at
    ``transform.get_indexes(self.dataset)`` are loaded into ``results['mix_results']``
    (indices redrawn up to ``max_refetch`` times while one of them loads as None); it is
    removed after the transform. A transform returning None is retried on a fresh copy up
    to ``max_refetch`` times. Transforms whose config ``type`` is in ``skip_type_keys``
    are skipped (changed during training by :meth:`update_skip_type_keys`, e.g. to turn
    off Mosaic and MixUp for the last epochs).

    Args:
        dataset (BaseDataset | dict): The wrapped dataset or its config.
        pipeline (Sequence[dict]): Transform configs.
        skip_type_keys (Sequence[str], optional): Transform types to skip.
            Defaults to None.
        max_refetch (int): Retries for loading mixed samples and for a transform that
            returns None, before a RuntimeError. Defaults to 15.
        lazy_init (bool): Defer the inner dataset's ``full_init``. Defaults to False.
    """

    def __init__(self,
                 dataset: Union[BaseDataset, dict],
                 pipeline: Sequence[dict],
                 skip_type_keys: Optional[Sequence[str]] = None,
                 max_refetch: int = 15,
                 lazy_init: bool = False) -> None:
        if not isinstance(pipeline, collections.abc.Sequence):
            raise DatasetWrapperArgError('MultiImageMixDataset: pipeline must be a list of '
                                         f'transform configs, got {type(pipeline).__name__}.')
        if skip_type_keys is not None:
            _check_type_keys(skip_type_keys)
        self._skip_type_keys = skip_type_keys

        self.pipeline = []
        self.pipeline_types: List[str] = []
        for transform in pipeline:
            if not isinstance(transform, dict):
                raise TypeError('pipeline must be a dict: MultiImageMixDataset takes '
                                f'transform configs, got {type(transform).__name__}.')
            # The config's type name is what skip_type_keys refers to.
            self.pipeline_types.append(transform['type'])
            self.pipeline.append(TRANSFORMS.build(transform))

        if isinstance(dataset, dict):
            self.dataset = DATASETS.build(dataset)
        elif isinstance(dataset, BaseDataset):
            self.dataset = dataset
        else:
            raise TypeError('elements in datasets sequence should be config or `BaseDataset` '
                            f'instance, but got {type(dataset)}')

        self._metainfo = self.dataset.metainfo
        if hasattr(self.dataset, 'flag'):
            self.flag = self.dataset.flag
        self.num_samples = len(self.dataset)
        self.max_refetch = max_refetch

        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        """dict: A copy of the inner dataset's meta information."""
        return copy.deepcopy(self._metainfo)

    def full_init(self) -> None:
        """Fully initialize the inner dataset (once)."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        self._ori_len = len(self.dataset)
        self._fully_initialized = True

    @force_full_init
    def get_data_info(self, idx: int) -> dict:
        """The inner dataset's annotation of sample ``idx``.

        Args:
            idx (int): Sample index.

        Returns:
            dict: Its data info.
        """
        return self.dataset.get_data_info(idx)

    @force_full_init
    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, idx: int) -> dict:
        results = copy.deepcopy(self.dataset[idx])
        for transform, transform_type in zip(self.pipeline, self.pipeline_types):
            if self._skip_type_keys is not None and transform_type in self._skip_type_keys:
                continue
            if hasattr(transform, 'get_indexes'):
                results['mix_results'] = self._load_mix_results(transform)

            for _ in range(self.max_refetch):
                # A fresh copy per try: a transform may edit its input before giving up.
                updated = transform(copy.deepcopy(results))
                if updated is not None:
                    results = updated
                    break
            else:
                raise RuntimeError(
                    f'The training pipeline of the dataset wrapper always return None: '
                    f'{transform_type} returned None {self.max_refetch} times for sample '
                    f'{idx}. Please check the correctness of the dataset and its pipeline.')
            results.pop('mix_results', None)
        return results

    def _load_mix_results(self, transform) -> List[dict]:
        """Load the samples ``transform.get_indexes`` asks for, retrying on None."""
        for _ in range(self.max_refetch):
            indexes = transform.get_indexes(self.dataset)
            if not isinstance(indexes, collections.abc.Sequence):
                indexes = [indexes]
            mix_results = [copy.deepcopy(self.dataset[index]) for index in indexes]
            if None not in mix_results:
                return mix_results
        raise RuntimeError(
            'The loading pipeline of the original dataset always return None: '
            f'{type(transform).__name__} asked {self.max_refetch} times for samples that '
            'loaded as None. Please check the correctness of the dataset and its pipeline.')

    def update_skip_type_keys(self, skip_type_keys: Sequence[str]) -> None:
        """Set the transform types to skip from now on (called by hooks).

        Args:
            skip_type_keys (Sequence[str]): Transform type names.
        """
        _check_type_keys(skip_type_keys)
        self._skip_type_keys = skip_type_keys
