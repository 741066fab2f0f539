"""High-level APIs: inference and the command-line tools' shared pieces."""
from .inference import get_test_pipeline_cfg, inference_detector, init_detector

__all__ = ['init_detector', 'inference_detector', 'get_test_pipeline_cfg']
