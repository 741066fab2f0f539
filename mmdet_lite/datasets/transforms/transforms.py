"""mmdetection's module path ``mmdet.datasets.transforms.transforms``, for imports only.

mmdetection defines two dozen transforms in one ``transforms.py``; here each has a file of its
own. A plugin written for mmdetection that imports a transform from this module path (for
instance to subclass it: ``from mmdet.datasets.transforms.transforms import Resize`` under the
``mmdet`` import alias) finds the same classes here. Nothing is registered in this module.
"""
from .albu import Albu
from .cached_mixup import CachedMixUp
from .cached_mosaic import CachedMosaic
from .copy_paste import CopyPaste
from .corrupt import Corrupt
from .crop import RandomCrop
from .erasing import CutOut, RandomErasing
from .expand import Expand
from .fix_scale_resize import FixScaleResize
from .fix_shape_resize import FixShapeResize
from .flip import RandomFlip
from .min_iou_random_crop import MinIoURandomCrop
from .mixup import MixUp
from .mosaic import Mosaic
from .pad import Pad
from .photometric import PhotoMetricDistortion, YOLOXHSVRandomAug
from .random_affine import RandomAffine
from .random_center_crop_pad import RandomCenterCropPad
from .random_shift import RandomShift
from .resize import Resize
from .resize_shortest_edge import ResizeShortestEdge
from .seg_rescale import SegRescale

__all__ = [
    'Resize', 'FixScaleResize', 'ResizeShortestEdge', 'FixShapeResize', 'RandomFlip',
    'RandomShift', 'Pad', 'RandomCrop', 'SegRescale', 'PhotoMetricDistortion', 'Expand',
    'MinIoURandomCrop', 'Corrupt', 'Albu', 'RandomCenterCropPad', 'CutOut', 'Mosaic', 'MixUp',
    'RandomAffine', 'YOLOXHSVRandomAug', 'CopyPaste', 'RandomErasing', 'CachedMosaic',
    'CachedMixUp'
]
