"""Analysis code that the tools under ``tools/analysis_tools/`` run: per-module shape traces,
speed measurement and the torchvision models they are compared with, the confusion matrix,
per-image AP ranking, COCO error analysis, anchor optimisation, training logs and the HTML
report.

This is the top floor: nothing in the library (models, datasets, engine, ...) imports it,
so its dependencies (torchvision's detection models, timing helpers) never load with a
model. ``tests/test_import_graph.py`` checks that.
"""
from .shape_trace import (ShapeRecord, describe_output, dummy_det_batch, format_shape_tree,
                          trace_shapes)

__all__ = ['ShapeRecord', 'trace_shapes', 'format_shape_tree', 'dummy_det_batch',
           'describe_output']
