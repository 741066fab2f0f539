"""The Pascal VOC detection dataset (VOC2007 / VOC2012 layouts)."""
from ..registry import DATASETS
from .xml_style import XMLDataset

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
               'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')

# mmdetection's visualization colours (RGB), one per class above.
VOC_PALETTE = [(106, 0, 228), (119, 11, 32), (165, 42, 42), (0, 0, 192), (197, 226, 255),
               (0, 60, 100), (0, 0, 142), (255, 77, 255), (153, 69, 1), (120, 166, 157),
               (0, 182, 199), (0, 226, 252), (182, 182, 255), (0, 0, 230), (220, 20, 60),
               (163, 255, 0), (0, 82, 0), (3, 95, 161), (0, 80, 100), (183, 130, 88)]


@DATASETS.register_module()
class VOCDataset(XMLDataset):
    """Pascal VOC: :class:`XMLDataset` with the 20 VOC classes and their palette.

    ``metainfo['dataset_type']`` is ``'VOC2007'`` or ``'VOC2012'`` when
    ``data_prefix['sub_data_root']`` names one of them, else None; ``VOCMetric`` reads it
    to warn about an ``eval_mode`` that is not the year's official one.

    Example:
        >>> dataset = VOCDataset(  # doctest: +SKIP
        ...     data_root='data/VOCdevkit/', ann_file='VOC2007/ImageSets/Main/test.txt',
        ...     data_prefix=dict(sub_data_root='VOC2007/'), test_mode=True)
    """

    METAINFO = dict(classes=VOC_CLASSES, palette=VOC_PALETTE)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if 'VOC2007' in self.sub_data_root:
            self._metainfo['dataset_type'] = 'VOC2007'
        elif 'VOC2012' in self.sub_data_root:
            self._metainfo['dataset_type'] = 'VOC2012'
        else:
            self._metainfo['dataset_type'] = None
