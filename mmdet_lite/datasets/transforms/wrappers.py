"""Transform wrappers whose inner transforms come from mmdet_lite's registry."""
from typing import Callable, List, Optional, Sequence, Union

from mmcv.transforms import RandomChoice as MMCVRandomChoice

from mmdet_lite.registry import TRANSFORMS

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
