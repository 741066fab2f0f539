"""The detector interface: one ``forward`` with 'loss', 'predict' and 'tensor' modes."""
from abc import ABCMeta, abstractmethod
from typing import Dict, List, Tuple, Union

from mmengine.model import BaseModel
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample, OptSampleList, SampleList
from mmdet_lite.utils import InstanceList, OptConfigType, OptMultiConfig

ForwardResults = Union[Dict[str, Tensor], List[DetDataSample], Tuple[Tensor, ...], Tensor]


class BaseDetector(BaseModel, metaclass=ABCMeta):
    """Base class of detectors (an mmengine ``BaseModel``).

    ``forward(inputs, data_samples, mode)`` dispatches to:

    - ``'loss'``: a dict of losses (what ``train_step`` optimizes),
    - ``'predict'``: ``DetDataSample``s with ``pred_instances`` in original-image pixels,
    - ``'tensor'``: the raw head outputs, without post-processing (for export/analysis).

    Args:
        data_preprocessor (dict, optional): e.g. ``DetDataPreprocessor``: normalizes and
            pads a batch before ``forward``.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self, data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        # mmengine's BaseModel would build a config through its root registry, which only
        # finds our DetDataPreprocessor under the mmdet_lite default scope; building it from
        # our registry works with or without one.
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)

    @property
    def with_neck(self) -> bool:
        return getattr(self, 'neck', None) is not None

    def forward(self, inputs: Tensor, data_samples: OptSampleList = None,
                mode: str = 'tensor') -> ForwardResults:
        """Run the model in one of its three modes.

        Args:
            inputs (Tensor): Normalized, padded images, [B, 3, H, W].
            data_samples (list[DetDataSample], optional): Ground truth and image metas.
            mode (str): 'loss', 'predict' or 'tensor'.
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise ValueError(f"Invalid mode {mode!r}: expected 'loss', 'predict' or 'tensor'")

    @abstractmethod
    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone (+ neck) features."""

    @abstractmethod
    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of a batch."""

    @abstractmethod
    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Predictions of a batch, attached to ``data_samples``."""

    @abstractmethod
    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> tuple:
        """Raw network outputs."""

    @staticmethod
    def add_pred_to_datasample(data_samples: SampleList,
                               results_list: InstanceList) -> SampleList:
        """Store each image's detections as its ``pred_instances``."""
        for sample, results in zip(data_samples, results_list):
            sample.pred_instances = results
        return data_samples
