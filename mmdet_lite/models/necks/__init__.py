"""Necks: turn backbone feature maps into the multi-level features the heads read."""
from .channel_mapper import ChannelMapper
from .fpn import FPN

__all__ = ['FPN', 'ChannelMapper']
