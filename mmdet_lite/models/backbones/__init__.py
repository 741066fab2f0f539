from .resnet import ResNet, ResNetV1d
from .resnext import ResNeXt
from .swin import SwinTransformer

__all__ = ['ResNet', 'ResNetV1d', 'ResNeXt', 'SwinTransformer']

# YOLOX / RTMDet backbones (CSPDarknet with its Focus stem, CSPNeXt).
from .csp_darknet import CSPDarknet  # noqa: E402
from .cspnext import CSPNeXt  # noqa: E402

__all__ += ['CSPDarknet', 'CSPNeXt']
