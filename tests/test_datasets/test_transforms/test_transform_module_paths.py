"""mmdetection's transform module paths resolve to our classes."""
import importlib

import pytest

import mmdet_lite.datasets.transforms as transforms
from mmdet_lite.registry import TRANSFORMS

# mmdetection 3.3's mmdet/datasets/transforms/transforms.py defines these.
TRANSFORMS_PY = [
    'Resize', 'FixScaleResize', 'ResizeShortestEdge', 'FixShapeResize', 'RandomFlip',
    'RandomShift', 'Pad', 'RandomCrop', 'SegRescale', 'PhotoMetricDistortion', 'Expand',
    'MinIoURandomCrop', 'Corrupt', 'Albu', 'RandomCenterCropPad', 'CutOut', 'Mosaic', 'MixUp',
    'RandomAffine', 'YOLOXHSVRandomAug', 'CopyPaste', 'RandomErasing', 'CachedMosaic',
    'CachedMixUp'
]
# ... and these modules hold the rest under the same names as ours.
OTHER_MODULES = {
    'geometric': ['GeomTransform', 'Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY'],
    'colorspace': ['ColorTransform', 'Color', 'Brightness', 'Contrast', 'Sharpness', 'Solarize',
                   'SolarizeAdd', 'Posterize', 'Equalize', 'AutoContrast', 'Invert'],
    'augment_wrappers': ['AutoAugment', 'RandAugment'],
    'formatting': ['PackDetInputs'],
    'loading': ['LoadAnnotations'],
    'wrappers': ['MultiBranch', 'RandomOrder', 'ProposalBroadcaster'],
}


@pytest.mark.parametrize('name', TRANSFORMS_PY)
def test_transforms_module_holds_the_registered_class(name):
    module = importlib.import_module('mmdet_lite.datasets.transforms.transforms')
    assert getattr(module, name) is TRANSFORMS.get(name) is getattr(transforms, name)


@pytest.mark.parametrize('module_name,names', sorted(OTHER_MODULES.items()))
def test_other_mmdet_module_paths(module_name, names):
    module = importlib.import_module(f'mmdet_lite.datasets.transforms.{module_name}')
    for name in names:
        assert getattr(module, name) is getattr(transforms, name)
