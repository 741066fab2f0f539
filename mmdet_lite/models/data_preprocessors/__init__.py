"""Data preprocessors: turn collated dataloader output into model-ready batches."""
from .data_preprocessor import DetDataPreprocessor

__all__ = ['DetDataPreprocessor']
