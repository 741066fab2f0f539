"""Export a detector to ``torch.export`` or ONNX, without mmdeploy.

Usage::

    python tools/deployment/export.py CONFIG CHECKPOINT --format {torch_export,onnx}
        --shape H W [--dynamic-batch] [--with-postprocess] [--out FILE] [--opset N]
        [--onnx-exporter {dynamo,torchscript}] [--verify] [--cfg-options ...]

The exported graph takes raw pixels [B, 3, H, W] (float, channels as loaded: BGR for
mmcv/cv2), does the data preprocessor's normalization and runs the network up to the heads'
raw outputs; decoding, NMS and mask pasting stay in Python
(``mmdet_lite.deployment``, used by ``tools/deployment/onnx_infer.py``). Two-stage detectors
give one more graph per RoI branch. ``--with-postprocess`` (ONNX, one-stage dense heads)
puts decoding and NMS in the graph: outputs ``dets`` [B, K, 5] and ``labels`` [B, K].

Next to ``--out`` goes ``<stem>.json``, the manifest onnx_infer.py reads. See
docs/deployment.md for each model's status.
"""
import argparse
import os.path as osp
import sys

from mmdet_lite.apis.cli import exit_on_user_error, load_config

FORMATS = ('torch_export', 'onnx')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export a detector to torch.export / ONNX')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random weights")
    parser.add_argument('--format', required=True, choices=FORMATS, help='what to write')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='fixed input size (multiples of the pad_size_divisor)')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='let the batch size vary (else it is fixed to 1)')
    parser.add_argument('--with-postprocess', action='store_true',
                        help='ONNX, one-stage dense heads: decode + NMS inside the graph')
    parser.add_argument('--out', help='output file (default work_dirs/export/<config>.onnx '
                        'or .pt2)')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset (default 18)')
    parser.add_argument('--onnx-exporter', default='dynamo', choices=('dynamo', 'torchscript'),
                        help="torch.onnx.export path: 'dynamo' (torch's default) or the "
                        "older 'torchscript' tracer (much faster to export)")
    parser.add_argument('--verify', action='store_true',
                        help='run the exported graphs on a random image and compare with '
                        'eager PyTorch')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries')
    args = parser.parse_args(argv)
    if min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {args.shape}')
    if args.with_postprocess and args.format != 'onnx':
        parser.error('--with-postprocess needs --format onnx')
    if args.opset < 16 and args.format == 'onnx':
        parser.error(f'--opset must be >= 16 (RoiAlign half-pixel, GridSample), got '
                     f'{args.opset}')
    return args


def default_out(config: str, fmt: str) -> str:
    stem = osp.splitext(osp.basename(config))[0]
    return osp.join('work_dirs', 'export', stem + ('.pt2' if fmt == 'torch_export' else '.onnx'))


def verify(adapter, manifest: dict) -> str:
    """Compare the exported graphs with eager PyTorch on the trace input; a report line.

    Raw outputs: the max |diff|. A ``--with-postprocess`` graph: how many of its detections
    have an eager one with the same label and a box within 1e-3 (with random weights the
    scores tie, and tied boxes may be kept in another order or swapped).
    """
    from mmdet_lite.deployment import ModuleRunner, load_runners
    runners = load_runners(manifest)
    if manifest['with_postprocess']:
        graph = adapter.postprocess_graph()
        (exp_dets, exp_labels), (act_dets, act_labels) = (
            run(*graph.example_inputs) for run in (ModuleRunner(graph.module),
                                                  runners['model']))
        matched = total = 0
        for exp_d, exp_l, act_d, act_l in zip(exp_dets, exp_labels, act_dets, act_labels):
            exp_d, act_d = exp_d[exp_l >= 0], act_d[act_l >= 0]
            exp_l, act_l = exp_l[exp_l >= 0], act_l[act_l >= 0]
            total += len(exp_l)
            for det, label in zip(act_d, act_l):
                close = ((exp_d[:, :4] - det[:4]).abs().amax(1) <= 1e-3) & (exp_l == label)
                matched += int(close.any())
        return (f'{matched} of the exported detections match one of eager\'s {total} '
                '(same label, box within 1e-3)')
    worst = 0.0
    for graph in adapter.graphs():
        expected = ModuleRunner(graph.module)(*graph.example_inputs)
        actual = runners[graph.name](*graph.example_inputs)
        for name, exp, act in zip(graph.output_names, expected, actual):
            if exp.shape != act.shape:
                raise RuntimeError(f'{graph.name}.{name}: exported shape {tuple(act.shape)} '
                                   f'!= eager {tuple(exp.shape)}')
            if exp.numel():
                worst = max(worst, (exp.float() - act.float()).abs().max().item())
    return f'max |exported - eager| over the raw outputs = {worst:.3g}'


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    cfg = load_config(args.config, args.cfg_options)

    from mmdet_lite.apis import init_detector
    from mmdet_lite.deployment import export_adapter, get_export_adapter

    if checkpoint is None:
        print('warning: no checkpoint, the exported model has random weights',
              file=sys.stderr)
    model = init_detector(cfg, checkpoint, device='cpu')
    adapter = get_export_adapter(model, args.shape)
    out = args.out or default_out(args.config, args.format)
    manifest = export_adapter(adapter, out, args.format, dynamic_batch=args.dynamic_batch,
                              with_postprocess=args.with_postprocess, opset=args.opset,
                              onnx_exporter=args.onnx_exporter,
                              config=osp.abspath(args.config))
    manifest['root'] = osp.dirname(osp.abspath(out))
    for name, graph in manifest['graphs'].items():
        print(f'{name}: {osp.join(osp.dirname(out), graph["file"])}\n'
              f'  inputs  {", ".join(graph["inputs"])}\n'
              f'  outputs {", ".join(graph["outputs"])}')
    print(f'manifest: {osp.splitext(out)[0]}.json')
    if args.verify:
        print(f'verify: {verify(adapter, manifest)}')


if __name__ == '__main__':
    main()
