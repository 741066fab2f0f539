"""Task modules: priors, box coding, assignment and sampling (registered in TASK_UTILS).

Everything is importable from here, as from ``mmdet.models.task_modules``.
"""
from .assigners import *  # noqa: F401,F403
from .assigners import __all__ as _assigners
from .coders import *  # noqa: F401,F403
from .coders import __all__ as _coders
from .prior_generators import *  # noqa: F401,F403
from .prior_generators import __all__ as _prior_generators
from .samplers import *  # noqa: F401,F403
from .samplers import __all__ as _samplers

__all__ = _assigners + _coders + _prior_generators + _samplers
