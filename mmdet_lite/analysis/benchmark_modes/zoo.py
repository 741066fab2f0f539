"""``benchmark.py zoo``: parameters and inference latency of many configs, one row each.

Each config's model is built with random weights (pretrained ``init_cfg``s dropped) and its
``predict`` is timed on one random image of ``--shape``, normalised and padded as the data
preprocessor would leave it (the inputs of the ``model`` mode), under
``torch.inference_mode``. A detector without an RPN (``FastRCNN``) reads its proposals from
the data samples: it gets :data:`NUM_PROPOSALS` random boxes. A config that fails to load,
build or run gives a row with the error instead of stopping the others. ``--markdown``
prints the table for docs/model_zoo.md.
"""
import argparse
import gc
import os
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from mmdet_lite.apis.cli import load_config, one_line_message

from ..benchmark import (PhaseResult, load_average, machine_summary, measure, synthetic_gt,
                         trim_heap)
from .random_detector import (build_random_detector, check_padded_shape, count_params,
                              detector_inputs, predict_step)

# As many proposals as the RPN of mmdetection's two-stage COCO configs keeps at test time
# (test_cfg.rpn.max_per_img), for detectors that take them from the data instead.
NUM_PROPOSALS = 1000
BASE_DIR = '_base_'  # config fragments, not models


@dataclass
class ZooRow:
    """The result of one config.

    Args:
        config (str): The config file, as given or found in a given directory.
        num_params (int, optional): All parameters of the built model (None if the build
            failed).
        inference (PhaseResult, optional): The timed ``predict`` calls (None on failure).
        status (str): ``'ok'``, or ``'TypeName: message'`` of the error that stopped it.
    """
    config: str
    num_params: Optional[int] = None
    inference: Optional[PhaseResult] = None
    status: str = 'ok'


def expand_configs(paths: Sequence[str]) -> List[str]:
    """Config files of the command line: a directory gives its ``*.py`` files (sorted,
    subdirectories included, ``_base_`` skipped); anything else is kept as it is, so that a
    missing file becomes a failed row."""
    configs = []
    for path in paths:
        if not osp.isdir(path):
            configs.append(path)
            continue
        found = []
        for folder, subdirs, files in os.walk(path):
            subdirs[:] = [d for d in subdirs if d != BASE_DIR]
            found += [osp.join(folder, name) for name in files if name.endswith('.py')]
        if not found:
            raise FileNotFoundError(f'no config files (*.py outside {BASE_DIR}) under {path}')
        configs += sorted(found)
    return configs


def needs_proposals(model: nn.Module) -> bool:
    """Whether ``predict`` reads ``proposals`` from the data samples: a two-stage detector
    without an RPN (``FastRCNN``)."""
    return hasattr(model, 'roi_head') and not getattr(model, 'with_rpn', True)


def add_random_proposals(data_samples: list, img_shape: Tuple[int, int],
                         num: int = NUM_PROPOSALS) -> None:
    """Give each sample ``proposals``: ``num`` random boxes (1/8 to 1/2 of the image side)
    with score 1, as ``LoadProposals`` + ``PackDetInputs`` would (``bboxes``, ``scores``)."""
    from mmengine.structures import InstanceData
    for i, sample in enumerate(data_samples):
        bboxes, _ = synthetic_gt(1, num, img_shape, num_classes=1, seed=i)[0]  # [num, 4]
        sample.proposals = InstanceData(bboxes=bboxes, scores=torch.ones(num))


def benchmark_config(config: str, cfg_options: Optional[List[str]],
                     img_shape: Tuple[int, int], repeat: int, warmup: int) -> ZooRow:
    """Build one config's model and time its ``predict`` on one image.

    Args:
        config (str): Config file.
        cfg_options (list[str], optional): ``--cfg-options`` applied to it.
        img_shape (tuple[int, int]): (H, W) of the padded input.
        repeat (int): Timed calls.
        warmup (int): Untimed calls first.

    Returns:
        ZooRow: Its parameters and timing, or the status of the error that stopped it
        (any ``Exception``; Ctrl-C still stops the run).
    """
    row = ZooRow(config)
    try:
        cfg = load_config(config, cfg_options)
        model = build_random_detector(cfg.model)
        row.num_params = count_params(model)[0]
        inputs, samples = detector_inputs(synthetic_gt(1, 1, img_shape, 1), img_shape,
                                          with_masks=False)
        if needs_proposals(model):
            add_random_proposals(samples, img_shape)
        infer = predict_step(model, inputs, samples, torch.inference_mode)
        row.inference = measure(infer, 'inference', config, repeat, warmup)
        row.inference.output = None  # the predictions are not reported: free them
    except Exception as err:  # one broken config must not stop the others
        row.status = f'{type(err).__name__}: {one_line_message(err)}'
    return row


def format_zoo_rows(rows: Sequence[ZooRow]) -> str:
    """A fixed-width table: config, params (M), median and min inference ms, status."""
    width = max([len('config')] + [len(r.config) for r in rows]) + 2
    lines = [f'{"config":<{width}}{"params_m":>10}{"median_ms":>11}{"min_ms":>10}  status']
    for r in rows:
        params = '-' if r.num_params is None else f'{r.num_params / 1e6:.2f}'
        median, low = (('-', '-') if r.inference is None else
                       (f'{r.inference.median_ms:.1f}', f'{r.inference.min_ms:.1f}'))
        lines.append(f'{r.config:<{width}}{params:>10}{median:>11}{low:>10}  {r.status}')
    return '\n'.join(lines)


def format_zoo_markdown(rows: Sequence[ZooRow], repeat: int) -> str:
    """A markdown table for docs/model_zoo.md; a failed config's time cell is its error."""
    lines = [f'| config | params (M) | inference ms (median of {repeat}) |', '|---|---|---|']
    for r in rows:
        params = '-' if r.num_params is None else f'{r.num_params / 1e6:.2f}'
        if r.inference is None:
            time_ms = 'failed: ' + r.status.replace('|', '\\|')  # a pipe would end the cell
        else:
            time_ms = f'{r.inference.median_ms:.1f}'
        lines.append(f'| `{r.config}` | {params} | {time_ms} |')
    return '\n'.join(lines)


def run_zoo(args: argparse.Namespace) -> None:
    """Benchmark every config and print the table (flags: ``benchmark.py zoo --help``)."""
    h, w = check_padded_shape(args.shape)
    if args.threads < 1:
        raise ValueError(f'--threads must be >= 1, got {args.threads}')
    # Checked here: inside benchmark_config they would fail every row instead of the run.
    if args.repeat < 1 or args.warmup < 0:
        raise ValueError(f'--repeat must be >= 1 and --warmup >= 0, got {args.repeat} and '
                         f'{args.warmup}')
    torch.set_num_threads(args.threads)
    configs = expand_configs(args.configs)
    load_before = load_average()
    rows = []
    for config in configs:
        rows.append(benchmark_config(config, args.cfg_options, (h, w), args.repeat,
                                     args.warmup))
        gc.collect()  # the last model goes before the next is built
        trim_heap()

    print('== mmdet_lite benchmark: zoo ==')
    print(f'machine      : {machine_summary(args.threads)}')
    print(f'load average : {load_before} (start) / {load_average()} (end)')
    print(f'input        : 1 x 3x{h}x{w} (random pixels, normalised and padded); predict '
          'under torch.inference_mode, random weights')
    print(f'repeat/warmup: {args.repeat} / {args.warmup}')
    failed = sum(r.status != 'ok' for r in rows)
    print(f'status       : {len(rows) - failed} ok, {failed} failed')
    print(format_zoo_markdown(rows, args.repeat) if args.markdown else format_zoo_rows(rows))
