"""Fold a detector's BatchNorm layers into its convolutions and save the fused weights.

The model is built from CONFIG with CHECKPOINT's weights (as ``init_detector`` does), put
in eval mode, and every BatchNorm that directly follows a plain conv is folded into it by
:func:`mmdet_lite.models.utils.fuse_conv_bn` (see its docstring for the patterns). OUT gets
``meta`` (``dataset_meta`` as ``init_detector`` found it, and ``fused_conv_bn=True``) and
the fused ``state_dict``: the folded BNs' keys are gone and their convs have a ``bias``.
It computes the same outputs in eval mode with fewer layers. To load it, fuse the freshly
built model first::

    model = init_detector(config)           # eval mode, random weights
    fuse_conv_bn(model)                     # same layout as the saved fused model
    model.load_state_dict(load_local_checkpoint(out)['state_dict'])

The checkpoint is read with ``torch.load(weights_only=True)`` and mmdet_lite's allow-list;
``--trust-checkpoint FILE`` allows full unpickling (which can run code) of a file you trust.
"""
import argparse
import os
import os.path as osp

from mmdet_lite.apis.cli import exit_on_user_error

EXAMPLE = """example:
  python tools/model_converters/fuse_conv_bn.py \\
      configs/shapes/faster-rcnn_r18_fpn_shapes.py \\
      work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth faster-rcnn_r18_fpn_fused.pth
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Fuse Conv and BN layers in a model', epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file path')
    parser.add_argument('out', help='output path of the fused checkpoint')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling (can run code) of this checkpoint file, '
                        'one you trust that holds objects beyond the weights-only allow-list')
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {args.checkpoint}')

    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    from mmdet_lite.apis import init_detector
    from mmdet_lite.engine.checkpoint import allow_unsafe_checkpoint
    from mmdet_lite.models.utils import fuse_conv_bn

    with allow_unsafe_checkpoint(*args.trust_checkpoint):
        model = init_detector(args.config, args.checkpoint)  # in eval mode
    num_bn = sum(isinstance(m, _BatchNorm) for m in model.modules())
    fuse_conv_bn(model)
    left = sum(isinstance(m, _BatchNorm) for m in model.modules())
    print(f'folded {num_bn - left} of {num_bn} BatchNorm layers into their convs'
          + (f' ({left} left: not directly after a plain conv)' if left else ''))

    # class names as init_detector found them (checkpoint meta, else the config)
    meta = dict(dataset_meta=model.dataset_meta, fused_conv_bn=True)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict=model.state_dict()), args.out)
    print(f'fused checkpoint saved to {args.out}')


if __name__ == '__main__':
    main()
