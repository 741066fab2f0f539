"""Count a detector's FLOPs and parameters for one input size.

Usage::

    python tools/analysis_tools/get_flops.py CONFIG --shape H [W] [--cfg-options ...]

Counted by ``mmengine.analysis.get_model_complexity_info`` on the model's ``'tensor'`` mode
(backbone, neck and heads without post-processing) for one random image of H x W pixels,
padded as the data preprocessor pads it. As in mmdetection, one fused multiply-add counts
as one FLOP, and operators mmengine has no counter for (NMS, RoIAlign ...) count zero.
"""
import argparse
import warnings


from mmdet_lite.apis.cli import exit_on_user_error, load_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Count FLOPs and parameters of a detector')
    parser.add_argument('config', help='model config file')
    parser.add_argument('--shape', type=int, nargs='+', default=[1280, 800],
                        help='input image size: H W, or one value for a square')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries')
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H W or a single size, got {args.shape}')
    return args


def model_complexity(model, height: int, width: int) -> dict:
    """FLOPs/params of ``model``'s tensor mode on one random ``height`` x ``width`` image.

    Args:
        model (nn.Module): A detector in eval mode.
        height (int): Image height.
        width (int): Image width.

    Returns:
        dict: ``get_model_complexity_info``'s result (``flops``, ``params``, ``flops_str``,
        ``params_str``, ``out_table`` ...) plus ``input_shape`` (the padded [1, 3, H', W']).
    """
    from mmengine.analysis import get_model_complexity_info

    from mmdet_lite.analysis import dummy_det_batch

    inputs, data_samples = dummy_det_batch(model, 1, height, width)  # [1, 3, H', W']
    forward = model.forward
    # The analyzer calls model(inputs): bind the rest of the call in an instance attribute,
    # so the model itself (and its module names in the table) is what gets traced.
    model.forward = lambda x: forward(x, data_samples, mode='tensor')
    try:
        with warnings.catch_warnings():
            # mmengine's analyzer scripts helpers with torch.jit; nothing the user can change
            warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated')
            info = get_model_complexity_info(model, inputs=(inputs, ), show_arch=False)
    finally:
        del model.forward
    info['input_shape'] = list(inputs.shape)
    return info


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    from mmdet_lite.apis import init_detector

    height, width = args.shape * 2 if len(args.shape) == 1 else args.shape
    model = init_detector(load_config(args.config, args.cfg_options), device='cpu')
    info = model_complexity(model, height, width)
    print(info['out_table'])
    line = '=' * 40
    print(f'{line}\nModel: {type(model).__name__}\nInput shape: {info["input_shape"]} '
          f'(image {height}x{width})\nFlops: {info["flops_str"]}\n'
          f'Params: {info["params_str"]}\n{line}')
    print('FLOPs count one multiply-add each; NMS, RoIAlign and other operators without '
          'a counter count zero.')


if __name__ == '__main__':
    main()
