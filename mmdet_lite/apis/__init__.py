"""High-level APIs: inference and the command-line tools' shared pieces."""
import importlib

# public name -> the module of this package defining it
_LAZY_API = {
    'init_detector': 'inference',
    'inference_detector': 'inference',
    'get_test_pipeline_cfg': 'inference',
    'init_visualizer': 'inference',
    'DetInferencer': 'det_inferencer',
}

__all__ = list(_LAZY_API)


def __getattr__(name: str):
    # Loaded on first use: `inference` imports torch and every registry, while the tools
    # import `mmdet_lite.apis.cli` (this package) before parsing their arguments.
    if name in _LAZY_API:
        module = importlib.import_module(f'.{_LAZY_API[name]}', __name__)
        return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
