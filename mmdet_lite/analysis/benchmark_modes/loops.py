"""``benchmark.py dataloader`` and ``benchmark.py test_loop``: images/s of a whole loop.

``dataloader`` iterates ``cfg.train_dataloader`` (the training pipeline, built with
mmengine's Runner) and counts images per second after the first batch, which pays for the
build and the workers' start-up. ``test_loop`` runs the config's test loop as
``tools/test.py`` does (dataloader, model, evaluator) and reports images/s of the loop
without and with the evaluation.
"""
import argparse
import itertools
import tempfile
import time

import torch

from mmdet_lite.apis.cli import build_runner, load_config

from ..benchmark import load_average, machine_summary, peak_rss_mb, reset_peak_rss
from ..stage_timing import time_test_loop


def run_dataloader(args: argparse.Namespace) -> None:
    """Time the training dataloader and print the report (``benchmark.py dataloader``)."""
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


def run_test_loop(args: argparse.Namespace) -> None:
    """Run the test loop and print the report (``benchmark.py test_loop``)."""
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
