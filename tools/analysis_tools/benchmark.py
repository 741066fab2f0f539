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
    python tools/analysis_tools/benchmark.py zoo CONFIG [CONFIG ...] [--shape H W]
        [--repeat R] [--warmup W] [--threads T] [--cfg-options KEY=VALUE ...] [--markdown]

This file is the command line; each mode is a module of ``mmdet_lite/analysis/benchmark_modes``
whose docstring says what it measures:

    dataloader, test_loop  loops.py        images/s of the training pipeline, of the test loop
    model                  model.py        inference and a training step, ours vs torchvision
    stages                 stages.py       a single-stage detector's inference by stage
    imports                import_time.py  what ``import PACKAGE`` costs beyond its stack
    deform_attn            deform_attn.py  MultiScaleDeformableAttention at DINO-4scale sizes
    zoo                    zoo.py          parameters and inference time of many configs

The timing, memory and synthetic-input helpers they share are in
``mmdet_lite/analysis/benchmark.py`` and ``benchmark_modes/random_detector.py``; what is
measured and the results are in docs/benchmark.md.
"""
import argparse

import torch

from mmdet_lite.analysis.benchmark_modes.deform_attn import run_deform_attn
from mmdet_lite.analysis.benchmark_modes.import_time import run_imports
from mmdet_lite.analysis.benchmark_modes.loops import run_dataloader, run_test_loop
from mmdet_lite.analysis.benchmark_modes.model import run_model
from mmdet_lite.analysis.benchmark_modes.stages import run_stages
from mmdet_lite.analysis.benchmark_modes.zoo import run_zoo
from mmdet_lite.analysis.torchvision_baselines import TORCHVISION_BASELINES
from mmdet_lite.apis.cli import exit_on_user_error


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
    model.add_argument('--fast-path', action='store_true',
                       help='also time inference by fast-path step: serial torchvision ops, '
                       '+ fuse_bn, + channels_last, + inference_mode; and the train step '
                       'in channels-last (--channels-last of tools/train.py)')
    model.add_argument('--compile', action='store_true',
                       help='with --fast-path: one more step, torch.compile of backbone, '
                       'neck and dense heads')
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

    zoo = sub.add_parser('zoo', help='parameters and inference time of many configs')
    zoo.add_argument('configs', nargs='+', metavar='CONFIG',
                     help='config files; a directory gives its *.py files (not _base_)')
    zoo.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                     help='override config entries (of every config)')
    zoo.add_argument('--shape', type=int, nargs=2, default=[640, 640], metavar=('H', 'W'))
    zoo.add_argument('--repeat', type=int, default=5, help='timed repeats (median shown)')
    zoo.add_argument('--warmup', type=int, default=1, help='untimed repeats first')
    zoo.add_argument('--threads', type=int, default=torch.get_num_threads(),
                     help='torch.set_num_threads')
    zoo.add_argument('--markdown', action='store_true',
                     help='print the table in markdown (for docs/model_zoo.md)')
    zoo.set_defaults(func=run_zoo)
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    args.func(args)


if __name__ == '__main__':
    main()
