"""Version of mmdet_lite."""
__version__ = '0.1.0'
