"""Deploy without mmdeploy: export a detector to ``torch.export`` / ONNX graphs of fixed
input size, and post-process their raw outputs with the heads' own code.

See docs/deployment.md and tools/deployment/export.py, tools/deployment/onnx_infer.py.
"""
from .adapter import (ExportAdapter, ExportGraph, ExportNotSupportedError,
                      get_export_adapter, register_export_adapter)
from .exporter import export_adapter, load_runners, read_manifest
from .image_input import fixed_size_meta, letterbox
from .normalize import InputNormalizer
from .runners import ModuleRunner, OrtRunner, load_torch_export

__all__ = ['ExportAdapter', 'ExportGraph', 'ExportNotSupportedError', 'get_export_adapter',
           'register_export_adapter', 'export_adapter', 'load_runners', 'read_manifest',
           'fixed_size_meta', 'letterbox', 'InputNormalizer', 'ModuleRunner', 'OrtRunner',
           'load_torch_export']
