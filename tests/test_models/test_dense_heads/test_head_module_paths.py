"""mmdetection 3.3's module paths of the heads whose target code lives in a separate file.

The ATSS, FCOS, VFNet, TOOD, PAA, CenterNet-update, YOLOv3 and SOLO heads keep their
assignment / target code in ``*_targets.py`` (``paa_assignment.py`` for PAA); what mmdetection
defines in each head module must still be importable from that module. The expected names and
constants are written from mmdetection 3.3's ``mmdet/models/dense_heads/*.py``.
"""
import importlib

import pytest

from mmdet_lite.models.layers.task_decomposition import TaskDecomposition
from mmdet_lite.registry import MODELS

PACKAGE = 'mmdet_lite.models.dense_heads'

# module -> (registered head classes defined there, other module-level names and values)
MMDET_MODULES = {
    'atss_head': (['ATSSHead'], {}),
    'fcos_head': (['FCOSHead'], {'INF': 1e8}),
    'vfnet_head': (['VFNetHead'], {'INF': 1e8}),
    'tood_head': (['TOODHead'], {}),
    'paa_head': (['PAAHead'], {'EPS': 1e-12}),
    'centernet_update_head': (['CenterNetUpdateHead'], {'INF': 1000000000}),
    'yolo_head': (['YOLOV3Head'], {}),
    'solo_head': (['SOLOHead', 'DecoupledSOLOHead', 'DecoupledSOLOLightHead'], {}),
}


@pytest.mark.parametrize('module_name', sorted(MMDET_MODULES))
def test_each_head_module_holds_mmdetections_classes_and_constants(module_name):
    module = importlib.import_module(f'{PACKAGE}.{module_name}')
    heads, constants = MMDET_MODULES[module_name]
    for name in heads:
        assert getattr(module, name) is MODELS.get(name), f'{module_name}.{name}'
    for name, value in constants.items():
        assert getattr(module, name) == value, f'{module_name}.{name}'


def test_the_first_head_of_each_module_is_defined_there():
    # the file a reader opens for the head is mmdetection's
    for module_name, (heads, _) in MMDET_MODULES.items():
        assert MODELS.get(heads[0]).__module__ == f'{PACKAGE}.{module_name}'


def test_tood_head_module_exports_task_decomposition():
    # ``from mmdet.models.dense_heads.tood_head import TaskDecomposition`` in mmdetection 3.3
    from mmdet_lite.models.dense_heads.tood_head import TaskDecomposition as from_head
    assert from_head is TaskDecomposition
    assert 'TaskDecomposition' in importlib.import_module(f'{PACKAGE}.tood_head').__all__


def test_paa_head_module_has_levels_to_images():
    # mmdetection's paa_head imports it at module level (and 2.x defined it there)
    from mmdet_lite.models.dense_heads.paa_head import levels_to_images
    from mmdet_lite.models.utils import levels_to_images as from_utils
    assert levels_to_images is from_utils


@pytest.mark.parametrize('module_name, error_name', [
    ('atss_head', 'ATSSHeadError'),
    ('yolo_head', 'YOLOV3HeadArgumentError'),
])
def test_argument_errors_stay_importable_from_the_head_modules(module_name, error_name):
    error = getattr(importlib.import_module(f'{PACKAGE}.{module_name}'), error_name)
    # raised where mmdetection asserts
    assert issubclass(error, AssertionError) and issubclass(error, ValueError)
