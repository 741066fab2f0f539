"""Export adapters: how a detector family splits into exportable graphs and eager glue.

A detector cannot be exported whole: its post-processing has data-dependent shapes (a
score threshold keeps an unknown number of boxes, NMS keeps fewer). An adapter cuts the
detector where the shapes stop being fixed:

- ``graphs()``: the :class:`ExportGraph` s to export, each an ``nn.Module`` taking and
  returning plain tensors of known shapes (the first one takes the raw image batch
  [B, 3, H, W]);
- ``predict(runners, images, batch_img_metas)``: runs those graphs through ``runners``
  (the eager modules, ``ExportedProgram.module()`` s or onnxruntime sessions, whichever was
  exported) and turns their outputs into detections with the heads' own ``predict_by_feat``,
  so that the result equals the detector's eager ``predict``.

Adapters are found by detector class (:func:`get_export_adapter` walks the MRO), so a new
family is one :func:`register_export_adapter` class in its own file.
"""
import importlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type

import torch
from torch import Tensor, nn

from mmdet_lite.utils import InstanceList
from .normalize import InputNormalizer

# A graph as it runs after export: positional tensors in, a tuple of tensors out.
Runner = Callable[..., Tuple[Tensor, ...]]

_ADAPTERS: Dict[type, Type['ExportAdapter']] = {}
# The modules of mmdet_lite's own adapters, imported on the first lookup.
_FAMILY_MODULES = ('dense_adapter', 'detr_adapter', 'two_stage_adapter')


class ExportNotSupportedError(ValueError):
    """The detector (or one of its parts) has no export path."""


@dataclass
class ExportGraph:
    """One exportable piece of a detector.

    Args:
        name (str): Key of the graph in ``runners`` and in the exported file names
            (``'model'`` for the first one).
        module (nn.Module): Takes ``example_inputs`` positionally, returns a tuple of tensors.
        example_inputs (tuple[Tensor]): Inputs to trace with.
        input_names (list[str]): One name per input.
        output_names (list[str]): One name per output.
        dynamic_dims (dict): ``{input_name: {axis: dim_name}}`` of the axes that may vary
            (the batch with ``--dynamic-batch``, the number of RoIs of a RoI graph).
            Outputs follow from the inputs.
    """

    name: str
    module: nn.Module
    example_inputs: Tuple[Tensor, ...]
    input_names: List[str]
    output_names: List[str]
    dynamic_dims: Dict[str, Dict[int, str]] = field(default_factory=dict)


class ExportAdapter:
    """Base of the family adapters: the detector, its fixed input size and normalization.

    Args:
        model (nn.Module): A detector in eval mode.
        input_shape (tuple[int, int]): (H, W) of the exported input; the data
            preprocessor's ``pad_size_divisor`` must divide both, as eager padding would
            otherwise change the size.
    """

    #: Whether ``postprocess_graph`` gives decode + NMS inside the graph (ONNX only).
    supports_with_postprocess: bool = False

    def __init__(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        height, width = (int(v) for v in input_shape)
        divisor = getattr(model.data_preprocessor, 'pad_size_divisor', 1) or 1
        if height % divisor or width % divisor:
            raise ValueError(f'--shape {height} {width}: both must be multiples of the data '
                             f"preprocessor's pad_size_divisor ({divisor}), e.g. "
                             f'{_round_up(height, divisor)} {_round_up(width, divisor)}')
        self.model = model
        self.input_shape = (height, width)
        self.normalizer = InputNormalizer.from_data_preprocessor(model.data_preprocessor)

    def example_images(self, batch_size: int = 1, seed: int = 0) -> Tensor:
        """Random pixel values [B, 3, H, W] in [0, 255] to trace with."""
        generator = torch.Generator().manual_seed(seed)
        return torch.rand((batch_size, 3, *self.input_shape), generator=generator) * 255

    def graphs(self, batch_size: int = 1, dynamic_batch: bool = False) -> List[ExportGraph]:
        """The graphs to export, the image graph first."""
        raise NotImplementedError

    def predict(self, runners: Dict[str, Runner], images: Tensor,
                batch_img_metas: List[dict]) -> InstanceList:
        """Detections of a batch from the exported graphs plus the eager glue.

        Args:
            runners (dict[str, Callable]): One per graph name.
            images (Tensor): Raw pixel batch [B, 3, H, W] (the exported input size).
            batch_img_metas (list[dict]): ``img_shape``, ``ori_shape``, ``scale_factor``,
                ``pad_shape``, ``batch_input_shape`` of each image (see
                :func:`mmdet_lite.deployment.image_input.fixed_size_meta`).

        Returns:
            list[InstanceData]: As the detector's ``predict`` with ``rescale=True``.
        """
        raise NotImplementedError

    def postprocess_graph(self, batch_size: int = 1,
                          dynamic_batch: bool = False) -> ExportGraph:
        """The image graph with decoding and NMS inside (``--with-postprocess``)."""
        raise ExportNotSupportedError(
            f'--with-postprocess is not available for {type(self.model).__name__} '
            f'({type(self).__name__}); export without it and post-process in Python')

    @staticmethod
    def batch_dims(dynamic_batch: bool, *names: str) -> Dict[str, Dict[int, str]]:
        """``dynamic_dims`` making axis 0 of each named input the batch."""
        return {name: {0: 'batch'} for name in names} if dynamic_batch else {}


def register_export_adapter(*detector_types: type) -> Callable:
    """Class decorator: use the adapter for these detector classes and their subclasses."""

    def decorator(adapter_cls: Type[ExportAdapter]) -> Type[ExportAdapter]:
        for detector_type in detector_types:
            _ADAPTERS[detector_type] = adapter_cls
        return adapter_cls

    return decorator


def get_export_adapter(model: nn.Module, input_shape: Sequence[int],
                       adapter_cls: Optional[Type[ExportAdapter]] = None) -> ExportAdapter:
    """The adapter of the nearest registered class in ``type(model)``'s MRO.

    Raises:
        ExportNotSupportedError: No adapter is registered for the detector or its bases.
    """
    for family in _FAMILY_MODULES:  # importing a family module registers its adapter
        importlib.import_module(f'{__package__}.{family}')
    if adapter_cls is None:
        adapter_cls = next((_ADAPTERS[cls] for cls in type(model).__mro__ if cls in _ADAPTERS),
                           None)
    if adapter_cls is None:
        covered = sorted(cls.__name__ for cls in _ADAPTERS)
        raise ExportNotSupportedError(f'no export adapter for {type(model).__name__}; '
                                      f'covered detectors and their subclasses: {covered}')
    return adapter_cls(model, input_shape)


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor
