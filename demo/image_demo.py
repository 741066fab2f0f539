"""Detect objects in images and save drawings and JSON predictions.

Usage::

    python demo/image_demo.py INPUTS CONFIG [--weights CKPT] [--out-dir outputs]
        [--device cpu] [--pred-score-thr 0.3] [--batch-size 1] [--palette none]
        [--trust-checkpoint CKPT]

``INPUTS`` is an image file, a folder of images or a quoted glob (``'data/*.jpg'``). For
each image ``IMG.ext`` it writes

- ``OUT_DIR/vis/IMG.ext``: the image with detections scoring above ``--pred-score-thr``;
- ``OUT_DIR/preds/IMG.json``: every detection, unthresholded as in mmdetection:
  ``labels``, ``scores``, ``bboxes`` (x1, y1, x2, y2 original-image pixels), ``class_names``
  (the name of each detection's label) and, for instance segmentation, ``masks`` (COCO RLE
  dicts with str ``counts``).

Images in sub-folders of a glob keep their relative paths under ``vis/`` and ``preds/``.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import List, Sequence


from mmdet_lite.apis.cli import exit_on_user_error

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Detect objects in images')
    parser.add_argument('inputs', help='an image file, a folder of images or a glob pattern')
    parser.add_argument('config', help='model config file')
    parser.add_argument('--weights', help='checkpoint file (random weights when omitted)')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling (can run code) of this checkpoint file, '
                        'one you trust that holds objects beyond the weights-only allow-list')
    parser.add_argument('--out-dir', default='outputs', help='where vis/ and preds/ go')
    parser.add_argument('--device', default='cpu', help="e.g. 'cpu' or 'cuda:0'")
    parser.add_argument('--pred-score-thr', type=float, default=0.3,
                        help='draw only detections scoring above this')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    parser.add_argument('--palette', default='none', choices=['coco', 'random', 'none'],
                        help="box colours; 'none' takes the config's or the checkpoint's")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    return args


def list_images(inputs: str) -> List[str]:
    """The image files named by ``inputs`` (a file, a folder or a glob), sorted.

    Args:
        inputs (str): An image path, a folder (its images, not recursing) or a glob.

    Returns:
        list[str]: Image paths.
    """
    if osp.isdir(inputs):
        paths = [osp.join(inputs, name) for name in sorted(os.listdir(inputs))
                 if name.lower().endswith(IMG_EXTENSIONS)]
    elif glob.has_magic(inputs):
        paths = [path for path in sorted(glob.glob(inputs, recursive=True))
                 if osp.isfile(path) and path.lower().endswith(IMG_EXTENSIONS)]
    elif osp.isfile(inputs):
        return [inputs]
    else:
        raise FileNotFoundError(f'input image not found: {inputs}')
    if not paths:
        raise FileNotFoundError(f'no image files ({", ".join(IMG_EXTENSIONS)}) found in '
                                f'{inputs}')
    return paths


def output_names(paths: Sequence[str]) -> List[str]:
    """Names relative to the images' common folder, so equal basenames do not collide."""
    if len(paths) == 1:
        return [osp.basename(paths[0])]
    root = osp.commonpath([osp.dirname(osp.abspath(p)) for p in paths])
    return [osp.relpath(osp.abspath(p), root) for p in paths]


def prediction_to_dict(pred_instances, classes) -> dict:
    """JSON-ready predictions of one image (see the module docstring for the fields)."""
    from mmdet_lite.structures.mask import encode_mask_results
    labels = pred_instances.labels.tolist()
    result = dict(
        labels=labels,
        scores=pred_instances.scores.tolist(),
        bboxes=pred_instances.bboxes.tolist(),
        class_names=[classes[label] if classes is not None and label < len(classes)
                     else str(label) for label in labels])
    if 'masks' in pred_instances:
        result['masks'] = encode_mask_results(pred_instances.masks)
    return result


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    images = list_images(args.inputs)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    if args.weights is not None and not osp.isfile(args.weights):
        raise FileNotFoundError(f'--weights: checkpoint not found: {args.weights}')

    import mmcv
    from mmengine.utils import ProgressBar

    from mmdet_lite.apis import inference_detector, init_detector, init_visualizer

    if args.weights is None:
        print('warning: no --weights given, the model has random weights', file=sys.stderr)
    from mmdet_lite.engine import allow_unsafe_checkpoint
    with allow_unsafe_checkpoint(*args.trust_checkpoint):
        model = init_detector(args.config, args.weights, device=args.device,
                              palette=args.palette)
    visualizer = init_visualizer(model.cfg, model.dataset_meta)
    classes = model.dataset_meta.get('classes')

    names = output_names(images)
    progress = ProgressBar(len(images))
    for start in range(0, len(images), args.batch_size):
        batch = images[start:start + args.batch_size]
        results = inference_detector(model, batch, batch_size=len(batch))
        for path, name, result in zip(batch, names[start:], results):
            img = mmcv.imread(path, channel_order='rgb')  # [H, W, 3]
            result = result.cpu()
            visualizer.add_datasample(name, img, data_sample=result, draw_gt=False,
                                      pred_score_thr=args.pred_score_thr,
                                      out_file=osp.join(args.out_dir, 'vis', name))
            pred_file = osp.join(args.out_dir, 'preds', osp.splitext(name)[0] + '.json')
            os.makedirs(osp.dirname(pred_file), exist_ok=True)
            with open(pred_file, 'w', encoding='utf-8') as f:
                json.dump(prediction_to_dict(result.pred_instances, classes), f)
            progress.update()
    print(f'\nresults of {len(images)} image(s) saved to {osp.join(args.out_dir, "vis")} '
          f'and {osp.join(args.out_dir, "preds")}')


if __name__ == '__main__':
    main()
