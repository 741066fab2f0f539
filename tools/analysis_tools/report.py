"""Write an HTML report of a test run: one page to open in a browser, no server needed.

Usage::

    python tools/analysis_tools/report.py CONFIG --results RESULTS.pkl --out-dir DIR
        [--work-dir WORK_DIR] [--topk 20] [--score-thr 0.3] [--cfg-options KEY=VALUE ...]

``RESULTS.pkl`` is what ``tools/test.py CONFIG CKPT --out RESULTS.pkl`` dumps (or run
``tools/test.py ... --report DIR`` to test and report in one go). ``DIR/index.html`` shows
the config's test_evaluator metrics computed from the pkl, the per-class AP (COCOeval) with
bars, precision-recall curves at IoU 0.5 and 0.75, the confusion matrix, the ``--topk``
images with the lowest mAP (ground truth | predictions) and, given the training's
``--work-dir``, its loss and mAP curves. The page's CSS and script are inline and its
images are files beside it, so the folder can be copied or zipped as it is.
"""
import argparse
import os.path as osp

from mmdet_lite.apis.cli import exit_on_user_error, load_config

EXAMPLE = """example:
  python tools/test.py configs/shapes/faster-rcnn_r18_fpn_shapes.py \\
      work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth --out results.pkl
  python tools/analysis_tools/report.py configs/shapes/faster-rcnn_r18_fpn_shapes.py \\
      --results results.pkl --out-dir report \\
      --work-dir work_dirs/faster-rcnn_r18_fpn_shapes
  # then open report/index.html
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write an HTML report of dumped test predictions', epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the config the predictions were made with')
    parser.add_argument('--results', required=True,
                        help='predictions dumped by tools/test.py --out (.pkl)')
    parser.add_argument('--out-dir', required=True,
                        help='folder for index.html and its images')
    parser.add_argument('--work-dir', default=None,
                        help='training work dir: its json logs give the training curves')
    parser.add_argument('--topk', type=int, default=20,
                        help='how many of the worst images (lowest mAP) to draw')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='score from which predictions are drawn and counted in the '
                        'confusion matrix')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries (e.g. the test data_root)')
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None) -> str:
    args = parse_args(argv)
    if args.topk < 0:
        raise ValueError(f'--topk must be >= 0, got {args.topk}')
    if args.work_dir is not None and not osp.isdir(args.work_dir):
        raise FileNotFoundError(f'--work-dir not found: {args.work_dir}')
    from mmdet_lite.analysis.report import load_results, write_report
    results = load_results(args.results)
    cfg = load_config(args.config, args.cfg_options)
    path = write_report(cfg, results, args.out_dir, work_dir=args.work_dir, topk=args.topk,
                        score_thr=args.score_thr,
                        facts=[f'config: {args.config}', f'predictions: {args.results}'])
    print(f'report written to {path}')
    return path


if __name__ == '__main__':
    main()
