from .resnet import ResNet, ResNetV1d
from .resnext import ResNeXt

__all__ = ['ResNet', 'ResNetV1d', 'ResNeXt']
