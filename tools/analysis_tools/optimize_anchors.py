"""Fit the YOLO anchors of a config to its training set.

Usage::

    python tools/analysis_tools/optimize_anchors.py CONFIG [--algorithm k-means]
        [--input-shape 608 608] [--iters 1000] [--device cuda:0] [--output-dir DIR]
        [--cfg-options KEY=VALUE ...]

The config's ``model.bbox_head.anchor_generator`` must be a ``YOLOAnchorGenerator``; as
many anchors are fitted as its ``base_sizes`` hold (9 for YOLOv3), to the ground-truth boxes
of ``train_dataloader.dataset`` (inside any dataset wrappers) scaled to ``--input-shape``
(width height) with a keep-ratio resize. The anchors, smallest first, are printed and, with
``--output-dir``, saved as ``anchor_optimize_result.json`` (a list of [w, h]); paste them,
three per level, into ``base_sizes`` (the last three on the stride-32 level, which comes
first there).
"""
import argparse


from mmdet_lite.apis.cli import exit_on_user_error, load_config

EPILOG = """example:
  python tools/analysis_tools/optimize_anchors.py \\
      configs/yolo/yolov3_d53_8xb8-320-273e_coco.py --algorithm k-means \\
      --input-shape 320 320 --device cpu --output-dir work_dirs/anchors
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Optimize anchor parameters.', epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='Train config file path.')
    parser.add_argument('--device', default='cuda:0',
                        help='Device used for calculating (the CPU when CUDA is missing).')
    parser.add_argument('--input-shape', type=int, nargs='+', default=[608, 608],
                        help='input image size: width height')
    parser.add_argument('--algorithm', default='differential_evolution',
                        choices=['k-means', 'differential_evolution'],
                        help='Algorithm used for anchor optimizing.')
    parser.add_argument('--iters', default=1000, type=int,
                        help='Maximum iterations for optimizer.')
    parser.add_argument('--output-dir', default=None, type=str,
                        help='Path to save anchor optimize result.')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries (e.g. the dataset)')
    args = parser.parse_args(argv)
    if len(args.input_shape) != 2:
        parser.error(f'--input-shape needs 2 numbers (width height), got {args.input_shape}')
    if args.iters < 1:
        parser.error(f'--iters must be >= 1, got {args.iters}')
    return args


def num_yolo_anchors(cfg) -> int:
    """The number of anchors of the config's YOLOAnchorGenerator (all levels)."""
    generator = cfg.get('model', {}).get('bbox_head', {}).get('anchor_generator')
    anchor_type = generator.get('type') if generator else None
    if anchor_type != 'YOLOAnchorGenerator':
        raise ValueError('Only support optimize YOLOAnchor, but the config\'s '
                         f'model.bbox_head.anchor_generator is {anchor_type}')
    return sum(len(sizes) for sizes in generator['base_sizes'])


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    num_anchors = num_yolo_anchors(cfg)

    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    from mmdet_lite.analysis.anchor_optimizer import (YOLODEAnchorOptimizer,
                                                      YOLOKMeansAnchorOptimizer)
    from mmdet_lite.registry import DATASETS
    from mmdet_lite.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope') or 'mmdet_lite')
    dataset_cfg = cfg.get('train_dataloader', {})
    if 'dataset' not in dataset_cfg:
        raise KeyError(f'the config has no train_dataloader.dataset: {args.config}')
    while 'dataset' in dataset_cfg:  # the dataset inside the wrappers
        dataset_cfg = dataset_cfg['dataset']
    dataset = DATASETS.build(dataset_cfg)

    optimizer_type = (YOLOKMeansAnchorOptimizer if args.algorithm == 'k-means' else
                      YOLODEAnchorOptimizer)
    optimizer = optimizer_type(
        dataset=dataset, input_shape=args.input_shape, device=args.device,
        num_anchors=num_anchors, iters=args.iters, logger=MMLogger.get_current_instance(),
        out_dir=args.output_dir)
    optimizer.optimize()


if __name__ == '__main__':
    main()
