"""Opt-in: make ``import mmdet...`` load mmdet_lite's modules, for unchanged mmdetection plugins.

A plugin written for mmdetection starts with ``from mmdet.registry import MODELS`` and
``from mmdet.models.backbones import ResNet``. With the alias on, those names resolve to the
*same module objects* as ``mmdet_lite.registry`` and ``mmdet_lite.models.backbones``, so what
the plugin registers lands in mmdet_lite's registries and a config naming it builds.

The alias is off by default. Turn it on with :func:`enable_mmdet_import_alias`, or with the
environment variable ``MMDET_LITE_ALIAS_MMDET=1``, which ``import mmdet_lite`` reads. It is
refused while a real ``mmdet`` package is importable: then ``mmdet`` is mmdetection, and
mmdet_lite never shadows it.

This module is on the ground floor: it imports only the standard library.
"""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Optional, Sequence

ALIAS = 'mmdet'
TARGET = 'mmdet_lite'
ENV_VAR = 'MMDET_LITE_ALIAS_MMDET'


class MmdetAliasError(ImportError):
    """The ``mmdet`` import alias cannot be turned on (a real mmdetection is importable)."""


def _target_name(fullname: str) -> Optional[str]:
    """``mmdet.a.b`` -> ``mmdet_lite.a.b``; None for a name outside the ``mmdet`` package."""
    if fullname == ALIAS:
        return TARGET
    if fullname.startswith(ALIAS + '.'):
        return TARGET + fullname[len(ALIAS):]
    return None


class _MmdetAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A ``sys.meta_path`` finder and loader that answers ``mmdet.*`` with ``mmdet_lite.*``.

    The loader returns the already imported (or freshly imported) mmdet_lite module itself,
    so ``sys.modules['mmdet.registry'] is sys.modules['mmdet_lite.registry']``.
    """

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None):
        target_name = _target_name(fullname)
        if target_name is None:
            return None
        target_spec = importlib.util.find_spec(target_name)
        if target_spec is None:  # let Python report "No module named 'mmdet.x'"
            return None
        return importlib.machinery.ModuleSpec(
            fullname, self, is_package=target_spec.submodule_search_locations is not None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(_target_name(spec.name))
        spec.loader_state = module.__spec__  # restored by exec_module
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just set ``module.__spec__`` to the alias spec; the module
        # is mmdet_lite's, already executed, and keeps its own spec (reload, pickling).
        module.__spec__ = module.__spec__.loader_state


_FINDER = _MmdetAliasFinder()


def real_mmdet_spec() -> Optional[importlib.machinery.ModuleSpec]:
    """The spec of a real mmdetection ``mmdet`` package, or None when there is none.

    The alias itself (when on) is not counted: only the other finders of ``sys.meta_path``
    are asked, and an ``mmdet`` already in ``sys.modules`` counts unless it is mmdet_lite.
    """
    loaded = sys.modules.get(ALIAS)
    if loaded is not None:
        if loaded is sys.modules.get(TARGET):
            return None
        return getattr(loaded, '__spec__', None) or importlib.machinery.ModuleSpec(ALIAS, None)
    for finder in sys.meta_path:
        if finder is _FINDER or not hasattr(finder, 'find_spec'):
            continue
        spec = finder.find_spec(ALIAS, None)
        if spec is not None:
            return spec
    return None


def real_mmdet_installed() -> bool:
    """Whether a real mmdetection ``mmdet`` package is importable (or imported)."""
    return real_mmdet_spec() is not None


def mmdet_import_alias_enabled() -> bool:
    """Whether :func:`enable_mmdet_import_alias` is in effect."""
    return _FINDER in sys.meta_path


def enable_mmdet_import_alias() -> None:
    """Make ``import mmdet`` and ``import mmdet.<x>`` load ``mmdet_lite`` / ``mmdet_lite.<x>``.

    Afterwards ``from mmdet.registry import MODELS`` gives mmdet_lite's ``MODELS``, and
    ``custom_imports`` in a config may name a plugin written for mmdetection. Calling it
    again does nothing. Undo with :func:`disable_mmdet_import_alias`.

    Raises:
        MmdetAliasError: A real ``mmdet`` (mmdetection) is importable; it is never shadowed.
    """
    if mmdet_import_alias_enabled():
        return
    spec = real_mmdet_spec()
    if spec is not None:
        where = getattr(spec, 'origin', None) or 'sys.modules'
        raise MmdetAliasError(
            f"the 'mmdet' import alias of mmdet_lite is refused: mmdetection is installed "
            f"({where}), and `import mmdet` must keep loading it. Uninstall mmdetection or "
            f'work in an environment without it to use mmdet_lite in its place (and unset '
            f'{ENV_VAR} meanwhile).')
    sys.meta_path.insert(0, _FINDER)


def disable_mmdet_import_alias() -> None:
    """Undo :func:`enable_mmdet_import_alias`: forget the ``mmdet.*`` names it created.

    The mmdet_lite modules stay imported; only the ``mmdet`` names go (objects already
    holding them, e.g. a plugin's ``from mmdet.registry import MODELS``, keep working).
    """
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in [name for name in sys.modules if _target_name(name) is not None]:
        if sys.modules[name] is sys.modules.get(_target_name(name)):
            del sys.modules[name]


def enable_from_environment() -> bool:
    """Turn the alias on when ``MMDET_LITE_ALIAS_MMDET`` is ``1`` (or ``true``/``yes``/``on``).

    Returns:
        bool: Whether the variable asked for the alias.

    Raises:
        MmdetAliasError: The variable asks for it but a real ``mmdet`` is importable.
    """
    if os.environ.get(ENV_VAR, '').strip().lower() not in ('1', 'true', 'yes', 'on'):
        return False
    enable_mmdet_import_alias()
    return True
