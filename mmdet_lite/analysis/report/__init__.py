"""The HTML report of a test run (``tools/analysis_tools/report.py``, ``tools/test.py
--report``): one self-contained ``index.html`` with the metric table, per-class AP,
precision-recall curves, the confusion matrix, the worst images and the training curves.

- :mod:`.builder` gathers the page's data and writes the files (:func:`write_report`);
- :mod:`.class_eval` runs COCOeval for per-class AP and precision-recall curves;
- :mod:`mmdet_lite.analysis.training_log` (shared with ``analyze_logs.py``) reads a work
  dir's json logs;
- :mod:`.plots` draws the charts (matplotlib, Agg);
- :mod:`.html` renders the page, CSS and JavaScript inline.
"""
from .builder import (REPORT_FILE, build_test_dataset, evaluate_metrics, load_results,
                      write_report)
from mmdet_lite.analysis.training_log import TrainingLog, read_training_log

from .class_eval import ClassEval, evaluate_classes

__all__ = ['write_report', 'load_results', 'build_test_dataset', 'evaluate_metrics',
           'REPORT_FILE', 'ClassEval', 'evaluate_classes', 'TrainingLog',
           'read_training_log']
