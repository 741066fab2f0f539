"""``benchmark.py stages``: where a single-stage detector's inference time goes.

It splits the inference on one image (``predict`` mode, batch 1) into backbone, neck, head
forward and post-processing (score filtering, top-k, decoding, NMS, rescaling), each timed
on its own, plus the whole ``predict`` (see :mod:`mmdet_lite.analysis.stage_timing`). It
keeps the config's ``test_cfg`` unless ``--score-thr`` is given; with random weights every
prior scores about the prior probability of the classification bias, so the
post-processing works on the most candidates the config allows (its worst case).
``--checkpoint`` loads trained weights instead, and ``--image`` times them on a real image
(resized and padded to ``--shape``) rather than on random pixels, on which a trained
model's post-processing sees many more low-score candidates than on real data.
``--fuse-conv-bn`` folds BatchNorm into the convs (mmcv's ``fuse_conv_bn``, as
mmdetection's benchmark offers) and ``--channels-last`` runs model and input in NHWC memory
format, which oneDNN's CPU convolutions and pools prefer.
"""
import argparse
from typing import Tuple

import torch
from torch import nn

from mmdet_lite.apis.cli import load_config

from ..benchmark import load_average, machine_summary, measure, synthetic_gt
from ..stage_timing import format_stage_rows, fuse_conv_bn_untied, single_stage_steps
from .random_detector import (build_random_detector, check_padded_shape, detector_inputs,
                              set_score_thr)


def _load_weights(model: nn.Module, checkpoint: str) -> None:
    from mmdet_lite.engine.checkpoint import load_local_checkpoint  # weights-only
    state = load_local_checkpoint(checkpoint, map_location='cpu')
    model.load_state_dict(state.get('state_dict', state), strict=True)


def _image_inputs(model: nn.Module, image: str, img_shape: Tuple[int, int]):
    """One real image resized (aspect kept) and padded to ``img_shape``, through the model's
    data preprocessor: what ``predict`` sees for that image in a test loop."""
    from mmcv.transforms import Compose

    from mmdet_lite.registry import TRANSFORMS
    h, w = img_shape
    pipeline = Compose([TRANSFORMS.build(t) for t in (
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(w, h), keep_ratio=True),
        dict(type='Pad', size=(w, h), pad_val=dict(img=(114, 114, 114))),
        dict(type='PackDetInputs', meta_keys=('img_path', 'ori_shape', 'img_shape',
                                              'scale_factor', 'pad_shape')))])
    packed = pipeline(dict(img_path=image, img_id=0))
    batch = model.data_preprocessor(dict(inputs=[packed['inputs']],
                                         data_samples=[packed['data_samples']]), False)
    return batch['inputs'], batch['data_samples']


def run_stages(args: argparse.Namespace) -> None:
    """Time each stage and print the report (flags: ``benchmark.py stages --help``)."""
    h, w = check_padded_shape(args.shape)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    if args.score_thr is not None:
        set_score_thr(cfg.model, args.score_thr)
    model = build_random_detector(cfg.model)
    if args.checkpoint:
        _load_weights(model, args.checkpoint)
    if args.image:
        inputs, samples = _image_inputs(model, args.image, (h, w))
    else:
        inputs, samples = detector_inputs(synthetic_gt(1, 1, (h, w), 1), (h, w),
                                          with_masks=False)
    if args.fuse_conv_bn:
        model = fuse_conv_bn_untied(model.eval())  # BN folded into the preceding conv
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    steps = single_stage_steps(model, inputs, samples)
    load_before = load_average()
    rows, results = [], {}
    for name, fn in steps.items():
        results[name] = measure(fn, name, 'mmdet_lite', args.repeat, args.warmup)
        rows.append((name, results[name].median_ms, results[name].cpu_ms))
    print('== mmdet_lite benchmark: inference stages ==')
    print(f'config       : {args.config} ({cfg.model.type})')
    print(f'weights      : {args.checkpoint or "random init"}')
    print(f'machine      : {machine_summary(args.threads)}')
    print(f'load average : {load_before} (start) / {load_average()} (end)')
    print(f'input        : 1 x 3x{h}x{w} ({args.image or "random pixels"}); '
          f'repeat/warmup {args.repeat} / {args.warmup}')
    print(f'model        : fuse_conv_bn {args.fuse_conv_bn}, channels_last '
          f'{args.channels_last}')
    print(f'test_cfg     : {dict(cfg.model.test_cfg)}')
    print(f'detections   : {len(results["predict"].output[0].pred_instances)}')
    print(format_stage_rows(rows))
    parts = sum(ms for name, ms, _ in rows if name != 'predict')
    print(f'sum of stages: {parts:.1f} ms (the rest of predict: data-sample packing)')
