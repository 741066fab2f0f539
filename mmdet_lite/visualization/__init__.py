"""Drawing detections: the local visualizer and its colour palettes."""
from .local_visualizer import DetLocalVisualizer
from .palette import get_palette, jitter_color, palette_val

__all__ = ['DetLocalVisualizer', 'get_palette', 'palette_val', 'jitter_color']
