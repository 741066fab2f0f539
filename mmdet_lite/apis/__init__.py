"""High-level APIs: inference and the command-line tools' shared pieces."""
_INFERENCE_API = ('init_detector', 'inference_detector', 'get_test_pipeline_cfg',
                  'init_visualizer')

__all__ = list(_INFERENCE_API)


def __getattr__(name: str):
    # Loaded on first use: `inference` imports torch and every registry, while the tools
    # import `mmdet_lite.apis.cli` (this package) before parsing their arguments.
    if name in _INFERENCE_API:
        from . import inference
        return getattr(inference, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
