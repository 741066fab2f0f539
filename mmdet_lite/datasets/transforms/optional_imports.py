"""Import of the optional packages some transforms wrap (imagecorruptions, albumentations).

They are not installed with mmdet_lite; a transform that needs one imports it when it is
built, so configs that do not use it never pay for (or depend on) the package.
"""
import importlib
from types import ModuleType


class MissingOptionalDependency(ImportError, RuntimeError):
    """An optional package a transform needs cannot be imported.

    Also a ``RuntimeError``: mmdetection raises that when these packages are missing.
    """


def import_optional(module: str, pip_name: str, transform: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingOptionalDependency` saying what to install.

    Args:
        module (str): Module to import, e.g. ``'albumentations'``.
        pip_name (str): Package to ``pip install`` for it.
        transform (str): Name of the transform that needs it, for the message.

    Returns:
        ModuleType: The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        # Any ImportError counts: an installed package can fail on a missing dependency of
        # its own (imagecorruptions needs pkg_resources, gone from recent setuptools).
        raise MissingOptionalDependency(
            f'{transform} needs the optional package `{pip_name}` (pip install {pip_name}), '
            f'which cannot be imported: {error}') from error
