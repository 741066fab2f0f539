"""Evaluation metrics, registered in ``mmdet_lite.registry.METRICS``."""
from .coco_metric import CocoMetric
from .dump_det_results import DumpDetResults
from .dump_proposals_metric import DumpProposals
from .dump_results import AtomicDumpResults
from .lvis_metric import LVISMetric
from .voc_metric import VOCMetric

__all__ = ['CocoMetric', 'AtomicDumpResults', 'DumpDetResults', 'DumpProposals', 'VOCMetric',
           'LVISMetric']
