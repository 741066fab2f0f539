"""Utilities: module registration, environment helpers and shared type aliases."""
from .setup_env import register_all_modules
from .shape_trace import (ShapeRecord, describe_output, dummy_det_batch, format_shape_tree,
                          trace_shapes)
from .typing_utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                           OptInstanceList, OptMultiConfig, RangeType)

__all__ = [
    'register_all_modules', 'ConfigType', 'OptConfigType', 'MultiConfig', 'OptMultiConfig',
    'InstanceList', 'OptInstanceList', 'RangeType', 'ShapeRecord', 'trace_shapes',
    'format_shape_tree', 'dummy_det_batch', 'describe_output'
]
