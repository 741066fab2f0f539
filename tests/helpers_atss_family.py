"""Scaffolding shared by the ATSS-family detector tests (ATSS, GFL, PAA, TOOD, VFNet).

Their mmdetection 3.3 COCO configs share one layout: ResNet-50 -> FPN (P3-P7, extra convs on
the outputs) -> a GN head on one anchor (or point) per position. The tests shrink that model
the same way, feed it the same two images, and load a random checkpoint with mmdetection's keys
to show that it loads strictly.
"""
import copy
import inspect
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from helpers import init_weights_quietly, make_batch, make_det_sample
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmdet_lite.models.detectors import SingleStageDetector
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample

NUM_CLASSES = 3
LEVEL_SIZES = [8, 4, 2, 1, 1]  # feature map side of a 64 px input at strides 8..128


def tiny_model(config: Path, octave_base_scale: Optional[int] = 2, **head_updates):
    """The config's model shrunk: ResNet-18 of 16 base channels from scratch, a 32-channel
    neck and head (the config's GN, 32 groups), 2 convs per tower, 3 classes, every score kept
    at test time. ``octave_base_scale=2`` makes 16x16 anchors on P3 (None: leave the head's
    anchors); ``head_updates`` override further head arguments."""
    cfg = Config.fromfile(str(config)).model
    cfg.backbone.update(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False,
                        init_cfg=None)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    cfg.bbox_head.update(num_classes=NUM_CLASSES, in_channels=32, feat_channels=32,
                         stacked_convs=2)
    cfg.bbox_head.update(head_updates)
    if octave_base_scale is not None:
        cfg.bbox_head.anchor_generator.octave_base_scale = octave_base_scale
    cfg.test_cfg.score_thr = 0.0  # keep detections of the untrained model
    model = MODELS.build(cfg)
    init_weights_quietly(model)
    return model


def two_images(img_shape: Tuple[int, int] = (64, 64),
               scale_factor: Tuple[float, float] = (1.0, 1.0)) -> dict:
    """A batch of two images with one and two gt boxes (classes 0; 2 and 1), resized by
    ``scale_factor`` (w, h) from their original size."""
    ori_shape = tuple(round(s / f) for s, f in zip(img_shape, scale_factor[::-1]))
    return make_batch([
        make_det_sample([[8, 8, 40, 40]], [0], img_shape=img_shape, ori_shape=ori_shape,
                        scale_factor=scale_factor),
        make_det_sample([[4, 24, 36, 60], [40, 4, 60, 20]], [2, 1], img_shape=img_shape,
                        ori_shape=ori_shape, scale_factor=scale_factor)])


def preprocess(model, data: dict, training: bool = False):
    """The model's data preprocessor on a copy of ``data``: (inputs, data_samples)."""
    data = model.data_preprocessor(copy.deepcopy(data), training)
    return data['inputs'], data['data_samples']


def random_checkpoint(expected: Dict[str, tuple]) -> Dict[str, torch.Tensor]:
    """A state dict with the given keys and shapes: uniform random tensors, 3.5 for the
    scalars (the per-level ``Scale``), 7 for BN's ``num_batches_tracked``."""
    state = {k: torch.rand(shape) if shape else torch.tensor(3.5)
             for k, shape in expected.items() if not k.endswith('num_batches_tracked')}
    state.update({k: torch.tensor(7) for k in expected if k.endswith('num_batches_tracked')})
    return state


def assert_single_stage_signature(detector_cls: type) -> None:
    """mmdetection's SingleStageDetector signature (a neck is required), registered under
    the class name."""
    params = inspect.signature(detector_cls.__init__).parameters
    assert list(params) == ['self', 'backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg']
    assert params['neck'].default is inspect.Parameter.empty
    assert MODELS.get(detector_cls.__name__) is detector_cls
    assert issubclass(detector_cls, SingleStageDetector)


def assert_detections(pred, max_per_img: int = 100) -> None:
    """Boxes [K, 4] with 0 < K <= max_per_img, integer labels of the 3 classes, scores that
    are probabilities."""
    assert 0 < len(pred) <= max_per_img and pred.bboxes.shape == (len(pred), 4)
    assert pred.labels.dtype == torch.long and torch.all(pred.labels < NUM_CLASSES)
    assert torch.all((pred.scores > 0) & (pred.scores < 1))


def predict_rescaled(model, clipped: bool = True) -> list:
    """Predict :func:`two_images` given as 64x64 inputs resized x2 from 32x32 originals.

    Checks that each image has :func:`assert_detections` and that ``mode='predict'`` gives
    the boxes in original pixels: half of those predicted with ``rescale=False`` (and, if
    ``clipped``, inside the 32x32 image).

    Returns:
        list[InstanceData]: The ``pred_instances`` of each image, in original pixels.
    """
    model.eval()
    inputs, samples = preprocess(model, two_images(scale_factor=(2.0, 2.0)))
    with torch.no_grad():
        in_input = [s.pred_instances.clone() for s in model.predict(
            inputs, copy.deepcopy(samples), rescale=False)]
        results = model(inputs, samples, mode='predict')
    assert len(results) == 2 and all(isinstance(r, DetDataSample) for r in results)
    preds = []
    for result, resized in zip(results, in_input):
        pred = result.pred_instances
        assert_detections(pred)
        assert torch.allclose(pred.bboxes, resized.bboxes / 2, atol=1e-4)
        if clipped:
            assert pred.bboxes.max() <= 32 + 1e-4
        preds.append(pred)
    return preds


def train_losses(model, data: dict, steps: int, lr: float = 2e-3) -> List[float]:
    """Total loss of each of ``steps`` AdamW training steps on ``data``."""
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=lr))
    return [model.train_step(copy.deepcopy(data), optim_wrapper)['loss'].item()
            for _ in range(steps)]
