"""Detect objects in large images (satellite, aerial) by sliced inference.

Usage::

    python demo/large_image_demo.py IMG CONFIG [CHECKPOINT] [--out-dir ./output]
        [--device cuda:0] [--score-thr 0.3] [--patch-size 640]
        [--patch-overlap-ratio 0.25] [--merge-iou-thr 0.25] [--merge-nms-type nms]
        [--batch-size 1] [--tta] [--debug [--save-patch]] [--show] [--palette none]
        [--trust-checkpoint CKPT]

``IMG`` is an image file, a folder (searched recursively) or an http(s) URL (downloaded to
the working directory). Each image is cut into ``--patch-size`` squares overlapping by
``--patch-overlap-ratio`` (``mmdet_lite.utils.get_slice_bboxes``, as sahi slices); each
patch is detected, the detections are moved into the full image and merged with class-wise
NMS at ``--merge-iou-thr`` (``mmdet_lite.utils.merge_results_by_nms``). Written to
``--out-dir``:

- ``NAME``: the full image with the merged detections scoring above ``--score-thr``
  (``NAME`` is the file name, or for a folder its path inside it with '/' turned to '_');
- with ``--debug``: ``STEM_debug.EXT``, the patch grid (numbered, tinted) and every patch
  detection before merging; with ``--save-patch`` also ``STEM_patch/NAME_slice_I_result.jpg``,
  each patch with its own detections.

With ``--show`` the drawings are shown in a window instead of written.
"""
import argparse
import os
import os.path as osp
import sys
import urllib.parse
from typing import List, Optional, Tuple

import numpy as np

from mmdet_lite.apis.cli import exit_on_user_error
from mmdet_lite.apis.image_files import IMG_EXTENSIONS

EXAMPLE = """example:
  python demo/large_image_demo.py demo/large_image.jpg \\
      configs/shapes/faster-rcnn_r18_fpn_shapes.py \\
      work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth \\
      --device cpu --patch-size 96 --patch-overlap-ratio 0.25 --out-dir outputs --debug
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Detect objects in large images by sliced inference', epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('img', help='an image file, a folder of images or an http(s) URL')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file (random weights when omitted)')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling (can run code) of this checkpoint file, '
                        'one you trust that holds objects beyond the weights-only allow-list')
    parser.add_argument('--out-dir', default='./output', help='where the drawings go')
    parser.add_argument('--device', default=None,
                        help="e.g. 'cpu' or 'cuda:0' (default: cuda:0 if available, else cpu)")
    parser.add_argument('--show', action='store_true',
                        help='show the drawings in a window instead of writing them')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation with the config's tta_model and "
                        'tta_pipeline')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw only detections scoring above this')
    parser.add_argument('--patch-size', type=int, default=640, help='patch side in pixels')
    parser.add_argument('--patch-overlap-ratio', type=float, default=0.25,
                        help='overlap of neighbouring patches, a fraction of the patch size')
    parser.add_argument('--merge-iou-thr', type=float, default=0.25,
                        help='IoU above which NMS merges detections of neighbouring patches')
    parser.add_argument('--merge-nms-type', type=str, default='nms',
                        help="NMS type for merging (only 'nms' is available)")
    parser.add_argument('--batch-size', type=int, default=1, help='patches per forward pass')
    parser.add_argument('--debug', action='store_true',
                        help='also draw the patch grid and the detections before merging')
    parser.add_argument('--save-patch', action='store_true',
                        help='with --debug: also draw each patch with its own detections')
    parser.add_argument('--palette', default='none', choices=['coco', 'random', 'none'],
                        help="box colours; 'none' takes the config's or the checkpoint's")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.patch_size < 1:
        parser.error(f'--patch-size must be >= 1, got {args.patch_size}')
    if not 0 <= args.patch_overlap_ratio < 1:
        parser.error(f'--patch-overlap-ratio must be in [0, 1), got {args.patch_overlap_ratio}')
    return args


def list_images(img: str) -> Tuple[List[str], bool]:
    """The image files named by ``img`` and whether it is a folder.

    Args:
        img (str): An image file, a folder (searched recursively) or an http(s) URL, which
            is downloaded to the working directory first.

    Returns:
        tuple[list[str], bool]: Sorted image paths, and whether ``img`` is a folder.
    """
    if osp.isdir(img):
        from mmengine.utils import scandir
        paths = sorted(osp.join(img, name) for name in
                       scandir(img, IMG_EXTENSIONS, recursive=True, case_sensitive=False))
        if not paths:
            raise FileNotFoundError(f'no image files ({", ".join(IMG_EXTENSIONS)}) found in '
                                    f'{img}')
        return paths, True
    if img.startswith(('http:/', 'https:/')):
        import torch
        path = osp.join(os.getcwd(), osp.basename(urllib.parse.unquote(img).split('?')[0]))
        print(f'downloading {img} to {path}')
        torch.hub.download_url_to_file(img, path)
        return [path], False
    if not osp.isfile(img):
        raise FileNotFoundError(f'input image not found: {img}')
    return [img], False


def output_name(path: str, img_arg: str, from_folder: bool) -> str:
    """File name of a drawing: the basename, or for a folder the path inside it with its
    separators turned to '_' (as mmdetection names them)."""
    if from_folder:
        return osp.relpath(path, img_arg).replace(os.sep, '_').replace('/', '_')
    return osp.basename(path)


def enable_tta(cfg) -> None:
    """Point the config's test pipeline at ``cfg.tta_pipeline`` (``--tta``).

    The detector is wrapped in ``cfg.tta_model`` after its weights are loaded (see
    :func:`build_model`). As in mmdetection's demo, a config without ``tta_model`` or
    ``tta_pipeline`` is refused (tools/test.py's ``--tta`` supplies defaults instead).
    """
    for key in ('tta_model', 'tta_pipeline'):
        if key not in cfg:
            raise KeyError(f'--tta: the config has no `{key}`; add one or drop --tta')
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # the innermost dataset of a wrapper
        dataset = dataset['dataset']
    dataset.pipeline = cfg.tta_pipeline


def build_model(config: str, checkpoint: Optional[str], device: str, palette: str = 'none',
                tta: bool = False, trust_checkpoint: Tuple[str, ...] = ()):
    """The detector (wrapped in the config's ``tta_model`` with ``tta``) and its test
    pipeline for BGR arrays.

    Returns:
        tuple: ``(model, pipeline)``: the model in eval mode with ``cfg`` and
        ``dataset_meta``, and a ``Compose`` taking ``dict(img=...)``.
    """
    from mmengine.dataset import Compose

    from mmdet_lite.apis import get_test_pipeline_cfg, init_detector
    from mmdet_lite.apis.cli import read_config_file
    from mmdet_lite.engine import allow_unsafe_checkpoint
    from mmdet_lite.registry import MODELS, TRANSFORMS

    cfg = read_config_file(config)
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None  # as mmdetection: no pretrained download
    if tta:
        enable_tta(cfg)
    with allow_unsafe_checkpoint(*trust_checkpoint):
        model = init_detector(cfg, checkpoint, device=device, palette=palette)
    if tta:
        # wrapped after loading, so the checkpoint's keys meet the detector's own
        detector = model
        model = MODELS.build(dict(**cfg.tta_model, module=detector))
        model.cfg, model.dataset_meta = detector.cfg, detector.dataset_meta
        model.to(next(detector.parameters()).device).eval()
    pipeline = Compose([TRANSFORMS.build(step) for step in
                        get_test_pipeline_cfg(model.cfg, from_ndarray=True)])
    return model, pipeline


def _detect_tta(model, patches: List[np.ndarray], pipeline) -> list:
    """Detect with a TTA model: the views of all patches are collated view-major
    ([views][patches]), the layout ``BaseTTAModel.test_step`` splits into one batch per
    view before merging each patch's views."""
    import torch
    from mmengine.dataset import pseudo_collate
    batch = pseudo_collate([pipeline(dict(img=patch, img_id=i))
                            for i, patch in enumerate(patches)])
    with torch.no_grad():
        return model.test_step(batch)


def detect_large_image(model, img: np.ndarray, patch_size: int, overlap_ratio: float,
                       nms_cfg: dict, batch_size: int = 1, pipeline=None,
                       tta: bool = False) -> Tuple[object, List[List[int]], list]:
    """Sliced inference on one image.

    Args:
        model (nn.Module): Detector from ``init_detector`` (or its TTA wrapper).
        img (np.ndarray): BGR image [H, W, 3].
        patch_size (int): Patch side in pixels.
        overlap_ratio (float): Overlap of neighbouring patches, a fraction of the patch.
        nms_cfg (dict): NMS config for merging, e.g. ``dict(type='nms', iou_threshold=0.25)``.
        batch_size (int): Patches per forward pass. Defaults to 1.
        pipeline (Compose, optional): Test pipeline for arrays; the config's by default.
        tta (bool): Whether ``model`` is a TTA wrapper. Defaults to False.

    Returns:
        tuple: ``(merged, slices, patch_results)``: the merged DetDataSample in full-image
        pixels, the patches ``[x1, y1, x2, y2]``, and each patch's own DetDataSample.
    """
    from mmdet_lite.apis import inference_detector
    from mmdet_lite.utils import get_slice_bboxes, merge_results_by_nms

    height, width = img.shape[:2]
    slices = get_slice_bboxes(height, width, patch_size, patch_size, overlap_ratio,
                              overlap_ratio)
    patches = [img[y1:y2, x1:x2] for x1, y1, x2, y2 in slices]  # BGR [h, w, 3] views
    patch_results = []
    for start in range(0, len(patches), batch_size):
        batch = patches[start:start + batch_size]
        if tta:
            patch_results.extend(_detect_tta(model, batch, pipeline))
        else:
            patch_results.extend(inference_detector(model, batch, test_pipeline=pipeline,
                                                    batch_size=len(batch)))
    offsets = [(x1, y1) for x1, y1, _, _ in slices]
    merged = merge_results_by_nms(patch_results, offsets, (height, width), nms_cfg)
    return merged, slices, patch_results


def draw_debug(visualizer, img_rgb: np.ndarray, slices: List[List[int]], patch_results: list,
               name: str, out_file: Optional[str], show: bool, score_thr: float) -> None:
    """The patch grid (numbered, each patch tinted) with every patch detection, unmerged."""
    from mmdet_lite.utils import shift_predictions
    height, width = img_rgb.shape[:2]
    unmerged = patch_results[0].clone()
    unmerged.pred_instances = shift_predictions(
        patch_results, [(x1, y1) for x1, y1, _, _ in slices], (height, width))

    grid = np.array(slices, dtype=np.float64)
    # pulled 1 pixel inside the image so the border patches' edges stay visible
    grid[:, 0::2] = grid[:, 0::2].clip(1, width - 1)
    grid[:, 1::2] = grid[:, 1::2].clip(1, height - 1)
    rng = np.random.RandomState(0)  # the same colours on every run
    colors = [tuple(int(c) for c in color) for color in rng.randint(0, 256, (len(grid), 3))]
    line_styles = [['-', '-.', ':'][i] for i in rng.randint(0, 3, len(grid))]
    visualizer.set_image(img_rgb)
    visualizer.draw_bboxes(grid, edge_colors=colors, alpha=1, line_styles=line_styles)
    visualizer.draw_bboxes(grid, face_colors=colors, alpha=0.15)
    visualizer.draw_texts([str(i) for i in range(len(grid))], grid[:, :2] + 5, colors='w')
    visualizer.add_datasample(name, visualizer.get_image(), data_sample=unmerged,
                              draw_gt=False, show=show, wait_time=0, out_file=out_file,
                              pred_score_thr=score_thr)


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    images, from_folder = list_images(args.img)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    if args.save_patch and not args.debug:
        print('warning: --save-patch does nothing without --debug', file=sys.stderr)

    import mmcv
    import torch
    from mmengine.utils import ProgressBar

    from mmdet_lite.apis import init_visualizer

    if args.checkpoint is None:
        print('warning: no checkpoint given, the model has random weights', file=sys.stderr)
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    model, pipeline = build_model(args.config, args.checkpoint, device, args.palette,
                                  args.tta, tuple(args.trust_checkpoint))
    visualizer = init_visualizer(model.cfg, model.dataset_meta)
    nms_cfg = dict(type=args.merge_nms_type, iou_threshold=args.merge_iou_thr)
    if not args.show:
        os.makedirs(args.out_dir, exist_ok=True)

    print(f'Performing inference on {len(images)} image(s)')
    progress = ProgressBar(len(images))
    for path in images:
        img = mmcv.imread(path)  # BGR [H, W, 3]
        if img is None:
            raise ValueError(f'could not decode image {path}')
        merged, slices, patch_results = detect_large_image(
            model, img, args.patch_size, args.patch_overlap_ratio, nms_cfg,
            batch_size=args.batch_size, pipeline=pipeline, tta=args.tta)
        name = output_name(path, args.img, from_folder)
        stem, ext = osp.splitext(name)
        img_rgb = mmcv.bgr2rgb(img)
        if args.debug:
            draw_debug(visualizer, img_rgb, slices, [r.cpu() for r in patch_results],
                       f'{stem}_debug{ext}',
                       None if args.show else osp.join(args.out_dir, f'{stem}_debug{ext}'),
                       args.show, args.score_thr)
            if args.save_patch:
                for i, ((x1, y1, x2, y2), result) in enumerate(zip(slices, patch_results)):
                    visualizer.add_datasample(
                        'patch_result', img_rgb[y1:y2, x1:x2], data_sample=result.cpu(),
                        draw_gt=False, show=False, pred_score_thr=args.score_thr,
                        out_file=osp.join(args.out_dir, f'{stem}_patch',
                                          f'{name}_slice_{i}_result.jpg'))
        visualizer.add_datasample(
            name, img_rgb, data_sample=merged.cpu(), draw_gt=False, show=args.show,
            wait_time=0, out_file=None if args.show else osp.join(args.out_dir, name),
            pred_score_thr=args.score_thr)
        progress.update()
    if not args.show or (args.debug and args.save_patch):
        print(f'\nResults have been saved at {osp.abspath(args.out_dir)}')


if __name__ == '__main__':
    main()
