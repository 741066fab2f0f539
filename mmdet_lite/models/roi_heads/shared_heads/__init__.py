"""Shared heads: layers run on the RoI features before the box (and mask) heads."""
from .res_layer import ResLayer

__all__ = ['ResLayer']
