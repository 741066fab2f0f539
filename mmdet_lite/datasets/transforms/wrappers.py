"""Transform wrappers whose inner transforms come from mmdet_lite's registry."""
import copy
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmcv.transforms import RandomChoice as MMCVRandomChoice
from mmcv.transforms.utils import cache_random_params, cache_randomness

from mmdet_lite.registry import TRANSFORMS

from .transform_arg_errors import MissingResultKeyError, TransformArgError

TransformCfg = Union[dict, Callable]


@TRANSFORMS.register_module()
class RandomChoice(MMCVRandomChoice):
    """Apply one sub-pipeline, chosen at random, of several candidates.

    mmcv's ``RandomChoice`` builds its sub-pipelines from mmengine's root registry, which
    cannot see mmdet_lite transforms (``RandomCrop``, our mask-aware ``Resize``) unless
    ``mmdet_lite`` is the default scope; here config dicts are built from mmdet_lite's
    registry first. Choosing is mmcv's.

    Args:
        transforms (list[list[dict | callable] | dict | callable]): Candidate
            sub-pipelines.
        prob (list[float], optional): Probability of each candidate, summing to 1.
            Defaults to None (uniform).
    """

    def __init__(self,
                 transforms: List[Union[TransformCfg, Sequence[TransformCfg]]],
                 prob: Optional[List[float]] = None) -> None:
        if not isinstance(transforms, (list, tuple)) or not transforms:
            raise TypeError('RandomChoice: `transforms` must be a non-empty list of '
                            f'sub-pipelines, got {transforms!r}.')
        if prob is not None:
            if len(prob) != len(transforms) or abs(sum(prob) - 1) > 1e-6:
                raise ValueError('RandomChoice: `prob` needs one probability per '
                                 f'sub-pipeline, summing to 1; got {prob} for '
                                 f'{len(transforms)} sub-pipelines.')
            prob = [float(p) for p in prob]
        candidates = [[_build(t) for t in pipeline] if isinstance(pipeline, (list, tuple))
                      else _build(pipeline) for pipeline in transforms]
        super().__init__(transforms=candidates)
        # Set after mmcv's init, whose exact `sum(prob) == 1` rejects e.g. [0.1, 0.2, 0.7].
        self.prob = prob

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(transforms={self.transforms}, prob={self.prob})'


def _build(transform: TransformCfg):
    return TRANSFORMS.build(transform) if isinstance(transform, dict) else transform


def _compose(pipeline: Union[TransformCfg, Sequence[TransformCfg], None]) -> Compose:
    """mmcv's ``Compose`` of a pipeline whose config dicts are built from our registry."""
    if pipeline is None:
        pipeline = []
    elif not isinstance(pipeline, (list, tuple)):
        pipeline = [pipeline]
    return Compose([_build(t) for t in pipeline])


@TRANSFORMS.register_module()
class MultiBranch(BaseTransform):
    """Run several pipelines on copies of one sample (e.g. weak / strong views).

    Each branch pipeline gets a deep copy of ``results``. The output is regrouped by key:
    ``{key: {branch: value}}``, e.g. ``{'inputs': {'sup': ...}, 'data_samples': {'sup':
    ...}}`` after ``PackDetInputs``. Every name of ``branch_field`` appears under each key,
    with None where this wrapper has no pipeline for it, so samples of different pipelines
    batch together. If any branch returns None, so does this (the dataset then picks
    another sample).

    Args:
        branch_field (list[str]): Names of all branches of the dataset.
        **branch_pipelines (list[dict | callable]): Pipeline of each branch run here.
    """

    def __init__(self, branch_field: List[str], **branch_pipelines) -> None:
        self.branch_field = branch_field
        self.branch_pipelines = {branch: _compose(pipeline)
                                 for branch, pipeline in branch_pipelines.items()}

    def transform(self, results: dict) -> Optional[Dict[str, dict]]:
        """Run every branch on a copy of ``results``.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict | None: ``{key: {branch: value}}``, or None if a branch returned None.
        """
        per_branch = {branch: {'inputs': None, 'data_samples': None}
                      for branch in self.branch_field}
        for branch, pipeline in self.branch_pipelines.items():
            branch_results = pipeline(copy.deepcopy(results))
            if branch_results is None:
                return None
            per_branch[branch] = branch_results

        by_key: Dict[str, dict] = {}
        for branch, branch_results in per_branch.items():
            for key, value in branch_results.items():
                by_key.setdefault(key, {})[branch] = value
        return by_key

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(branch_pipelines={list(self.branch_pipelines)})'


@TRANSFORMS.register_module()
class RandomOrder(Compose):
    """Apply the transforms in a random order (a new permutation per sample).

    Args:
        transforms (list[dict | callable]): The transforms.
    """

    def __init__(self, transforms: Union[TransformCfg, Sequence[TransformCfg]]) -> None:
        if not isinstance(transforms, (list, tuple)):
            transforms = [transforms]
        super().__init__([_build(t) for t in transforms])

    @cache_randomness
    def _random_permutation(self) -> np.ndarray:
        return np.random.permutation(len(self.transforms))

    def transform(self, results: Dict) -> Optional[Dict]:
        """Apply each transform once, in a random order; stop at a None.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict | None: The results, or None if a transform returned None.
        """
        for index in self._random_permutation():
            results = self.transforms[index](results)
            if results is None:
                return None
        return results

    def __repr__(self) -> str:
        names = ''.join(f'{t.__class__.__name__}, ' for t in self.transforms)
        return f'{self.__class__.__name__}({names})'


@TRANSFORMS.register_module()
class ProposalBroadcaster(BaseTransform):
    """Apply the same (geometric) transforms, with the same random draws, to
    ``gt_bboxes`` and ``proposals``.

    A deep copy of ``results`` whose ``gt_bboxes`` are the proposals runs through the
    wrapped pipeline after the original, with the random parameters of the first run
    replayed (mmcv's ``cache_random_params``); its output boxes become ``proposals``.
    Keys other than ``gt_bboxes`` (labels, masks) are not swapped in the copy, so use
    transforms that keep every box (Resize, RandomFlip, Pad ...).

    Args:
        transforms (list[dict | callable]): The wrapped pipeline. Defaults to [].
    """

    def __init__(self, transforms: Optional[List[TransformCfg]] = None) -> None:
        self.transforms = _compose(transforms)

    def transform(self, results: dict) -> dict:
        """Transform ``results`` and its proposals alike.

        Args:
            results (dict): Pipeline results with ``proposals``.

        Returns:
            dict: The transformed results, with transformed ``proposals``.
        """
        if results.get('proposals') is None:
            raise MissingResultKeyError(
                'ProposalBroadcaster needs results[\'proposals\'] (LoadProposals before '
                'it), or remove ProposalBroadcaster from the pipeline.')
        inputs = self._process_input(results)
        outputs = self._apply_transforms(inputs)
        return self._process_output(outputs)

    def _process_input(self, data: dict) -> List[dict]:
        """[the original results, a copy with the proposals as ``gt_bboxes``]."""
        proposals_data = copy.deepcopy(data)
        proposals_data['gt_bboxes'] = proposals_data['proposals']
        return [data, proposals_data]

    def _apply_transforms(self, inputs: List[dict]) -> List[dict]:
        """Run the pipeline on both inputs with the same random parameters."""
        with cache_random_params(self.transforms):
            return [self.transforms(item) for item in inputs]

    def _process_output(self, output_scatters: List[dict]) -> dict:
        """The first output, with the second's boxes as ``proposals``."""
        if not all(isinstance(item, dict) for item in output_scatters):
            raise TransformArgError(
                'ProposalBroadcaster: the wrapped pipeline returned None for the sample or '
                'its proposals; wrap only transforms that always return results.')
        outputs = output_scatters[0]
        outputs['proposals'] = output_scatters[1]['gt_bboxes']
        return outputs
