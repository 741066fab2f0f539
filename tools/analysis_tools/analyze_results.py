"""Draw the images a detector does best and worst on, by per-image box mAP.

Each image's score is its box mAP over IoU 0.5:0.95, computed on that image alone from
the saved predictions (see :mod:`mmdet_lite.analysis.result_ranking`). The ``--topk``
best go to ``SHOW_DIR/good/`` and the ``--topk`` worst to ``SHOW_DIR/bad/``, each named
as in mmdetection: ``<image name>_<mAP rounded to 3 places><ext>``, e.g.
``000012_0.85.jpg``. Each drawing shows the ground truth (left) beside the predictions
scoring above ``--show-score-thr`` (right), so it is twice the image's width.
"""
import argparse
import os
import os.path as osp

from mmdet_lite.apis.cli import exit_on_user_error, load_config

EXAMPLE = """example:
  python tools/test.py configs/shapes/faster-rcnn_r18_fpn_shapes.py \\
      work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth --out results.pkl
  python tools/analysis_tools/analyze_results.py \\
      configs/shapes/faster-rcnn_r18_fpn_shapes.py results.pkl ranked/ --topk 10 \\
      --show-score-thr 0.3
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='MMDet eval image prediction result for each', epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('prediction_path', help='predictions from tools/test.py --out (.pkl)')
    parser.add_argument('show_dir', help='directory where painted images will be saved')
    parser.add_argument('--show', action='store_true', help='show results')
    parser.add_argument('--wait-time', type=float, default=0,
                        help='the interval of show (s), 0 is block')
    parser.add_argument('--topk', default=20, type=int,
                        help='saved Number of the highest topk and lowest topk after index '
                        'sorting')
    parser.add_argument('--show-score-thr', type=float, default=0,
                        help='score threshold (default: 0.)')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries; a key the config lacks is added')
    args = parser.parse_args(argv)
    if args.topk <= 0:
        parser.error(f'--topk must be > 0, got {args.topk}')
    return args


def save_drawings(dataset, results, ranking, out_dir: str, score_thr: float,
                  show: bool = False, wait_time: float = 0) -> None:
    """Draw each ``(index, mAP)`` of ``ranking`` into ``out_dir`` (and show it)."""
    import mmcv

    from mmdet_lite.analysis.result_ranking import draw_gt_and_prediction
    from mmdet_lite.visualization import DetLocalVisualizer

    os.makedirs(out_dir, exist_ok=True)
    visualizer = DetLocalVisualizer.get_instance('analyze_results')  # one per process
    classes, palette = dataset.metainfo.get('classes'), dataset.metainfo.get('palette')
    for index, score in ranking:
        data_info = dataset.get_data_info(index)
        stem, ext = osp.splitext(osp.basename(data_info['img_path']))
        out_file = osp.join(out_dir, f'{stem}_{round(score, 3)}{ext}')
        img = mmcv.imread(data_info['img_path'], channel_order='rgb')
        drawn = draw_gt_and_prediction(img, data_info, results[index]['pred_instances'],
                                       classes, score_thr, palette, visualizer)
        if show:
            # mmdetection 3.3 does not pass --wait-time on (its windows block); we do
            visualizer.show(drawn, win_name=osp.basename(out_file), wait_time=wait_time)
        mmcv.imwrite(drawn[..., ::-1], out_file)  # imwrite expects BGR


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.prediction_path):
        raise FileNotFoundError(f'prediction file not found: {args.prediction_path} '
                                '(write one with tools/test.py CONFIG CKPT --out FILE.pkl)')
    cfg = load_config(args.config, args.cfg_options)

    from mmengine.fileio import load
    from mmengine.registry import init_default_scope

    from mmdet_lite.analysis.result_ranking import rank_results
    from mmdet_lite.registry import DATASETS
    from mmdet_lite.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope') or 'mmdet_lite')
    cfg.test_dataloader.dataset.test_mode = True
    # Only the annotations and image files are read (not the pipeline's output), so the
    # pipeline mmdetection swaps in here (the training one's loading steps) is not needed.
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    results = load(args.prediction_path)
    good, bad = rank_results(dataset, results, topk=args.topk, progress=True)
    for name, ranking in (('good', good), ('bad', bad)):
        save_drawings(dataset, results, ranking, osp.abspath(osp.join(args.show_dir, name)),
                      args.show_score_thr, args.show, args.wait_time)
    print(f'\nsaved {len(good)} good and {len(bad)} bad images in {args.show_dir}')


if __name__ == '__main__':
    main()
