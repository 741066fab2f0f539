"""Evaluation metrics, registered in ``mmdet_lite.registry.METRICS``."""
from .coco_metric import CocoMetric
from .dump_results import AtomicDumpResults

__all__ = ['CocoMetric', 'AtomicDumpResults']
