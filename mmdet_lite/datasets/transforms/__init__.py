"""Data transforms: importing this package registers them into ``TRANSFORMS``.

mmcv's transforms (``LoadImageFromFile``, ``RandomApply`` ...) are registered in the parent
registry and found from ours as well.
"""
import mmcv.transforms  # noqa: F401  (registers mmcv's transforms in the parent registry)

from .albu import Albu
from .augment_wrappers import AutoAugment, RandAugment
from .cached_mixup import CachedMixUp
from .cached_mosaic import CachedMosaic
from .colorspace import (AutoContrast, Brightness, Color, ColorTransform, Contrast, Equalize,
                         Invert, Posterize, Sharpness, Solarize, SolarizeAdd)
from .copy_paste import CopyPaste
from .corrupt import Corrupt
from .crop import RandomCrop
from .empty_annotations import LoadEmptyAnnotations
from .erasing import CutOut, RandomErasing
from .expand import Expand
from .filters import FilterAnnotations
from .fix_scale_resize import FixScaleResize
from .fix_shape_resize import FixShapeResize
from .flip import RandomFlip
from .formatting import PackDetInputs
from .geometric import GeomTransform, Rotate, ShearX, ShearY, TranslateX, TranslateY
from .inferencer_loader import InferencerLoader
from .loading import LoadAnnotations
from .loading_ndarray import LoadImageFromNDArray
from .min_iou_random_crop import MinIoURandomCrop
from .mixup import MixUp
from .mosaic import Mosaic
from .multichannel_loading import LoadMultiChannelImageFromFiles
from .pad import Pad
from .photometric import PhotoMetricDistortion, YOLOXHSVRandomAug
from .proposal_loading import LoadProposals
from .random_affine import RandomAffine
from .random_center_crop_pad import RandomCenterCropPad
from .random_resize import RandomChoiceResize, RandomResize
from .random_shift import RandomShift
from .resize import Resize
from .resize_shortest_edge import ResizeShortestEdge
from .safe_loading import LoadImageFromFile
from .seg_rescale import SegRescale
from .tensor_formatting import ImageToTensor, ToTensor, Transpose, WrapFieldsToLists
from .wrappers import MultiBranch, ProposalBroadcaster, RandomChoice, RandomOrder

__all__ = [
    'LoadAnnotations', 'Resize', 'RandomResize', 'RandomChoiceResize', 'RandomFlip',
    'RandomCrop', 'Pad', 'FilterAnnotations', 'PackDetInputs', 'RandomChoice',
    'LoadImageFromNDArray', 'LoadImageFromFile',
    'RandomShift', 'Expand', 'MinIoURandomCrop', 'RandomCenterCropPad', 'RandomAffine',
    'GeomTransform', 'Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY',
    'PhotoMetricDistortion', 'YOLOXHSVRandomAug', 'CutOut', 'RandomErasing', 'Corrupt', 'Albu',
    'ColorTransform', 'Color', 'Brightness', 'Contrast', 'Sharpness', 'Solarize', 'SolarizeAdd',
    'Posterize', 'Equalize', 'AutoContrast', 'Invert', 'AutoAugment', 'RandAugment',
    'LoadProposals', 'LoadEmptyAnnotations', 'LoadMultiChannelImageFromFiles', 'InferencerLoader',
    'FixShapeResize', 'FixScaleResize', 'ResizeShortestEdge', 'SegRescale', 'ToTensor',
    'ImageToTensor', 'Transpose', 'WrapFieldsToLists',
    'Mosaic', 'MixUp', 'CachedMosaic', 'CachedMixUp', 'CopyPaste', 'MultiBranch', 'RandomOrder',
    'ProposalBroadcaster'
]
