"""Print every module's output shape for one input, as an indented tree.

Usage::

    python tools/analysis_tools/shape_trace.py CONFIG --shape H [W] [--batch B]
        [--depth D] [--backbone-only] [--show-types] [--cfg-options KEY=VALUE ...]

The model (randomly initialised; weights do not change shapes) runs in ``'tensor'`` mode on
a random batch with fake data samples (``img_shape`` = the input shape). Lines read
``backbone.layer4 -> [2, 2048, 24, 24]``, indented by nesting depth, in call order; a
module called several times (a head on each FPN level) has a line per call.
"""
import argparse


from mmdet_lite.apis.cli import exit_on_user_error, load_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Trace a model's module output shapes")
    parser.add_argument('config', help='model config file')
    parser.add_argument('--shape', type=int, nargs='+', default=[800, 1333],
                        help='input image size: H W, or one value for a square')
    parser.add_argument('--batch', type=int, default=2, help='batch size')
    parser.add_argument('--depth', type=int, default=None,
                        help='show modules nested at most this deep (backbone.layer4 is 2)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='run only the backbone (faster for big inputs)')
    parser.add_argument('--show-types', action='store_true', help='print module classes')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries')
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H W or a single size, got {args.shape}')
    return args


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    from mmdet_lite.apis import init_detector
    from mmdet_lite.analysis import dummy_det_batch, format_shape_tree, trace_shapes

    height, width = args.shape * 2 if len(args.shape) == 1 else args.shape
    cfg = load_config(args.config, args.cfg_options)
    model = init_detector(cfg, device='cpu')
    inputs, data_samples = dummy_det_batch(model, args.batch, height, width)
    if args.backbone_only:
        def run():
            return model.backbone(inputs)
    else:
        def run():
            return model(inputs, data_samples, mode='tensor')
    records = trace_shapes(model, run, max_depth=args.depth)
    print(f'{type(model).__name__}, input {list(inputs.shape)} '
          f'(images {height}x{width}, padded by the data preprocessor)')
    print(format_shape_tree(records, show_types=args.show_types))


if __name__ == '__main__':
    main()
