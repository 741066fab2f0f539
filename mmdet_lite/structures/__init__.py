"""Shared data structures: the per-image data sample, box utilities and instance masks."""
from .det_data_sample import DetDataSample, OptSampleList, SampleList

__all__ = ['DetDataSample', 'SampleList', 'OptSampleList']
