"""A randomly initialised detector from a config, and inputs for it without a dataset.

Shared by the ``model``, ``stages`` and ``zoo`` modes of ``tools/analysis_tools/benchmark.py``:
they time the model, not the data pipeline, so the inputs are what the data preprocessor
would hand over (normalised, padded images and their data samples), and the weights are
random (nothing may be downloaded, and speed does not depend on the values).
"""
import logging
from typing import Callable, List, Sequence, Tuple

import torch
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from torch import Tensor, nn

from ..benchmark import box_masks

SIZE_DIVISOR = 32  # the configs' data preprocessors pad inputs to a multiple of 32


def check_padded_shape(shape: Sequence[int]) -> Tuple[int, int]:
    """``--shape H W`` as an input the data preprocessor could have padded.

    Args:
        shape (Sequence[int]): (H, W).

    Returns:
        tuple[int, int]: (H, W).

    Raises:
        ValueError: H or W is not a positive multiple of :data:`SIZE_DIVISOR`.
    """
    h, w = shape
    if h % SIZE_DIVISOR or w % SIZE_DIVISOR or h <= 0 or w <= 0:
        raise ValueError(f'--shape: H and W must be positive multiples of {SIZE_DIVISOR} '
                         f'(the padding divisor), got {h} {w}')
    return h, w


def num_classes(model_cfg: ConfigDict) -> int:
    """Object classes of a detector config (of its RoI head's box head, else its bbox head)."""
    if 'roi_head' in model_cfg:
        return model_cfg.roi_head.bbox_head.num_classes
    if 'bbox_head' in model_cfg:
        return model_cfg.bbox_head.num_classes
    raise KeyError('model: expected roi_head.bbox_head.num_classes or '
                   'bbox_head.num_classes in the config')


def set_score_thr(model_cfg: ConfigDict, score_thr: float) -> None:
    """Set the test score threshold: ``test_cfg.rcnn`` of a two-stage config, else
    ``test_cfg``."""
    test_cfg = model_cfg.test_cfg
    (test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg).score_thr = score_thr


def _loads_checkpoint(init_cfg: object) -> bool:
    """Whether an ``init_cfg`` entry loads weights from a file or URL: mmengine's
    ``dict(type='Pretrained', checkpoint=...)`` or, as PVT's and Swin's own ``init_weights``
    read it, a bare ``dict(checkpoint=...)``."""
    return isinstance(init_cfg, dict) and (init_cfg.get('type') == 'Pretrained' or
                                           ('type' not in init_cfg and 'checkpoint' in init_cfg))


def drop_pretrained(cfg: object) -> None:
    """Remove every ``init_cfg`` that loads a checkpoint, in place (a list keeps its other
    entries): the benchmarks time randomly initialised models, and nothing may be
    downloaded."""
    if isinstance(cfg, dict):
        init_cfg = cfg.get('init_cfg')
        if _loads_checkpoint(init_cfg):
            cfg['init_cfg'] = None
        elif isinstance(init_cfg, list):
            cfg['init_cfg'] = [c for c in init_cfg if not _loads_checkpoint(c)] or None
        for value in cfg.values():
            drop_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            drop_pretrained(value)


def build_random_detector(model_cfg: ConfigDict) -> nn.Module:
    """Build ``cfg.model`` with its own random initialisation (``init_weights``, seed 0),
    pretrained checkpoints dropped (:func:`drop_pretrained`); ``model_cfg`` is left as is."""
    from mmdet_lite.registry import MODELS
    from mmdet_lite.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model_cfg = model_cfg.copy()
    drop_pretrained(model_cfg)
    model = MODELS.build(model_cfg)
    # init_weights logs one INFO entry per parameter: keep the report readable.
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def count_params(model: nn.Module) -> Tuple[int, int]:
    """(all parameters, trainable parameters) of ``model``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def detector_inputs(gt: List[Tuple[Tensor, Tensor]], img_shape: Tuple[int, int],
                    with_masks: bool) -> Tuple[Tensor, list]:
    """Images and data samples as the data preprocessor leaves them, one per GT entry.

    Args:
        gt (list[tuple[Tensor, Tensor]]): Per image ``bboxes`` [N, 4] and ``labels`` [N]
            (e.g. from :func:`~mmdet_lite.analysis.benchmark.synthetic_gt`).
        img_shape (tuple[int, int]): (H, W), already padded: no resize, scale factor 1.
        with_masks (bool): Give each instance a filled-box ``BitmapMasks`` mask.

    Returns:
        tuple[Tensor, list[DetDataSample]]: Normalised random images [B, 3, H, W] (seed 1)
        and their samples with ``gt_instances``.
    """
    from mmengine.structures import InstanceData

    from mmdet_lite.structures import DetDataSample
    from mmdet_lite.structures.mask import BitmapMasks
    h, w = img_shape
    meta = dict(img_shape=img_shape, ori_shape=img_shape, pad_shape=img_shape,
                batch_input_shape=img_shape, scale_factor=(1.0, 1.0))
    samples = []
    for bboxes, labels in gt:
        instances = InstanceData(bboxes=bboxes.clone(), labels=labels.clone())
        if with_masks:
            instances.masks = BitmapMasks(box_masks(bboxes, img_shape), h, w)
        samples.append(DetDataSample(metainfo=meta, gt_instances=instances))
    inputs = torch.randn(len(gt), 3, h, w, generator=torch.Generator().manual_seed(1))
    return inputs, samples


def predict_step(model: nn.Module, inputs: Tensor, data_samples: list,
                 grad_mode: Callable = torch.no_grad) -> Callable[[], list]:
    """A closure running ``predict`` once, in eval mode under ``grad_mode()``
    (``torch.no_grad`` or ``torch.inference_mode``); it returns the predicted samples."""

    def infer():
        model.eval()
        with grad_mode():
            return model(inputs, data_samples, mode='predict')

    return infer
