"""Evaluation metrics, registered in ``mmdet_lite.registry.METRICS``."""
from .coco_metric import CocoMetric

__all__ = ['CocoMetric']
