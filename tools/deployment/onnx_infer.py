"""Detect objects in an image with an exported model (onnxruntime) and draw them.

Usage::

    python tools/deployment/onnx_infer.py MODEL IMAGE [--config CONFIG]
        [--checkpoint CKPT] [--out-file vis.jpg] [--pred-score-thr 0.3] [--threads N]

``MODEL`` is what tools/deployment/export.py wrote (``.onnx``; a ``.pt2`` runs through
``torch.export.load``), found with its ``.json`` manifest. The image is letterboxed into
the exported (H, W) (resized keeping its aspect ratio, padded bottom/right), the graphs run
in onnxruntime, and mmdet_lite's post-processing (the heads' ``predict_by_feat``; nothing
for a ``--with-postprocess`` graph but dropping the padding) gives detections in
original-image pixels, drawn with DetLocalVisualizer as demo/image_demo.py draws them.

The config (by default the one recorded at export) builds the heads for the
post-processing and gives the class names; ``--checkpoint`` is only read for class names
saved in it (the post-processing has no weights).
"""
import argparse
import os.path as osp
import sys

from mmdet_lite.apis.cli import exit_on_user_error, load_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Run an exported detector on an image')
    parser.add_argument('model', help='exported .onnx (or .pt2) file, or its .json manifest')
    parser.add_argument('image', help='image file')
    parser.add_argument('--config', help='model config (default: the one used for export)')
    parser.add_argument('--checkpoint', help='checkpoint, only for the class names')
    parser.add_argument('--out-file', default='outputs/onnx_vis.jpg',
                        help='where the drawing goes')
    parser.add_argument('--pred-score-thr', type=float, default=0.3,
                        help='draw only detections scoring above this')
    parser.add_argument('--threads', type=int, default=0,
                        help='onnxruntime intra-op threads (0: its default)')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries (e.g. the test_cfg)')
    return parser.parse_args(argv)


def detect(manifest: dict, adapter, runners: dict, img, pipeline_pad=None) -> list:
    """Letterbox ``img`` ([h, w, 3] as loaded), run the graphs, post-process.

    Args:
        pipeline_pad (list[float], optional): The test pipeline's ``Pad`` value, if any
            (see ``mmdet_lite.deployment.image_input``).

    Returns:
        list[InstanceData]: The one image's detections, original-image pixels.
    """
    from mmdet_lite.deployment import letterbox
    from mmdet_lite.deployment.dense_postprocess import dets_to_instances

    images, meta = letterbox(img, manifest['input_shape'], adapter.normalizer, pipeline_pad)
    if manifest['with_postprocess']:
        dets, labels = runners['model'](images)
        return dets_to_instances(dets, labels, [meta])
    return adapter.predict(runners, images, [meta])


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.image):
        raise FileNotFoundError(f'image not found: {args.image}')
    from mmdet_lite.deployment import get_export_adapter, load_runners, read_manifest
    manifest = read_manifest(args.model)
    config = args.config or manifest.get('config')
    if config is None:
        raise ValueError('the manifest records no config: pass --config')
    cfg = load_config(config, args.cfg_options)

    import mmcv

    from mmdet_lite.apis import get_test_pipeline_cfg, init_detector, init_visualizer
    from mmdet_lite.deployment.image_input import pipeline_pad_value
    from mmdet_lite.structures import DetDataSample

    model = init_detector(cfg, args.checkpoint, device='cpu')
    if type(model).__name__ != manifest['detector']:
        raise ValueError(f'the config builds {type(model).__name__}, the model was exported '
                         f'from {manifest["detector"]}: pass the config used for export')
    adapter = get_export_adapter(model, manifest['input_shape'])
    runners = load_runners(manifest, args.threads)

    img = mmcv.imread(args.image)  # [h, w, 3] BGR, as LoadImageFromFile loads it
    try:
        pipeline_pad = pipeline_pad_value(get_test_pipeline_cfg(model.cfg))
    except KeyError:  # no test pipeline in the config: the preprocessor pads
        pipeline_pad = None
    results = detect(manifest, adapter, runners, img, pipeline_pad)[0]
    sample = DetDataSample(pred_instances=results)
    visualizer = init_visualizer(model.cfg, model.dataset_meta)
    visualizer.add_datasample(osp.basename(args.image), mmcv.bgr2rgb(img), data_sample=sample,
                              draw_gt=False, pred_score_thr=args.pred_score_thr,
                              out_file=args.out_file)
    shown = int((results.scores > args.pred_score_thr).sum())
    print(f'{len(results)} detections, {shown} above {args.pred_score_thr}; drawing saved to '
          f'{args.out_file}', file=sys.stdout)


if __name__ == '__main__':
    main()
