from .resnet import ResNet, ResNetV1d
from .resnext import ResNeXt
from .swin import SwinTransformer

__all__ = ['ResNet', 'ResNetV1d', 'ResNeXt', 'SwinTransformer']

# YOLOX / RTMDet backbones (CSPDarknet with its Focus stem, CSPNeXt).
from .csp_darknet import CSPDarknet  # noqa: E402
from .cspnext import CSPNeXt  # noqa: E402

__all__ += ['CSPDarknet', 'CSPNeXt']

# HRNet (high-resolution branches kept through the network; HRFPN is its neck).
from .hrnet import HRNet  # noqa: E402

__all__ += ['HRNet']

# SSD backbones: VGG with fc6/fc7 as convs (SSD300/512) and MobileNetV2 (SSDLite).
from .mobilenet_v2 import MobileNetV2  # noqa: E402
from .ssd_vgg import SSDVGG  # noqa: E402

__all__ += ['MobileNetV2', 'SSDVGG']

# YOLOv3 backbone (Darknet-53).
from .darknet import Darknet  # noqa: E402

__all__ += ['Darknet']

# ResNet-family backbones of the classic zoo (RegNetX, Res2Net, ResNeSt).
from .regnet import RegNet  # noqa: E402
from .res2net import Res2Net  # noqa: E402
from .resnest import ResNeSt  # noqa: E402

__all__ += ['RegNet', 'Res2Net', 'ResNeSt']

# Pyramid Vision Transformers (PVT, PVTv2) and EfficientNet.
from .efficientnet import EfficientNet  # noqa: E402
from .pvt import PyramidVisionTransformer, PyramidVisionTransformerV2  # noqa: E402

__all__ += ['EfficientNet', 'PyramidVisionTransformer', 'PyramidVisionTransformerV2']
