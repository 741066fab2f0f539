"""The detector interface: one ``forward`` with 'loss', 'predict' and 'tensor' modes."""
import functools
import inspect
from abc import ABCMeta, abstractmethod
from typing import Callable, Dict, List, Tuple, Union

from mmengine.model import BaseModel
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample, OptSampleList, SampleList
from mmdet_lite.utils import InstanceList, OptConfigType, OptMultiConfig

ForwardResults = Union[Dict[str, Tensor], List[DetDataSample], Tuple[Tensor, ...], Tensor]

# mmdetection names the batch arguments of loss/predict/_forward/extract_feat
# ``batch_inputs`` and ``batch_data_samples``; mmdet_lite used to call them ``inputs`` and
# ``data_samples`` (the names of ``forward``). Callers may use either spelling.
_BATCH_KEYWORD_ALIASES = {
    'inputs': 'batch_inputs',
    'data_samples': 'batch_data_samples',
    'batch_inputs': 'inputs',
    'batch_data_samples': 'data_samples',
}
_ALIASED_METHODS = ('loss', 'predict', '_forward', 'extract_feat')


def accept_batch_keyword_aliases(method: Callable) -> Callable:
    """Let ``method`` take ``inputs``/``batch_inputs`` (and ``data_samples``/
    ``batch_data_samples``) as keywords, whichever of each pair its signature names.

    Args:
        method (Callable): A detector method such as ``loss(self, batch_inputs,
            batch_data_samples)``.

    Returns:
        Callable: ``method`` itself when no alias applies, else a wrapper that renames the
        alias to the parameter name before calling it.
    """
    if getattr(method, '_accepts_batch_aliases', False):
        return method
    params = inspect.signature(method).parameters
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return method  # **kwargs would swallow the alias; the method decides itself
    renames = {alias: name for alias, name in _BATCH_KEYWORD_ALIASES.items()
               if name in params and alias not in params}
    if not renames:
        return method

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        for alias, name in renames.items():
            if alias in kwargs:
                if name in kwargs:
                    raise TypeError(f'{type(self).__name__}.{method.__name__}() got both '
                                    f'{name!r} and its alias {alias!r}; pass one of them')
                kwargs[name] = kwargs.pop(alias)
        return method(self, *args, **kwargs)

    wrapper._accepts_batch_aliases = True
    return wrapper


class InvalidModeError(ValueError, RuntimeError):
    """An unknown ``mode`` of ``forward`` (a RuntimeError, as mmdetection raises)."""


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

    def __init_subclass__(cls, **kwargs) -> None:
        # Wrapping at class creation covers every detector, plugins included, so that
        # mmdetection-style keyword calls (``model.loss(batch_inputs=..., ...)``) work on
        # methods written with either spelling.
        super().__init_subclass__(**kwargs)
        for name in _ALIASED_METHODS:
            method = cls.__dict__.get(name)
            if inspect.isfunction(method):
                setattr(cls, name, accept_batch_keyword_aliases(method))

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
        """bool: Whether the detector has a neck."""
        return getattr(self, 'neck', None) is not None

    @property
    def with_shared_head(self) -> bool:
        """bool: Whether the RoI head has a shared head (e.g. the C4 ResLayer)."""
        roi_head = getattr(self, 'roi_head', None)
        return roi_head is not None and getattr(roi_head, 'with_shared_head', False)

    @property
    def with_bbox(self) -> bool:
        """bool: Whether the detector predicts boxes (a RoI box head or a dense head)."""
        roi_head = getattr(self, 'roi_head', None)
        if roi_head is not None and getattr(roi_head, 'with_bbox', False):
            return True
        return getattr(self, 'bbox_head', None) is not None

    @property
    def with_mask(self) -> bool:
        """bool: Whether the detector predicts masks."""
        roi_head = getattr(self, 'roi_head', None)
        if roi_head is not None and getattr(roi_head, 'with_mask', False):
            return True
        return getattr(self, 'mask_head', None) is not None

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
        raise InvalidModeError(f"Invalid mode {mode!r}: expected 'loss', 'predict' or "
                               "'tensor'")

    @abstractmethod
    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone (+ neck) features of ``batch_inputs`` [B, 3, H, W]."""

    @abstractmethod
    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of a batch."""

    @abstractmethod
    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Predictions of a batch, attached to ``batch_data_samples``."""

    @abstractmethod
    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> tuple:
        """Raw network outputs."""

    @staticmethod
    def add_pred_to_datasample(data_samples: SampleList,
                               results_list: InstanceList) -> SampleList:
        """Store each image's detections as its ``pred_instances``."""
        for sample, results in zip(data_samples, results_list):
            sample.pred_instances = results
        return data_samples
