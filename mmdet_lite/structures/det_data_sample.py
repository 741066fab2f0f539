"""DetDataSample: the per-image record passed between datasets, models and metrics."""
from typing import List, Optional, Type

from mmengine.structures import BaseDataElement, InstanceData, PixelData


class DataSampleFieldError(TypeError, AssertionError):
    """A typed field of :class:`DetDataSample` set to a value of the wrong type.

    mmdetection (through mmengine's ``set_field``) raises AssertionError; this is one, and a
    TypeError too.
    """


class DetDataSample(BaseDataElement):
    """Annotations and predictions of one image, mirroring mmdet 3.x.

    Instance fields (each an :class:`mmengine.structures.InstanceData`):

    - ``gt_instances``: ground truth (``bboxes`` [N, 4], ``labels`` [N], optional ``masks``).
    - ``ignored_instances``: ground truth marked as ignore (crowd) regions.
    - ``proposals``: region proposals fed to a second stage (``bboxes``, ``scores``).
    - ``pred_instances``: final predictions (``bboxes``, ``scores``, ``labels``, ``masks``).

    Pixel fields (each an :class:`mmengine.structures.PixelData`, tensors [C, H, W]):

    - ``gt_sem_seg`` / ``pred_sem_seg``: semantic segmentation (``sem_seg``).
    - ``gt_panoptic_seg`` / ``pred_panoptic_seg``: panoptic segmentation (``sem_seg``).

    Setting a field to a value of another type raises :class:`DataSampleFieldError` (an
    AssertionError, as in mmdetection, and a TypeError). Deleting it removes it.

    Image-level facts (``img_shape``, ``ori_shape``, ``scale_factor``, ``img_id``, ...) live in
    the metainfo, set with ``set_metainfo`` or the ``metainfo=`` constructor argument.

    Example:
        >>> from mmengine.structures import InstanceData
        >>> sample = DetDataSample(metainfo=dict(img_shape=(800, 1333)))
        >>> sample.gt_instances = InstanceData(labels=torch.tensor([1]))
    """

    def _set_typed(self, name: str, value: BaseDataElement,
                   dtype: Type[BaseDataElement]) -> None:
        """Store ``value`` under ``name`` after checking it is a ``dtype``."""
        if not isinstance(value, dtype):
            public = name.lstrip('_')
            if name not in self._data_fields:
                # mmengine registered the public name before calling this setter; drop it
                # again so that a failed assignment leaves no half-set field behind.
                self._data_fields.discard(public)
            raise DataSampleFieldError(
                f'DetDataSample.{public} must be an mmengine {dtype.__name__}, '
                f'but got {type(value).__name__}')
        self.set_field(value, name, dtype=dtype)

    def _set_instances(self, name: str, value: InstanceData) -> None:
        """Store ``value`` under ``name`` after checking it is an InstanceData."""
        self._set_typed(name, value, InstanceData)

    def _set_pixels(self, name: str, value: PixelData) -> None:
        """Store ``value`` under ``name`` after checking it is a PixelData."""
        self._set_typed(name, value, PixelData)

    @property
    def gt_instances(self) -> InstanceData:
        """InstanceData: the ground-truth instances of the image."""
        return self._gt_instances

    @gt_instances.setter
    def gt_instances(self, value: InstanceData) -> None:
        self._set_instances('_gt_instances', value)

    @gt_instances.deleter
    def gt_instances(self) -> None:
        del self._gt_instances

    @property
    def pred_instances(self) -> InstanceData:
        """InstanceData: the model's final predictions for the image."""
        return self._pred_instances

    @pred_instances.setter
    def pred_instances(self, value: InstanceData) -> None:
        self._set_instances('_pred_instances', value)

    @pred_instances.deleter
    def pred_instances(self) -> None:
        del self._pred_instances

    @property
    def proposals(self) -> InstanceData:
        """InstanceData: region proposals used by two-stage detectors."""
        return self._proposals

    @proposals.setter
    def proposals(self, value: InstanceData) -> None:
        self._set_instances('_proposals', value)

    @proposals.deleter
    def proposals(self) -> None:
        del self._proposals

    @property
    def ignored_instances(self) -> InstanceData:
        """InstanceData: ground-truth instances to ignore in training and evaluation."""
        return self._ignored_instances

    @ignored_instances.setter
    def ignored_instances(self, value: InstanceData) -> None:
        self._set_instances('_ignored_instances', value)

    @ignored_instances.deleter
    def ignored_instances(self) -> None:
        del self._ignored_instances

    @property
    def gt_panoptic_seg(self) -> PixelData:
        """PixelData: ground-truth panoptic segmentation of the image."""
        return self._gt_panoptic_seg

    @gt_panoptic_seg.setter
    def gt_panoptic_seg(self, value: PixelData) -> None:
        self._set_pixels('_gt_panoptic_seg', value)

    @gt_panoptic_seg.deleter
    def gt_panoptic_seg(self) -> None:
        del self._gt_panoptic_seg

    @property
    def pred_panoptic_seg(self) -> PixelData:
        """PixelData: predicted panoptic segmentation of the image."""
        return self._pred_panoptic_seg

    @pred_panoptic_seg.setter
    def pred_panoptic_seg(self, value: PixelData) -> None:
        self._set_pixels('_pred_panoptic_seg', value)

    @pred_panoptic_seg.deleter
    def pred_panoptic_seg(self) -> None:
        del self._pred_panoptic_seg

    @property
    def gt_sem_seg(self) -> PixelData:
        """PixelData: ground-truth semantic segmentation of the image."""
        return self._gt_sem_seg

    @gt_sem_seg.setter
    def gt_sem_seg(self, value: PixelData) -> None:
        self._set_pixels('_gt_sem_seg', value)

    @gt_sem_seg.deleter
    def gt_sem_seg(self) -> None:
        del self._gt_sem_seg

    @property
    def pred_sem_seg(self) -> PixelData:
        """PixelData: predicted semantic segmentation of the image."""
        return self._pred_sem_seg

    @pred_sem_seg.setter
    def pred_sem_seg(self, value: PixelData) -> None:
        self._set_pixels('_pred_sem_seg', value)

    @pred_sem_seg.deleter
    def pred_sem_seg(self) -> None:
        del self._pred_sem_seg


SampleList = List[DetDataSample]
OptSampleList = Optional[SampleList]
