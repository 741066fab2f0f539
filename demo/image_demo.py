"""Detect objects in images with DetInferencer; save the drawings and JSON predictions.

mmdetection 3.x's ``demo/image_demo.py`` interface: ``INPUTS MODEL [--weights CKPT]``, where
``MODEL`` is a config file, a model name (a config's file name such as
``rtmdet_tiny_8xb32-300e_coco``, or an mmdetection alias such as ``rtmdet-t``), or a
checkpoint ``.pth`` that holds its config (as the Runner saves it). ``INPUTS`` is an image
file, a folder of images or a quoted glob (``'data/*.jpg'``, an mmdet_lite addition).

For each image ``IMG.ext`` it writes, under ``--out-dir``:

- ``vis/IMG.ext``: the image with the detections scoring above ``--pred-score-thr``;
- ``preds/IMG.json``: every detection, unthresholded as in mmdetection: ``labels``,
  ``scores``, ``bboxes`` (x1, y1, x2, y2 original-image pixels) and, for instance
  segmentation, ``masks`` (COCO RLE dicts with str ``counts``).

Output files are named by the image's file name only (as mmdetection's), so images of the
same name in different folders overwrite each other's outputs; the demo warns when that
happens. Nothing is downloaded: without ``--weights`` the model has random weights.
Text-prompted models (GLIP, Grounding DINO) are not part of mmdet_lite: ``--texts``,
``--tokens-positive`` and ``--chunked-size`` are accepted for compatibility and refused
when given.
"""
import argparse
import glob
import os.path as osp
import sys
from collections import Counter
from typing import List, Tuple

from mmdet_lite.apis.cli import exit_on_user_error

EPILOG = """examples:
  python demo/image_demo.py data/shapes/val/000000.jpg \\
      configs/shapes/faster-rcnn_r18_fpn_shapes.py \\
      --weights work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth --out-dir outputs
  python demo/image_demo.py 'photos/*.jpg' rtmdet-t --weights rtmdet_tiny.pth --device cpu
  python demo/image_demo.py data/shapes/val work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth
"""
# keyword arguments of DetInferencer(); the other options go to its __call__
INIT_KEYS = ('model', 'weights', 'device', 'palette', 'fast_path', 'compile')


def parse_args(argv=None) -> Tuple[dict, dict, List[str]]:
    """Parse the command line.

    Returns:
        tuple: ``DetInferencer`` keyword arguments, ``__call__`` keyword arguments (with
        ``inputs``), and the ``--trust-checkpoint`` files.
    """
    parser = argparse.ArgumentParser(
        description='Detect objects in images and save drawings and JSON predictions',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', help='an image file, a folder of images or a glob pattern')
    parser.add_argument('model', help='a config file, a model name or alias (e.g. rtmdet-t), '
                        'or a .pth checkpoint holding its config (then used as --weights)')
    parser.add_argument('--weights', default=None,
                        help='checkpoint file (random weights when omitted)')
    parser.add_argument('--out-dir', default='outputs',
                        help='where vis/ and preds/ go (default: outputs)')
    parser.add_argument('--texts', help='text prompt of GLIP / Grounding DINO (not supported)')
    parser.add_argument('--device', default=None,
                        help="e.g. 'cpu' or 'cuda:0' (default: CUDA when available, else "
                        "the CPU; mmdetection's default is cuda:0)")
    parser.add_argument('--pred-score-thr', type=float, default=0.3,
                        help='draw only detections scoring above this (default: 0.3)')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    parser.add_argument('--show', action='store_true', help='show each drawing in a window')
    parser.add_argument('--no-save-vis', action='store_true', help='do not write vis/')
    parser.add_argument('--no-save-pred', action='store_true', help='do not write preds/')
    parser.add_argument('--print-result', action='store_true', help='print the predictions')
    parser.add_argument('--palette', default='none',
                        choices=['coco', 'voc', 'citys', 'random', 'none'],
                        help="box colours; 'none' takes the config's or the checkpoint's")
    parser.add_argument('--custom-entities', '-c', action='store_true',
                        help='GLIP / Grounding DINO entity names (used with --texts only)')
    parser.add_argument('--chunked-size', '-s', type=int, default=-1,
                        help='GLIP / Grounding DINO category chunks (not supported)')
    parser.add_argument('--tokens-positive', '-p', type=str,
                        help='Grounding DINO token spans (not supported)')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling (can run code) of this checkpoint file, '
                        'one you trust that holds objects beyond the weights-only allow-list')
    parser.add_argument('--no-fast-path', dest='fast_path', action='store_false',
                        help='predict with the model as built: no BN folding, channels-last '
                        'or inference_mode (docs/benchmark.md)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone, neck and dense heads (the first '
                        'image waits for the compilation)')
    args = vars(parser.parse_args(argv))
    if args['batch_size'] < 1:
        parser.error(f'--batch-size must be >= 1, got {args["batch_size"]}')
    for flag, given in (('--texts', args['texts'] is not None),
                        ('--tokens-positive', args['tokens_positive'] is not None),
                        ('--chunked-size', args['chunked_size'] != -1)):
        if given:
            parser.error(f'{flag}: text-prompted models (GLIP, Grounding DINO) are not '
                         'supported by mmdet_lite')
    # only meaningful with text prompts: as mmdetection, ignored without them
    for key in ('texts', 'tokens_positive', 'chunked_size', 'custom_entities'):
        args.pop(key)

    if args['no_save_vis'] and args['no_save_pred']:
        args['out_dir'] = ''
    if args['model'].endswith('.pth'):
        print('the model argument is a checkpoint: using it as --weights, with the config '
              'saved in it', file=sys.stderr)
        args['weights'], args['model'] = args['model'], None
    trusted = args.pop('trust_checkpoint')
    init_args = {key: args.pop(key) for key in INIT_KEYS}
    return init_args, args, trusted


def list_images(inputs: str) -> List[str]:
    """The image files named by ``inputs`` (a file, a folder or a glob), sorted.

    Args:
        inputs (str): An image path, a folder (its images, not recursing) or a glob.

    Returns:
        list[str]: Image paths.

    Raises:
        FileNotFoundError: Nothing exists at ``inputs``, or it names no image file.
    """
    from mmdet_lite.apis.image_files import IMG_EXTENSIONS, list_image_files
    if osp.isdir(inputs):
        paths = list_image_files(inputs)
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


def warn_name_clashes(paths: List[str]) -> None:
    """Warn when images share a file name: their outputs would overwrite each other."""
    clashes = sorted(name for name, count in
                     Counter(osp.splitext(osp.basename(p))[0] for p in paths).items()
                     if count > 1)
    if clashes:
        print(f'warning: several images are named {", ".join(clashes[:5])}: outputs are '
              'named by file name, so only the last of each is kept', file=sys.stderr)


@exit_on_user_error
def main(argv=None) -> None:
    init_args, call_args, trusted = parse_args(argv)
    weights = init_args['weights']
    if weights is not None and not osp.isfile(weights):
        flag = '--weights' if init_args['model'] is not None else 'model'
        raise FileNotFoundError(f'{flag}: checkpoint not found: {weights}')
    images = list_images(call_args.pop('inputs'))
    warn_name_clashes(images)

    from mmdet_lite.apis import DetInferencer
    from mmdet_lite.engine import allow_unsafe_checkpoint
    with allow_unsafe_checkpoint(*trusted):
        inferencer = DetInferencer(**init_args)
    inferencer(images, **call_args)

    out_dir = call_args['out_dir']
    if out_dir and not (call_args['no_save_vis'] and call_args['no_save_pred']):
        print(f'results have been saved at {out_dir}')


if __name__ == '__main__':
    main()
