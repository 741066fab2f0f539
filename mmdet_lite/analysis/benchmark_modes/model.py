"""``benchmark.py model``: one detector's inference and training step against torchvision's.

For randomly initialised weights it times (a) inference on one image (``predict`` mode,
under ``torch.no_grad``) and (b) one training step on two images (forward 'loss',
backward, SGD step), then the same for the torchvision counterpart built with matching
settings and our weights (see ``mmdet_lite/analysis/torchvision_baselines.py``), and prints
medians and the ratios mmdet_lite / torchvision. The models of a phase are timed
round-robin (:func:`~mmdet_lite.analysis.benchmark.measure_interleaved`). What is and is
not included is described in docs/benchmark.md. To compare a new detector, add one entry to ``TORCHVISION_BASELINES``.
"""
import argparse
import copy
from typing import List, Tuple

import torch
from torch import nn

from mmdet_lite.apis.cli import load_config

from ..benchmark import (PhaseResult, box_masks, format_results, load_average,
                         machine_summary, measure, measure_interleaved, synthetic_gt)
from ..torchvision_baselines import TORCHVISION_BASELINES, Baseline
from .random_detector import (build_random_detector, check_padded_shape, count_params,
                              detector_inputs, num_classes, predict_step, set_score_thr)

TRAIN_BATCH = 2
SGD = dict(lr=1e-4, momentum=0.9, weight_decay=1e-4)  # small lr: repeats must not diverge


def _tv_inputs(gt: list, img_shape: Tuple[int, int], baseline: Baseline):
    """Images in [0, 1] (torchvision normalises them itself) and target dicts."""
    gen = torch.Generator().manual_seed(1)
    images, targets = [], []
    for bboxes, labels in gt:
        images.append(torch.rand(3, *img_shape, generator=gen))
        target = dict(boxes=bboxes.clone(), labels=labels + baseline.label_offset)
        if baseline.with_masks:
            target['masks'] = torch.from_numpy(box_masks(bboxes, img_shape))
        targets.append(target)
    return images, targets


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], **SGD)


def _our_steps(model: nn.Module, img_shape, gt_one: list, gt_train: list, with_masks: bool):
    """Inference and train-step closures of our model (data preprocessor skipped)."""
    infer_inputs, infer_samples = detector_inputs(gt_one, img_shape, with_masks=False)
    train_inputs, train_samples = detector_inputs(gt_train, img_shape, with_masks)
    optimizer = _sgd(model)
    infer = predict_step(model, infer_inputs, infer_samples, torch.no_grad)

    def train_step():
        model.train()
        losses = model(train_inputs, train_samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return infer, train_step, lambda out: len(out[0].pred_instances)


def _tv_steps(model: nn.Module, img_shape, gt_one: list, gt_train: list, baseline: Baseline):
    """Inference and train-step closures of a torchvision detector (its transform included)."""
    infer_images, _ = _tv_inputs(gt_one, img_shape, baseline)
    train_images, targets = _tv_inputs(gt_train, img_shape, baseline)
    optimizer = _sgd(model)

    def infer():
        model.eval()
        with torch.no_grad():
            return model(infer_images)

    def train_step():
        model.train()
        loss = sum(model(train_images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def transform():
        with torch.no_grad():
            model.transform(infer_images)

    return infer, train_step, lambda out: len(out[0]['boxes']), transform


def _fast_path_steps(model: nn.Module, img_shape, gt_one: list, use_compile: bool):
    """Inference closures of the fast path's steps, each on top of the one before.

    ``plain, serial ops`` is the model with torchvision's single-threaded RoIAlign/NMS;
    the default model (row ``mmdet_lite``) adds the CPU kernels of ``cpu_ops``; then BN folded,
    channels-last and ``inference_mode`` (and ``torch.compile`` with ``--compile``).
    """
    from mmdet_lite.models.utils import (compile_detector, optimize_for_inference,
                                         set_cpu_ops)
    inputs, samples = detector_inputs(gt_one, img_shape, with_masks=False)
    plain = predict_step(model, inputs, samples, torch.no_grad)

    def serial():
        previous = set_cpu_ops(False)
        try:
            return plain()
        finally:
            set_cpu_ops(previous)

    steps = {'plain, serial ops': serial}
    fused = optimize_for_inference(copy.deepcopy(model), channels_last=False)
    steps['+ fuse_bn'] = predict_step(fused, inputs, samples, torch.no_grad)
    fast = optimize_for_inference(copy.deepcopy(model))
    steps['+ channels_last'] = predict_step(fast, inputs, samples, torch.no_grad)
    steps['+ inference_mode'] = predict_step(fast, inputs, samples, torch.inference_mode)
    if use_compile:
        compiled = optimize_for_inference(copy.deepcopy(model))
        compile_detector(compiled)
        steps['+ compile'] = predict_step(compiled, inputs, samples, torch.inference_mode)
    return steps


def _params_m(model: nn.Module) -> str:
    total, trainable = count_params(model)
    return f'{total / 1e6:.2f}M ({trainable / 1e6:.2f}M trainable)'


def _ratio_line(results: List[PhaseResult], attr: str, label: str) -> str:
    by_key = {(r.phase, r.model): getattr(r, attr) for r in results}
    ratios = [f'{phase} {by_key[phase, "mmdet_lite"] / by_key[phase, "torchvision"]:.2f}'
              for phase in ('inference', 'train_step')]
    return f'ratio mmdet_lite/torchvision (median {label}): ' + ', '.join(ratios)


def run_model(args: argparse.Namespace) -> None:
    """Time both models and print the report (flags: ``benchmark.py model --help``)."""
    h, w = check_padded_shape(args.shape)
    if args.threads < 1:
        raise ValueError(f'--threads must be >= 1, got {args.threads}')
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    set_score_thr(cfg.model, args.score_thr)  # before torchvision's settings are read
    compare = args.compare_torchvision
    if compare == 'auto':
        compare = next((name for name, b in TORCHVISION_BASELINES.items()
                        if b.detector == cfg.model.type), 'none')
    baseline = TORCHVISION_BASELINES.get(compare)
    model = build_random_detector(cfg.model)
    with_masks = 'mask_head' in cfg.model.get('roi_head', {})
    gt_train = synthetic_gt(TRAIN_BATCH, args.num_gt, (h, w), num_classes(cfg.model))
    gt_one = gt_train[:1]

    # Both models exist before any phase, so every peak_rss_mb includes both.
    steps = {'mmdet_lite': _our_steps(model, (h, w), gt_one, gt_train, with_masks)}
    params = {'mmdet_lite': _params_m(model)}
    weights, tv_transform = 'independent random init', None
    if baseline is not None:
        tv_model = baseline.build(cfg.model, (h, w))
        if baseline.copy_weights is not None:
            why_not = baseline.copy_weights(model, tv_model)
            weights = ('torchvision model loaded with ours' if why_not is None else
                       f'independent random init ({why_not})')
        *tv_steps, tv_tf = _tv_steps(tv_model, (h, w), gt_one, gt_train, baseline)
        steps['torchvision'] = tv_steps
        params['torchvision'] = _params_m(tv_model)

    # Every model's inference (then train step) is timed round-robin, so that the drift of
    # a shared machine falls on all of them alike (measure_interleaved).
    infer_fns = {name: infer for name, (infer, _, _) in steps.items()}
    counts = {name: count for name, (_, _, count) in steps.items()}
    if args.fast_path:
        for name, infer in _fast_path_steps(model, (h, w), gt_one, args.compile).items():
            infer_fns[name] = infer
            counts[name] = lambda out: len(out[0].pred_instances)
    load_before = load_average()
    results = measure_interleaved(infer_fns, 'inference', args.repeat, args.warmup)
    dets = {r.model: counts[r.model](r.output) for r in results}
    if baseline is not None:
        tv_transform = measure(tv_tf, 'transform', 'torchvision', args.repeat, args.warmup)
    train_fns = {name: train for name, (_, train, _) in steps.items()}
    if args.fast_path:  # training in channels-last (tools/train.py --channels-last)
        from mmdet_lite.models.utils import to_channels_last
        nhwc = to_channels_last(copy.deepcopy(model))
        train_fns['+ channels_last'] = _our_steps(nhwc, (h, w), gt_one, gt_train,
                                                  with_masks)[1]
    results += measure_interleaved(train_fns, 'train_step', args.repeat, args.warmup)

    print('== mmdet_lite benchmark: model ==')
    print(f'config       : {args.config} ({cfg.model.type})')
    print(f'torchvision  : {compare}')
    print(f'weights      : {weights}')
    print(f'machine      : {machine_summary(args.threads)}')
    print(f'load average : {load_before} (start) / {load_average()} (end)')
    print(f'inputs       : inference 1 x 3x{h}x{w}; train step {TRAIN_BATCH} x 3x{h}x{w}, '
          f'{args.num_gt} GT boxes each{" with masks" if with_masks else ""}')
    print(f'repeat/warmup: {args.repeat} / {args.warmup} rounds, models round-robin; '
          f'score_thr {args.score_thr} (both)')
    print('params       : ' + ' | '.join(f'{k} {v}' for k, v in params.items()))
    print('detections   : ' + ' | '.join(f'{k} {v}' for k, v in dets.items()))
    print(format_results(results))
    if tv_transform is not None:
        print(f'torchvision transform (normalize+resize+pad, inside its inference time): '
              f'{tv_transform.median_ms:.1f} ms')
        print(_ratio_line(results, 'median_ms', 'wall'))
        print(_ratio_line(results, 'cpu_ms', 'CPU'))
        if args.fast_path:
            tv_ms = next(r.median_ms for r in results
                         if (r.phase, r.model) == ('inference', 'torchvision'))
            print('inference ratio to torchvision by fast-path step (median wall): ' +
                  ', '.join(f'{r.model} {r.median_ms / tv_ms:.2f}' for r in results
                            if r.phase == 'inference' and r.model != 'torchvision'))
            tv_ms = next(r.median_ms for r in results
                         if (r.phase, r.model) == ('train_step', 'torchvision'))
            print('train step ratio to torchvision (median wall): ' +
                  ', '.join(f'{r.model} {r.median_ms / tv_ms:.2f}' for r in results
                            if r.phase == 'train_step' and r.model != 'torchvision'))
