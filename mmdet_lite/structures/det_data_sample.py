"""DetDataSample: the per-image record passed between datasets, models and metrics."""
from typing import List, Optional

from mmengine.structures import BaseDataElement, InstanceData


class DetDataSample(BaseDataElement):
    """Annotations and predictions of one image, mirroring mmdet 3.x.

    Data fields (each an :class:`mmengine.structures.InstanceData`):

    - ``gt_instances``: ground truth (``bboxes`` [N, 4], ``labels`` [N], optional ``masks``).
    - ``ignored_instances``: ground truth marked as ignore (crowd) regions.
    - ``proposals``: region proposals fed to a second stage (``bboxes``, ``scores``).
    - ``pred_instances``: final predictions (``bboxes``, ``scores``, ``labels``, ``masks``).

    Image-level facts (``img_shape``, ``ori_shape``, ``scale_factor``, ``img_id``, ...) live in
    the metainfo, set with ``set_metainfo`` or the ``metainfo=`` constructor argument.

    Example:
        >>> from mmengine.structures import InstanceData
        >>> sample = DetDataSample(metainfo=dict(img_shape=(800, 1333)))
        >>> sample.gt_instances = InstanceData(labels=torch.tensor([1]))
    """

    def _set_instances(self, name: str, value: InstanceData) -> None:
        """Store ``value`` under ``name`` after checking it is an InstanceData."""
        if not isinstance(value, InstanceData):
            raise TypeError(f'DetDataSample.{name} must be an mmengine InstanceData, '
                            f'but got {type(value).__name__}')
        self.set_field(value, name, dtype=InstanceData)

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


SampleList = List[DetDataSample]
OptSampleList = Optional[SampleList]
