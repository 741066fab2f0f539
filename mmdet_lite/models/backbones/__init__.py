from .resnet import ResNet, ResNetV1d
from .resnext import ResNeXt
from .swin import SwinTransformer

__all__ = ['ResNet', 'ResNetV1d', 'ResNeXt', 'SwinTransformer']
