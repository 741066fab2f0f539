"""Registries of mmdet_lite.

Every registry is a child of the matching mmengine root registry, with scope ``mmdet_lite``.
Lookups fall back to the parent, so a config can name mmengine and mmcv components
(``ConvModule``, ``ContextBlock``, ``LoadImageFromFile``, ``AdamW`` ...) next to ours.

``locations`` lists the modules that define the registered classes: building a type by name
imports them on first use, so ``import mmdet_lite`` itself stays light.

An unknown type raises a ``KeyError`` naming the type, the registry and its scope, and the
closest registered names (ours and the parents').

The ``mmdet`` scope alias
-------------------------
Configs written for mmdetection say ``default_scope = 'mmdet'`` and sometimes
``type='mmdet.ResNet'``. Unless a real mmdetection is installed (then ``mmdet`` is its scope
and is left alone), the scope name ``mmdet`` means ``mmdet_lite`` everywhere mmengine
resolves a scope; everything that makes it so is in this file:

- our :class:`Registry` reads ``mmdet.X`` as ``mmdet_lite.X`` and answers a search for the
  scope ``mmdet`` (``get`` and ``_search_child``);
- each mmengine root registry lists our child under the key ``mmdet`` too, so that
  ``mmengine.registry.MODELS.build(dict(type='mmdet.ResNet'))`` finds it (plain data, no code
  replaced);
- the one patch: ``mmengine.registry.Registry.switch_scope_and_registry`` is wrapped. It is
  the single place where mmengine turns the current :class:`~mmengine.registry.DefaultScope`
  (a Runner's ``default_scope``, ``DefaultScope.get_instance(..., scope_name='mmdet')``, a
  ``_scope_`` key) into a registry. For ``mmdet`` the wrapper picks our registry, without
  mmengine's attempt to import a package named ``mmdet`` (a warning at every build); any
  other scope goes to mmengine's method unchanged.

``DefaultScope`` instances keep the name they were given (``scope_name == 'mmdet'``). The
mmengine root registries then list our child twice (keys ``mmdet_lite`` and ``mmdet``), which
only shows in mmengine's ``traverse_registry_tree`` listing.
"""
import difflib
import importlib.util
import sys
from contextlib import contextmanager
from typing import Generator, List, Optional, Type

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import \
    RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import \
    WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import DefaultScope
from mmengine.registry import Registry as MMEngineRegistry

SCOPE = 'mmdet_lite'
# The scope name of mmdetection, read as ours while no real mmdetection is installed.
MMDET_SCOPE = 'mmdet'


def _real_mmdet_installed() -> bool:
    """Whether a real mmdetection ``mmdet`` package is importable.

    Only the opt-in import alias (:mod:`mmdet_lite.utils.mmdet_alias`) can make
    ``find_spec('mmdet')`` answer with mmdet_lite, and only once that module is loaded; it is
    asked then. It is not imported here: that would load ``mmdet_lite.utils`` and torch.
    """
    import_alias = sys.modules.get('mmdet_lite.utils.mmdet_alias')
    if import_alias is not None:
        return import_alias.real_mmdet_installed()
    return importlib.util.find_spec(MMDET_SCOPE) is not None


MMDET_SCOPE_IS_ALIAS = not _real_mmdet_installed()


def resolve_scope(scope: Optional[str]) -> Optional[str]:
    """``'mmdet'`` -> ``'mmdet_lite'`` while the scope alias is on; other names unchanged."""
    return SCOPE if scope == MMDET_SCOPE and MMDET_SCOPE_IS_ALIAS else scope


class Registry(MMEngineRegistry):
    """An mmengine ``Registry`` whose failed lookups say what was meant.

    ``get`` raises ``KeyError`` for an unknown name instead of returning ``None``, with the
    registry, its scope and the closest registered names, so a typo in a config
    (``type='ResNett'``) points at the fix.
    """

    def get(self, key: str) -> Optional[Type]:
        lookup = key
        if isinstance(key, str):
            scope, real_key = self.split_scope_key(key)
            if scope is not None and resolve_scope(scope) == self._scope:
                lookup = f'{self._scope}.{real_key}'  # 'mmdet.ResNet' is 'mmdet_lite.ResNet'
        obj = super().get(lookup)
        if obj is None and isinstance(key, str):
            raise KeyError(self._unknown_message(key))
        return obj

    def __contains__(self, key: str) -> bool:
        try:
            return super().get(key) is not None
        except KeyError:
            return False

    def _search_child(self, scope: str) -> Optional[MMEngineRegistry]:
        return super()._search_child(resolve_scope(scope))

    def known_names(self) -> List[str]:
        """All names this registry resolves: its own and those of its ancestors."""
        names, registry = set(), self
        while registry is not None:
            names.update(registry.module_dict.keys())
            registry = registry.parent
        return sorted(names)

    def _unknown_message(self, key: str) -> str:
        _, real_key = self.split_scope_key(key)
        names = self.known_names()
        close = difflib.get_close_matches(real_key, names, n=5, cutoff=0.5)
        if not close:  # fall back to case-insensitive substring matches
            close = [n for n in names if real_key.lower() in n.lower()][:5]
        hint = (f'Did you mean one of: {", ".join(close)}?' if close else
                f'Registered names include: {", ".join(names[:20])}'
                f'{" ..." if len(names) > 20 else ""}.')
        return (f"Unknown type '{key}' in the '{self.name}' registry (scope "
                f"'{self.scope}'). {hint} A custom class must be registered with "
                f"@{self.var_name}.register_module() (from mmdet_lite.registry) in a module that "
                "is imported, e.g. through `custom_imports = dict(imports=[...])` in the config.")


def _child(name: str, parent: MMEngineRegistry, locations: List[str]) -> Registry:
    registry = Registry(name, parent=parent, scope=SCOPE, locations=locations)
    # The module-level name users import, for error messages (e.g. 'TASK_UTILS').
    registry.var_name = next(var for var, root in _ROOT_NAMES.items() if root is parent)
    return registry


_ROOT_NAMES = dict(
    RUNNERS=MMENGINE_RUNNERS, RUNNER_CONSTRUCTORS=MMENGINE_RUNNER_CONSTRUCTORS,
    LOOPS=MMENGINE_LOOPS, HOOKS=MMENGINE_HOOKS, DATASETS=MMENGINE_DATASETS,
    DATA_SAMPLERS=MMENGINE_DATA_SAMPLERS, TRANSFORMS=MMENGINE_TRANSFORMS,
    MODELS=MMENGINE_MODELS, MODEL_WRAPPERS=MMENGINE_MODEL_WRAPPERS,
    WEIGHT_INITIALIZERS=MMENGINE_WEIGHT_INITIALIZERS, TASK_UTILS=MMENGINE_TASK_UTILS,
    OPTIMIZERS=MMENGINE_OPTIMIZERS, OPTIM_WRAPPERS=MMENGINE_OPTIM_WRAPPERS,
    OPTIM_WRAPPER_CONSTRUCTORS=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    PARAM_SCHEDULERS=MMENGINE_PARAM_SCHEDULERS, METRICS=MMENGINE_METRICS,
    EVALUATOR=MMENGINE_EVALUATOR, VISUALIZERS=MMENGINE_VISUALIZERS,
    VISBACKENDS=MMENGINE_VISBACKENDS, LOG_PROCESSORS=MMENGINE_LOG_PROCESSORS)


# Runner and its parts.
RUNNERS = _child('runner', MMENGINE_RUNNERS, ['mmdet_lite.engine'])
RUNNER_CONSTRUCTORS = _child('runner constructor', MMENGINE_RUNNER_CONSTRUCTORS,
                             ['mmdet_lite.engine'])
LOOPS = _child('loop', MMENGINE_LOOPS, ['mmdet_lite.engine'])
HOOKS = _child('hook', MMENGINE_HOOKS, ['mmdet_lite.engine'])

# Data.
DATASETS = _child('dataset', MMENGINE_DATASETS, ['mmdet_lite.datasets'])
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS, ['mmdet_lite.datasets'])
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, ['mmdet_lite.datasets.transforms'])

# Models and the pieces they are built from.
MODELS = _child('model', MMENGINE_MODELS, ['mmdet_lite.models'])
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS, ['mmdet_lite.models'])
WEIGHT_INITIALIZERS = _child('weight initializer', MMENGINE_WEIGHT_INITIALIZERS,
                             ['mmdet_lite.models'])
TASK_UTILS = _child('task util', MMENGINE_TASK_UTILS, ['mmdet_lite.models'])

# Optimization.
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, ['mmdet_lite.engine'])
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS, ['mmdet_lite.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                    ['mmdet_lite.engine'])
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS,
                          ['mmdet_lite.engine'])

# Evaluation.
METRICS = _child('metric', MMENGINE_METRICS, ['mmdet_lite.evaluation'])
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR, ['mmdet_lite.evaluation'])

# Visualization and logging.
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS, ['mmdet_lite.visualization'])
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS, ['mmdet_lite.visualization'])
LOG_PROCESSORS = _child('log_processor', MMENGINE_LOG_PROCESSORS, ['mmdet_lite.engine'])


@contextmanager
def _switch_scope_and_registry(self: MMEngineRegistry,
                               scope: Optional[str]) -> Generator[MMEngineRegistry, None, None]:
    """mmengine's ``switch_scope_and_registry``, with the scope ``mmdet`` read as ours.

    Any other scope goes to mmengine's own method unchanged. For ``mmdet`` (given as
    ``_scope_`` or current in ``DefaultScope``), the default scope is switched as mmengine
    does, and the registry is our node of ``self``'s tree (``self`` where the tree has none).
    """
    current = DefaultScope.get_current_instance()
    effective = scope if scope is not None else getattr(current, 'scope_name', None)
    if effective != MMDET_SCOPE:
        with _MMENGINE_SWITCH_SCOPE_AND_REGISTRY(self, scope) as registry:
            yield registry
        return
    with DefaultScope.overwrite_default_scope(scope):
        registry = self._get_root_registry()._search_child(SCOPE)
        # `is None`, not `or`: a registry whose modules are not imported yet is empty, falsy
        yield self if registry is None else registry


# mmengine's method (also when this module is executed again, e.g. by importlib.reload).
_MMENGINE_SWITCH_SCOPE_AND_REGISTRY = getattr(MMEngineRegistry.switch_scope_and_registry,
                                              'mmengine_method',
                                              MMEngineRegistry.switch_scope_and_registry)
_switch_scope_and_registry.mmengine_method = _MMENGINE_SWITCH_SCOPE_AND_REGISTRY


def _install_mmdet_scope_alias() -> None:
    """Make the scope ``mmdet`` resolve to our registries (see the module docstring)."""
    for var_name, root in _ROOT_NAMES.items():
        root._children.setdefault(MMDET_SCOPE, globals()[var_name])
    MMEngineRegistry.switch_scope_and_registry = _switch_scope_and_registry


if MMDET_SCOPE_IS_ALIAS:
    _install_mmdet_scope_alias()
