"""Confusion matrix of saved test predictions: which classes the detector mixes up.

Writes into SAVE_DIR:

- ``confusion_matrix.png``: the matrix, each row in percent of its total;
- ``confusion_matrix.npy``: the counts, float64 [C + 1, C + 1];
- ``confusion_matrix.json``: ``{"labels": [...C class names..., "background"],
  "matrix": [[...], ...], "rows": "ground truth", "columns": "prediction",
  "score_thr": ..., "tp_iou_thr": ..., "nms_iou_thr": ...}``.

Rows are ground-truth classes, columns predicted classes; the last row counts false
positives (predictions on background), the last column missed objects. See
:mod:`mmdet_lite.analysis.confusion_matrix` for how a prediction is counted.
"""
import argparse
import json
import os
import os.path as osp

from mmdet_lite.apis.cli import exit_on_user_error, load_config

EXAMPLE = """example:
  python tools/test.py configs/shapes/faster-rcnn_r18_fpn_shapes.py \\
      work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth --out results.pkl
  python tools/analysis_tools/confusion_matrix.py \\
      configs/shapes/faster-rcnn_r18_fpn_shapes.py results.pkl confusion/ --score-thr 0.3
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate confusion matrix from detection results', epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('prediction_path', help='predictions from tools/test.py --out (.pkl)')
    parser.add_argument('save_dir', help='directory where confusion matrix will be saved')
    parser.add_argument('--show', action='store_true', help='show confusion matrix')
    parser.add_argument('--color-theme', default='plasma',
                        help='theme of the matrix color map (a matplotlib colormap name)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='score threshold to filter detection bboxes')
    parser.add_argument('--tp-iou-thr', type=float, default=0.5,
                        help='IoU threshold to be considered as matched')
    parser.add_argument('--nms-iou-thr', type=float, default=None,
                        help='run NMS again per class at this IoU (the detector already ran '
                        'NMS; only to try another threshold)')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries; a key the config lacks is added')
    return parser.parse_args(argv)


def check_color_theme(name: str) -> None:
    """Raise ValueError naming the flag unless ``name`` is a matplotlib colour map."""
    import matplotlib
    if name not in matplotlib.colormaps:
        raise ValueError(f'--color-theme: unknown matplotlib colormap {name!r}; e.g. '
                         "'plasma', 'viridis', 'Blues'")


def save_matrix(save_dir: str, matrix, labels, args: argparse.Namespace) -> None:
    """Write the counts as ``confusion_matrix.npy`` and ``confusion_matrix.json``."""
    import numpy as np
    np.save(osp.join(save_dir, 'confusion_matrix.npy'), matrix)
    record = dict(labels=list(labels), matrix=matrix.tolist(), rows='ground truth',
                  columns='prediction', score_thr=args.score_thr,
                  tp_iou_thr=args.tp_iou_thr, nms_iou_thr=args.nms_iou_thr)
    with open(osp.join(save_dir, 'confusion_matrix.json'), 'w', encoding='utf-8') as f:
        json.dump(record, f)


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.prediction_path):
        raise FileNotFoundError(f'prediction file not found: {args.prediction_path} '
                                '(write one with tools/test.py CONFIG CKPT --out FILE.pkl)')
    check_color_theme(args.color_theme)
    cfg = load_config(args.config, args.cfg_options)

    from mmengine.fileio import load
    from mmengine.registry import init_default_scope

    from mmdet_lite.analysis.confusion_matrix import (calculate_confusion_matrix,
                                                      plot_confusion_matrix)
    from mmdet_lite.registry import DATASETS
    from mmdet_lite.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope') or 'mmdet_lite')
    results = load(args.prediction_path)
    os.makedirs(args.save_dir, exist_ok=True)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    matrix = calculate_confusion_matrix(dataset, results, args.score_thr, args.nms_iou_thr,
                                        args.tp_iou_thr, progress=True)
    labels = tuple(dataset.metainfo['classes']) + ('background', )
    save_matrix(args.save_dir, matrix, labels, args)
    path = plot_confusion_matrix(matrix, labels, save_dir=args.save_dir, show=args.show,
                                 color_theme=args.color_theme)
    print(f'\nsaved {path} and confusion_matrix.npy / .json in {args.save_dir}')


if __name__ == '__main__':
    main()
