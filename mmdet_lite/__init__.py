"""mmdet_lite: a slim, plugin-based object detection toolbox in the style of mmdetection 3.x.

Importing the package is cheap: model, dataset and metric modules are imported lazily by the
registries (``mmdet_lite.registry``) the first time a config names one of their types, or
explicitly through :func:`mmdet_lite.utils.register_all_modules`.
"""
from .version import __version__

__all__ = ['__version__']
