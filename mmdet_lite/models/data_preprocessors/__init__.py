"""Data preprocessors: turn collated dataloader output into model-ready batches."""
from .batch_fixed_size_pad import BatchFixedSizePad
from .batch_resize import BatchResize
from .batch_sync_random_resize import BatchSyncRandomResize
from .data_preprocessor import DetDataPreprocessor

__all__ = ['DetDataPreprocessor', 'BatchFixedSizePad', 'BatchSyncRandomResize', 'BatchResize']
