"""Break the COCO AP of a result file down by error type and draw the PR curves.

Usage::

    python tools/analysis_tools/coco_error_analysis.py RESULT.json OUT_DIR --ann ANN.json
        [--types bbox segm] [--extraplots] [--score-thr 0.3] [--areas 1024 9216 1e10]
        [--nproc 1]

The curves are C75, C50, Loc (IoU 0.1), Sim (same-supercategory confusions forgiven), Oth
(all class confusions forgiven), BG (all false positives forgiven) and FN (all misses
forgiven); see :mod:`mmdet_lite.analysis.coco_error_analysis`. Files go to
``OUT_DIR/<type>/<type>-<category>-<area>.png`` (``allclass`` for the mean over categories,
``allarea``/``small``/``medium``/``large`` for the area groups).
"""
import argparse


from mmdet_lite.apis.cli import exit_on_user_error

EPILOG = """example:
  python tools/test.py configs/shapes/faster-rcnn_r18_fpn_shapes.py CKPT \\
      --cfg-options test_evaluator.format_only=True \\
      test_evaluator.outfile_prefix=work_dirs/results
  python tools/analysis_tools/coco_error_analysis.py work_dirs/results.bbox.json \\
      work_dirs/error_analysis --ann data/shapes/annotations/instances_val.json
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='COCO Error Analysis Tool', epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('result', help='COCO result json (e.g. results.bbox.json)')
    parser.add_argument('out_dir', help='folder for the plots')
    parser.add_argument('--ann', default='data/coco/annotations/instances_val2017.json',
                        help='COCO annotation json the results were made on')
    parser.add_argument('--types', nargs='+', default=['bbox'], choices=['bbox', 'segm'],
                        help='result types')
    parser.add_argument('--extraplots', action='store_true',
                        help='also draw AP bar plots and ground-truth area statistics')
    parser.add_argument('--score-thr', type=float, default=None,
                        help='drop detections scoring below this first')
    # floats accepted too (1e10); mmdetection reads ints
    parser.add_argument('--areas', type=float, nargs='+', default=[1024, 9216, 10000000000],
                        help='upper bounds of the small, medium and large areas (px^2)')
    parser.add_argument('--nproc', type=int, default=1,
                        help='processes for the per-category analyses (mmdetection: a '
                        'pool of 48)')
    args = parser.parse_args(argv)
    if args.nproc < 1:
        parser.error(f'--nproc must be >= 1, got {args.nproc}')
    return args


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    from mmdet_lite.analysis.coco_error_analysis import analyze_results

    analyze_results(args.result, args.ann, args.types, out_dir=args.out_dir,
                    extraplots=args.extraplots, areas=args.areas, score_thr=args.score_thr,
                    nproc=args.nproc)
    print(f'saved the error analysis plots under {args.out_dir}')


if __name__ == '__main__':
    main()
