"""AutoAugment and RandAugment: apply ops picked at random from a fixed set of policies.

Ops are named by registered type (colour ops in :mod:`.colorspace`, geometric ones such as
``Rotate``/``ShearX``/``TranslateY`` in :mod:`.geometric`) and built from mmdet_lite's
``TRANSFORMS`` registry.
"""
from typing import List, Optional, Union

import numpy as np
from mmcv.transforms.utils import cache_randomness
from mmengine.config import ConfigDict

from mmdet_lite.registry import TRANSFORMS
from .augment_levels import _MAX_LEVEL, level_to_mag  # noqa: F401  (mmdet exports them here)
from .transform_arg_errors import check_arg
from .wrappers import RandomChoice

# The detection policies of "Learning Data Augmentation Strategies for Object Detection"
# (policy v0): each policy is a sequence of (op, probability, level).
AUTOAUG_POLICIES_V0 = [
    [('Equalize', 0.8, 1), ('ShearY', 0.8, 4)],
    [('Color', 0.4, 9), ('Equalize', 0.6, 3)],
    [('Color', 0.4, 1), ('Rotate', 0.6, 8)],
    [('Solarize', 0.8, 3), ('Equalize', 0.4, 7)],
    [('Solarize', 0.4, 2), ('Solarize', 0.6, 2)],
    [('Color', 0.2, 0), ('Equalize', 0.8, 8)],
    [('Equalize', 0.4, 8), ('SolarizeAdd', 0.8, 3)],
    [('ShearX', 0.2, 9), ('Rotate', 0.6, 8)],
    [('Color', 0.6, 1), ('Equalize', 1.0, 2)],
    [('Invert', 0.4, 9), ('Rotate', 0.6, 0)],
    [('Equalize', 1.0, 9), ('ShearY', 0.6, 3)],
    [('Color', 0.4, 7), ('Equalize', 0.6, 0)],
    [('Posterize', 0.4, 6), ('AutoContrast', 0.4, 7)],
    [('Solarize', 0.6, 8), ('Color', 0.6, 9)],
    [('Solarize', 0.2, 4), ('Rotate', 0.8, 9)],
    [('Rotate', 1.0, 7), ('TranslateY', 0.8, 9)],
    [('ShearX', 0.0, 0), ('Solarize', 0.8, 4)],
    [('ShearY', 0.8, 0), ('Color', 0.6, 4)],
    [('Color', 1.0, 0), ('Rotate', 0.6, 2)],
    [('Equalize', 0.8, 4), ('Equalize', 0.0, 8)],
    [('Equalize', 1.0, 4), ('AutoContrast', 0.6, 2)],
    [('ShearY', 0.4, 7), ('SolarizeAdd', 0.6, 7)],
    [('Posterize', 0.8, 2), ('Solarize', 0.6, 10)],
    [('Solarize', 0.6, 8), ('Equalize', 0.6, 1)],
    [('Color', 0.8, 6), ('Rotate', 0.4, 5)],
]


def policies_v0() -> List[List[dict]]:
    """The v0 policies as config dicts ``dict(type=op, prob=p, level=l)``.

    Returns:
        list[list[dict]]: One list of op configs per policy.
    """
    return [[dict(type=op, prob=prob, level=level) for op, prob, level in policy]
            for policy in AUTOAUG_POLICIES_V0]


# RandAugment's search space: one op per entry, each with a random magnitude per call.
RANDAUG_SPACE = [[dict(type='AutoContrast')], [dict(type='Equalize')],
                 [dict(type='Invert')], [dict(type='Rotate')],
                 [dict(type='Posterize')], [dict(type='Solarize')],
                 [dict(type='SolarizeAdd')], [dict(type='Color')],
                 [dict(type='Contrast')], [dict(type='Brightness')],
                 [dict(type='Sharpness')], [dict(type='ShearX')],
                 [dict(type='ShearY')], [dict(type='TranslateX')],
                 [dict(type='TranslateY')]]

PolicyCfg = Union[dict, ConfigDict]


def _check_prob(name: str, prob: Optional[List[float]], num: int, what: str) -> None:
    """One probability per candidate, summing to 1."""
    if prob is None:
        return
    check_arg(len(prob) == num,
              f'{name}: prob needs one probability per {what} ({num}), got {len(prob)}.')
    check_arg(abs(sum(prob) - 1) <= 1e-6, f'{name}: prob must sum to 1, got {sum(prob)}.')


@TRANSFORMS.register_module()
class AutoAugment(RandomChoice):
    """Apply one policy, chosen at random, of a list of op sequences (AutoAugment).

    From `AutoAugment <https://arxiv.org/abs/1805.09501>`_ and `Learning Data Augmentation
    Strategies for Object Detection <https://arxiv.org/abs/1906.11172>`_. The chosen
    policy's ops run in order on the image and, for geometric ops, on ``gt_bboxes``,
    ``gt_masks`` and ``gt_seg_map`` (adding ``homography_matrix``).

    Args:
        policies (list[list[dict]]): Policies; each is a non-empty list of op configs
            (dicts with a ``type``). Defaults to :func:`policies_v0`.
        prob (list[float], optional): Probability of each policy, summing to 1.
            Defaults to None (uniform).
    """

    def __init__(self,
                 policies: List[List[PolicyCfg]] = policies_v0(),
                 prob: Optional[List[float]] = None) -> None:
        check_arg(isinstance(policies, list) and len(policies) > 0,
                  f'AutoAugment: policies must be a non-empty list, got {policies!r}.')
        for policy in policies:
            check_arg(isinstance(policy, list) and len(policy) > 0,
                      'AutoAugment: each policy must be a non-empty list of op configs, '
                      f'got {policy!r}.')
            for op in policy:
                check_arg(isinstance(op, dict) and 'type' in op,
                          f'AutoAugment: each op must be a dict with a "type", got {op!r}.')
        _check_prob('AutoAugment', prob, len(policies), 'policy')
        super().__init__(transforms=policies, prob=prob)
        self.policies = policies

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(policies={self.policies}, prob={self.prob})'


@TRANSFORMS.register_module()
class RandAugment(RandomChoice):
    """Apply ``aug_num`` distinct ops drawn at random from a search space (RandAugment).

    From `RandAugment <https://arxiv.org/abs/1909.13719>`_. The ops are drawn without
    replacement with ``np.random.choice`` and run in the drawn order; each op's own
    ``prob`` and ``level`` (None: a random magnitude per call) still apply.

    Args:
        aug_space (list[list[dict]]): The search space; each entry is a list holding one
            op config (a dict with a ``type``). Defaults to ``RANDAUG_SPACE``.
        aug_num (int): Number of ops applied per call. Defaults to 2.
        prob (list[float], optional): Probability of each entry, summing to 1.
            Defaults to None (uniform).
    """

    def __init__(self,
                 aug_space: List[List[PolicyCfg]] = RANDAUG_SPACE,
                 aug_num: int = 2,
                 prob: Optional[List[float]] = None) -> None:
        check_arg(isinstance(aug_space, list) and len(aug_space) > 0,
                  f'RandAugment: aug_space must be a non-empty list, got {aug_space!r}.')
        for aug in aug_space:
            check_arg(isinstance(aug, list) and len(aug) == 1,
                      'RandAugment: each entry of aug_space must be a list holding one op '
                      f'config, got {aug!r}.')
            check_arg(isinstance(aug[0], dict) and 'type' in aug[0],
                      f'RandAugment: each op must be a dict with a "type", got {aug[0]!r}.')
        _check_prob('RandAugment', prob, len(aug_space), 'entry of aug_space')
        super().__init__(transforms=aug_space, prob=prob)
        self.aug_space = aug_space
        self.aug_num = aug_num

    @cache_randomness
    def random_pipeline_index(self) -> np.ndarray:
        """Indices of the ``aug_num`` entries to apply, distinct, in application order."""
        indices = np.arange(len(self.transforms))
        return np.random.choice(indices, self.aug_num, p=self.prob, replace=False)

    def transform(self, results: dict) -> Optional[dict]:
        """Apply the drawn ops one after another.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict: The augmented results.
        """
        for index in self.random_pipeline_index():
            results = self.transforms[index](results)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(aug_space={self.aug_space}, '
                f'aug_num={self.aug_num}, prob={self.prob})')
