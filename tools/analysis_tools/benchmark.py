"""Speed and memory of mmdet_lite: the training data pipeline, and models against torchvision.

    python tools/analysis_tools/benchmark.py dataloader CONFIG [--num-batches N]
    python tools/analysis_tools/benchmark.py model CONFIG [--shape H W] [--repeat R]
        [--warmup W] [--compare-torchvision {auto,fasterrcnn,maskrcnn,retinanet,none}]
        [--threads T]
    python tools/analysis_tools/benchmark.py stages CONFIG [--checkpoint CKPT] [--shape H W]
        [--repeat R] [--warmup W] [--threads T] [--score-thr S] [--image IMG]
        [--fuse-conv-bn] [--channels-last]
    python tools/analysis_tools/benchmark.py test_loop CONFIG [--checkpoint CKPT] [--threads T]
    python tools/analysis_tools/benchmark.py imports [PACKAGE ...] [--repeat R]
    python tools/analysis_tools/benchmark.py deform_attn [--batch B ...] [--shape H W]
        [--queries Q] [--repeat R] [--warmup W] [--threads T] [--device D]

``deform_attn`` times ``MultiScaleDeformableAttention`` (plain torch) at DINO-4scale sizes:
the decoder's cross-attention (Q queries, box references) and the encoder's self-attention
(every pixel of the 4 levels a query), forward under no_grad and forward + backward, with
peak memory (CPU: RSS above the phase's start; CUDA: max_memory_allocated).

``stages`` splits a single-stage detector's inference on one image (``predict`` mode,
batch 1) into backbone, neck, head forward and post-processing (score filtering, top-k,
decoding, NMS, rescaling), each timed on its own, plus the whole ``predict``. It keeps the
config's ``test_cfg`` unless ``--score-thr`` is given; with random weights every prior
scores about the prior probability of the classification bias, so the post-processing works
on the most candidates the config allows (its worst case). ``--checkpoint`` loads trained
weights instead, and ``--image`` times them on a real image (resized and padded to
``--shape``) rather than on random pixels, on which a trained model's post-processing sees
many more low-score candidates than on real data. ``--fuse-conv-bn`` folds BatchNorm into the convs (mmcv's
``fuse_conv_bn``, as mmdetection's benchmark offers) and ``--channels-last`` runs model and
input in NHWC memory format, which oneDNN's CPU convolutions and pools prefer.

``test_loop`` runs the config's test loop as ``tools/test.py`` does (dataloader, model,
evaluator) and reports images/s of the loop without and with the evaluation.

``imports`` measures what ``import PACKAGE`` costs beyond torch, torchvision, mmengine and
mmcv.cnn (``python -X importtime`` in fresh interpreters, median) and lists the modules
with the largest own import time.

``model`` times, for randomly initialised weights, (a) inference on one image (``predict``
mode, under ``torch.no_grad``) and (b) one training step on two images (forward 'loss',
backward, SGD step), then the same for the torchvision counterpart built with matching
settings and our weights (see ``mmdet_lite/analysis/torchvision_baselines.py``), and prints
medians and the ratios mmdet_lite / torchvision. What is and is not included is described
in docs/benchmark.md. To compare a new detector, add one entry to ``TORCHVISION_BASELINES``.
"""
import argparse
import itertools
import logging
import time
from typing import List, Tuple

import torch
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from torch import nn

from mmdet_lite.apis.cli import exit_on_user_error, load_config
from mmdet_lite.analysis.benchmark import (IMPORT_BASELINE, PhaseResult, box_masks,
                                           deform_attn_inputs, format_deform_attn_rows,
                                           format_results, level_shapes, load_average,
                                           machine_summary, measure, measure_import,
                                           peak_rss_mb, reset_peak_rss, synthetic_gt,
                                           trim_heap)
from mmdet_lite.analysis.torchvision_baselines import TORCHVISION_BASELINES, Baseline

SIZE_DIVISOR = 32  # both families pad inputs to a multiple of 32
TRAIN_BATCH = 2
SGD = dict(lr=1e-4, momentum=0.9, weight_decay=1e-4)  # small lr: repeats must not diverge


# --------------------------------------------------------------------- inputs
def _num_classes(model_cfg: ConfigDict) -> int:
    if 'roi_head' in model_cfg:
        return model_cfg.roi_head.bbox_head.num_classes
    if 'bbox_head' in model_cfg:
        return model_cfg.bbox_head.num_classes
    raise KeyError('model: expected roi_head.bbox_head.num_classes or '
                   'bbox_head.num_classes in the config')


def _our_inputs(gt: list, img_shape: Tuple[int, int], with_masks: bool):
    """Pre-normalised images [B, 3, H, W] and DetDataSamples as the preprocessor leaves them."""
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


# --------------------------------------------------------------------- one step each
def _our_steps(model: nn.Module, img_shape, gt_one: list, gt_train: list, with_masks: bool):
    """Inference and train-step closures of our model (data preprocessor skipped)."""
    infer_inputs, infer_samples = _our_inputs(gt_one, img_shape, with_masks=False)
    train_inputs, train_samples = _our_inputs(gt_train, img_shape, with_masks)
    optimizer = _sgd(model)

    def infer():
        model.eval()
        with torch.no_grad():
            return model(infer_inputs, infer_samples, mode='predict')

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


def _params_m(model: nn.Module) -> str:
    total = sum(p.numel() for p in model.parameters()) / 1e6
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
    return f'{total:.2f}M ({trainable:.2f}M trainable)'


def _ratio_line(results: List[PhaseResult], attr: str, label: str) -> str:
    by_key = {(r.phase, r.model): getattr(r, attr) for r in results}
    ratios = [f'{phase} {by_key[phase, "mmdet_lite"] / by_key[phase, "torchvision"]:.2f}'
              for phase in ('inference', 'train_step')]
    return f'ratio mmdet_lite/torchvision (median {label}): ' + ', '.join(ratios)


def _set_score_thr(model_cfg: ConfigDict, score_thr: float) -> None:
    test_cfg = model_cfg.test_cfg
    (test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg).score_thr = score_thr


def _drop_pretrained(cfg: object) -> None:
    """Remove every ``init_cfg=dict(type='Pretrained', ...)`` in place: the benchmarks time
    randomly initialised models, and nothing may be downloaded."""
    if isinstance(cfg, dict):
        init_cfg = cfg.get('init_cfg')
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            cfg['init_cfg'] = None
        for value in cfg.values():
            _drop_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _drop_pretrained(value)


def _build_ours(model_cfg: ConfigDict) -> nn.Module:
    from mmdet_lite.registry import MODELS
    from mmdet_lite.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model_cfg = model_cfg.copy()
    _drop_pretrained(model_cfg)
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


def run_model(args: argparse.Namespace) -> None:
    h, w = args.shape
    if h % SIZE_DIVISOR or w % SIZE_DIVISOR or h <= 0 or w <= 0:
        raise ValueError(f'--shape: H and W must be positive multiples of {SIZE_DIVISOR} '
                         f'(the padding divisor), got {h} {w}')
    if args.threads < 1:
        raise ValueError(f'--threads must be >= 1, got {args.threads}')
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    _set_score_thr(cfg.model, args.score_thr)  # before torchvision's settings are read
    compare = args.compare_torchvision
    if compare == 'auto':
        compare = next((name for name, b in TORCHVISION_BASELINES.items()
                        if b.detector == cfg.model.type), 'none')
    baseline = TORCHVISION_BASELINES.get(compare)
    model = _build_ours(cfg.model)
    with_masks = 'mask_head' in cfg.model.get('roi_head', {})
    gt_train = synthetic_gt(TRAIN_BATCH, args.num_gt, (h, w), _num_classes(cfg.model))
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

    load_before = load_average()
    results, dets = [], {}
    for name, (infer, _, count) in steps.items():
        results.append(measure(infer, 'inference', name, args.repeat, args.warmup))
        dets[name] = count(results[-1].output)
    if baseline is not None:
        tv_transform = measure(tv_tf, 'transform', 'torchvision', args.repeat, args.warmup)
    for name, (_, train, _) in steps.items():
        results.append(measure(train, 'train_step', name, args.repeat, args.warmup))

    print('== mmdet_lite benchmark: model ==')
    print(f'config       : {args.config} ({cfg.model.type})')
    print(f'torchvision  : {compare}')
    print(f'weights      : {weights}')
    print(f'machine      : {machine_summary(args.threads)}')
    print(f'load average : {load_before} (start) / {load_average()} (end)')
    print(f'inputs       : inference 1 x 3x{h}x{w}; train step {TRAIN_BATCH} x 3x{h}x{w}, '
          f'{args.num_gt} GT boxes each{" with masks" if with_masks else ""}')
    print(f'repeat/warmup: {args.repeat} / {args.warmup}; score_thr {args.score_thr} (both)')
    print('params       : ' + ' | '.join(f'{k} {v}' for k, v in params.items()))
    print('detections   : ' + ' | '.join(f'{k} {v}' for k, v in dets.items()))
    print(format_results(results))
    if tv_transform is not None:
        print(f'torchvision transform (normalize+resize+pad, inside its inference time): '
              f'{tv_transform.median_ms:.1f} ms')
        print(_ratio_line(results, 'median_ms', 'wall'))
        print(_ratio_line(results, 'cpu_ms', 'CPU'))


# --------------------------------------------------------------------- data pipeline
def run_dataloader(args: argparse.Namespace) -> None:
    if args.num_batches < 1:
        raise ValueError(f'--num-batches must be >= 1, got {args.num_batches}')
    cfg = load_config(args.config, args.cfg_options)
    if 'train_dataloader' not in cfg:
        raise KeyError(f'{args.config}: the config has no train_dataloader')
    from mmengine.runner import Runner

    from mmdet_lite.utils import register_all_modules
    register_all_modules()
    loader_cfg = cfg.train_dataloader.copy()
    if args.num_workers is not None:
        loader_cfg.num_workers = args.num_workers
    if loader_cfg.get('num_workers', 0) == 0:
        loader_cfg.persistent_workers = False  # torch refuses persistent workers without any
    load_before = load_average()
    reset_peak_rss()
    start = time.perf_counter()
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # cycle epochs
    next(batches)  # worker start-up and the first batch: not counted
    first = time.perf_counter() - start
    images, start = 0, time.perf_counter()
    for batch in itertools.islice(batches, args.num_batches):
        images += len(batch['inputs'])
    elapsed = time.perf_counter() - start

    print('== mmdet_lite benchmark: dataloader ==')
    print(f'config       : {args.config}')
    print(f'dataset      : {type(loader.dataset).__name__}, {len(loader.dataset)} images; '
          f'batch_size {loader.batch_size or loader_cfg.get("batch_size")}, '
          f'num_workers {loader.num_workers}')
    print(f'machine      : {machine_summary()}')
    print(f'load average : {load_before} (start) / {load_average()} (end)')
    print(f'first batch  : {first:.2f} s (build + worker start-up, not counted)')
    print(f'timed        : {args.num_batches} batches, {images} images in {elapsed:.2f} s')
    print(f'images/s     : {images / elapsed:.1f}')
    print(f'peak_rss_mb  : {peak_rss_mb():.0f} (main process)')


# --------------------------------------------------------------------- single-stage detectors
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
    from mmdet_lite.analysis.stage_timing import format_stage_rows, single_stage_steps
    h, w = args.shape
    if h % SIZE_DIVISOR or w % SIZE_DIVISOR or h <= 0 or w <= 0:
        raise ValueError(f'--shape: H and W must be positive multiples of {SIZE_DIVISOR}, '
                         f'got {h} {w}')
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    if args.score_thr is not None:
        _set_score_thr(cfg.model, args.score_thr)
    model = _build_ours(cfg.model)
    if args.checkpoint:
        _load_weights(model, args.checkpoint)
    if args.image:
        inputs, samples = _image_inputs(model, args.image, (h, w))
    else:
        inputs, samples = _our_inputs(synthetic_gt(1, 1, (h, w), 1), (h, w), with_masks=False)
    if args.fuse_conv_bn:
        from mmdet_lite.analysis.stage_timing import fuse_conv_bn_untied
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


def run_test_loop(args: argparse.Namespace) -> None:
    import tempfile

    from mmdet_lite.analysis.stage_timing import time_test_loop
    from mmdet_lite.apis.cli import build_runner
    from mmdet_lite.utils import register_all_modules
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    register_all_modules(init_default_scope=False)
    with tempfile.TemporaryDirectory() as work_dir:
        cfg.work_dir = work_dir
        cfg.load_from = args.checkpoint
        load_before = load_average()
        runner = build_runner(cfg)
        metrics, timer = time_test_loop(runner)
    loop_s = timer.last_batch_end - timer.start
    whole_s = timer.end - timer.start
    print('== mmdet_lite benchmark: test loop ==')
    print(f'config       : {args.config} ({cfg.model.type})')
    print(f'weights      : {args.checkpoint or "random init"}')
    print(f'machine      : {machine_summary(args.threads)}')
    print(f'load average : {load_before} (start) / {load_average()} (end)')
    print(f'dataloader   : batch_size {cfg.test_dataloader.get("batch_size")}, '
          f'num_workers {cfg.test_dataloader.get("num_workers")}')
    print(f'images       : {timer.num_images}')
    print(f'loop         : {loop_s:.2f} s, {timer.num_images / loop_s:.1f} images/s '
          '(data loading + model + post-processing)')
    print(f'with metrics : {whole_s:.2f} s, {timer.num_images / whole_s:.1f} images/s')
    print('metrics      : ' + ', '.join(f'{k} {v:.3f}' for k, v in metrics.items()
                                        if isinstance(v, float)))


def run_imports(args: argparse.Namespace) -> None:
    if args.repeat < 1:
        raise ValueError(f'--repeat must be >= 1, got {args.repeat}')
    print('== mmdet_lite benchmark: import time ==')
    print(f'machine      : {machine_summary()}')
    print(f'baseline     : import {", ".join(IMPORT_BASELINE)} (not counted)')
    print(f'load average : {load_average()}')
    for package in args.packages:
        median, heaviest = measure_import(package, repeat=args.repeat)
        top = ', '.join(f'{name} {own * 1e3:.0f} ms' for name, own in heaviest[:5])
        print(f'{package:<28}: {median:.3f} s (median of {args.repeat}); heaviest: {top}')


# --------------------------------------------------------------------- deformable attention
def run_deform_attn(args: argparse.Namespace) -> None:
    from mmdet_lite.models.layers.transformer import MultiScaleDeformableAttention
    h, w = args.shape
    if h <= 0 or w <= 0 or args.queries < 1 or min(args.batch) < 1:
        raise ValueError(f'--shape, --queries and --batch must be positive, got {h} {w}, '
                         f'{args.queries}, {args.batch}')
    if args.threads < 1:
        raise ValueError(f'--threads must be >= 1, got {args.threads}')
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = level_shapes((h, w))
    torch.manual_seed(0)
    # DINO's attention: 256 channels, 8 heads, 4 levels, 4 points, dropout 0 in its config.
    attn = MultiScaleDeformableAttention(embed_dims=256, num_heads=8, num_levels=len(shapes),
                                         num_points=4, dropout=0., batch_first=True).to(device)
    spatial_shapes = torch.tensor(shapes, device=device)
    load_before = load_average()
    rows = []
    for batch in args.batch:
        for case, (query, value, ref) in deform_attn_inputs(shapes, batch, args.queries,
                                                            device).items():
            mask = torch.zeros(value.shape[:2], dtype=torch.bool, device=device)
            self_attn = query is value

            def forward(q, v):
                return attn(q, value=None if self_attn else v, reference_points=ref,
                            spatial_shapes=spatial_shapes, key_padding_mask=mask)

            def infer():
                attn.eval()
                with torch.no_grad():
                    forward(query, value)

            def train():
                attn.train()
                attn.zero_grad(set_to_none=True)
                # Query and value come from earlier layers: they need gradients too.
                q = query.detach().requires_grad_()
                v = q if self_attn else value.detach().requires_grad_()
                forward(q, v).sum().backward()

            for phase, fn in (('forward', infer), ('fwd+bwd', train)):
                trim_heap()  # so that the next phase's peak is not hidden in freed memory
                result = measure(fn, phase, case, args.repeat, args.warmup, device)
                rows.append((batch, result))

    print('== mmdet_lite benchmark: deform_attn ==')
    print(f'module       : MultiScaleDeformableAttention(256, 8 heads, {len(shapes)} levels, '
          '4 points), plain torch (F.grid_sample)')
    print(f'machine      : {machine_summary(args.threads)}; device {device}')
    print(f'load average : {load_before} (start) / {load_average()} (end)')
    print(f'levels       : {" ".join(f"{lh}x{lw}" for lh, lw in shapes)} from a {h}x{w} input '
          f'({sum(a * b for a, b in shapes)} keys); decoder queries {args.queries}')
    print(f'repeat/warmup: {args.repeat} / {args.warmup}')
    print(format_deform_attn_rows(rows, device))


# --------------------------------------------------------------------- command line
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='mode', required=True)

    def add_common(p):
        p.add_argument('config', help='config file')
        p.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                       help='override config entries')

    data = sub.add_parser('dataloader', help='images/s of cfg.train_dataloader')
    add_common(data)
    data.add_argument('--num-batches', type=int, default=50, help='timed batches')
    data.add_argument('--num-workers', type=int, default=None,
                      help='override train_dataloader.num_workers')
    data.set_defaults(func=run_dataloader)

    model = sub.add_parser('model', help='inference and train-step latency vs torchvision')
    add_common(model)
    model.add_argument('--shape', type=int, nargs=2, default=[640, 640], metavar=('H', 'W'))
    model.add_argument('--repeat', type=int, default=5, help='timed repeats (median shown)')
    model.add_argument('--warmup', type=int, default=1, help='untimed repeats first')
    model.add_argument('--compare-torchvision', default='auto',
                       choices=['auto', 'none', *TORCHVISION_BASELINES],
                       help='torchvision counterpart; auto picks it from the model type')
    model.add_argument('--threads', type=int, default=torch.get_num_threads(),
                       help='torch.set_num_threads for both models')
    model.add_argument('--num-gt', type=int, default=5, help='GT boxes per training image')
    model.add_argument('--score-thr', type=float, default=0.0,
                       help='test score threshold of both models; the default 0 makes both '
                       'keep max_per_img detections (random weights score too low or '
                       'unevenly for the config value)')
    model.set_defaults(func=run_model)

    stages = sub.add_parser('stages', help="single-stage detector's inference by stage")
    add_common(stages)
    stages.add_argument('--checkpoint', default=None, help='trained weights (default random)')
    stages.add_argument('--shape', type=int, nargs=2, default=[640, 640], metavar=('H', 'W'))
    stages.add_argument('--repeat', type=int, default=10, help='timed repeats (median shown)')
    stages.add_argument('--warmup', type=int, default=2, help='untimed repeats first')
    stages.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='torch.set_num_threads')
    stages.add_argument('--score-thr', type=float, default=None,
                        help="override the test score threshold (default: the config's)")
    stages.add_argument('--image', default=None,
                        help='time on this image (resized and padded to --shape) instead of '
                        'random pixels: post-processing depends on what the model finds')
    stages.add_argument('--fuse-conv-bn', action='store_true',
                        help='fold each BatchNorm into its conv first (inference only)')
    stages.add_argument('--channels-last', action='store_true',
                        help='run the model and input in channels_last memory format')
    stages.set_defaults(func=run_stages)

    loop = sub.add_parser('test_loop', help="images/s of the config's test loop")
    add_common(loop)
    loop.add_argument('--checkpoint', default=None, help='trained weights (default random)')
    loop.add_argument('--threads', type=int, default=torch.get_num_threads(),
                      help='torch.set_num_threads')
    loop.set_defaults(func=run_test_loop)

    imports = sub.add_parser('imports', help='import time beyond torch/mmengine/mmcv.cnn')
    imports.add_argument('packages', nargs='*', default=['mmdet_lite.models',
                                                         'mmdet_lite.models.backbones'])
    imports.add_argument('--repeat', type=int, default=5, help='fresh interpreters (median)')
    imports.set_defaults(func=run_imports)

    deform = sub.add_parser('deform_attn',
                            help='MultiScaleDeformableAttention at DINO-4scale sizes')
    deform.add_argument('--batch', type=int, nargs='+', default=[1, 2], help='batch sizes')
    deform.add_argument('--shape', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'),
                        help='input image size; levels of stride 8/16/32/64')
    deform.add_argument('--queries', type=int, default=900, help="decoder's queries")
    deform.add_argument('--repeat', type=int, default=3, help='timed repeats (median shown)')
    deform.add_argument('--warmup', type=int, default=1, help='untimed repeats first')
    deform.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='torch.set_num_threads')
    deform.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    deform.set_defaults(func=run_deform_attn)
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    args.func(args)


if __name__ == '__main__':
    main()
