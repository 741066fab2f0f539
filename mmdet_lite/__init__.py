"""mmdet_lite: a slim, plugin-based object detection toolbox in the style of mmdetection 3.x.

Importing the package is cheap: model, dataset and metric modules are imported lazily by the
registries (``mmdet_lite.registry``) the first time a config names one of their types, or
explicitly through :func:`mmdet_lite.utils.register_all_modules`.

With the environment variable ``MMDET_LITE_ALIAS_MMDET=1``, importing the package also turns
on the opt-in ``mmdet`` import alias (:func:`mmdet_lite.utils.enable_mmdet_import_alias`):
``import mmdet...`` then loads mmdet_lite's modules, for plugins written for mmdetection.
"""
import os as _os

from .version import __version__

if _os.environ.get('MMDET_LITE_ALIAS_MMDET'):
    # only then, so that a plain `import mmdet_lite` stays as cheap as it was
    from .utils.mmdet_alias import enable_from_environment as _enable_from_environment
    _enable_from_environment()

__all__ = ['__version__']
