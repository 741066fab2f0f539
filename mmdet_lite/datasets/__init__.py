"""Datasets and samplers: importing this package registers them into ``DATASETS`` and
``DATA_SAMPLERS``."""
from .base_det_dataset import BaseDetDataset
from .coco import COCO_CLASSES, COCO_PALETTE, CocoDataset
from .dataset_wrappers import MultiImageMixDataset
from .lvis import LVISDataset, LVISV05Dataset, LVISV1Dataset
from .samplers import AspectRatioBatchSampler
from .shapes import ShapesDataset
from .shapes_generator import SHAPES_CLASSES, generate_shapes_split
from .voc import VOC_CLASSES, VOC_PALETTE, VOCDataset
from .xml_style import XMLDataset

__all__ = [
    'BaseDetDataset', 'CocoDataset', 'COCO_CLASSES', 'COCO_PALETTE', 'ShapesDataset',
    'SHAPES_CLASSES', 'generate_shapes_split', 'AspectRatioBatchSampler',
    'MultiImageMixDataset',
    'XMLDataset', 'VOCDataset', 'VOC_CLASSES', 'VOC_PALETTE',
    'LVISDataset', 'LVISV05Dataset', 'LVISV1Dataset'
]
