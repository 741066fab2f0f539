"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [options]``.

Flags follow mmdetection's ``tools/test.py``:

- ``--work-dir DIR``: where the metrics log goes (default as in ``tools/train.py``).
- ``--out results.pkl``: also dump the predictions, one dict per image
  (``img_id``, ``img_path``, ``ori_shape``, ..., ``pred_instances`` with ``bboxes``,
  ``scores``, ``labels`` and, for Mask R-CNN, ``masks``). They are written before the
  metrics run, so a failing metric does not lose them, and atomically (temporary file +
  rename): a failed run leaves an earlier file of that name as it was.
- ``--allow-partial-load``: test even when the checkpoint does not fit the model. By
  default a checkpoint that lacks any of the model's weights (BatchNorm's
  ``num_batches_tracked`` aside) or has one in another shape is refused with an error
  listing the first few keys: those weights would stay randomly initialised and the
  metrics would be meaningless (e.g. RetinaNet weights in a Faster R-CNN config). Keys
  only the checkpoint has are always accepted (e.g. Mask R-CNN weights for Faster R-CNN).
- ``--show`` / ``--show-dir DIR``: draw the predictions (score > 0.3) in a window, or save
  them under ``WORK_DIR/<timestamp>/DIR``; ``--wait-time S`` is the window's delay.
- ``--tta``: test-time augmentation as mmdetection does it: the detector is wrapped in the
  config's ``tta_model`` (e.g. ``DetTTAModel``, which merges the views' boxes with NMS) and
  the test dataset runs the config's ``tta_pipeline``. A config without them gets, with a
  warning, ``DetTTAModel`` (NMS IoU 0.5, 100 boxes per image) and the test pipeline with
  its last step replaced by a ``TestTimeAug`` of flipped + unflipped views.
- ``--report DIR``: after testing, write the HTML report of
  ``tools/analysis_tools/report.py`` into ``DIR`` (``DIR/index.html``): the metrics, per-class
  AP, precision-recall curves, confusion matrix and worst images; training curves when the
  checkpoint's folder is a training work dir. The predictions go to ``--out`` or, without
  it, to ``DIR/results.pkl``.
- Fast path (on by default): once the checkpoint is loaded, BatchNorm is folded into the
  convs, the model runs channels-last and predicts under ``torch.inference_mode``
  (``FastInferenceHook``); detections equal the plain model's within float noise.
  ``--no-fast-path`` runs the model as built. ``--compile`` also ``torch.compile``s the
  backbone, neck and dense heads (minutes of compilation first).
- ``--cfg-options KEY=VALUE ...`` and ``--launcher`` as in ``tools/train.py``.

The checkpoint is read with ``torch.load(weights_only=True)`` plus the allow-list of
:mod:`mmdet_lite.engine.checkpoint`; ``--trust-checkpoint FILE`` allows full unpickling
(which can run code) of that one file, for a checkpoint you trust. Progress: an
``Epoch(test) [i/N]`` line with ETA every ``default_hooks.logger.interval`` batches. Bad
input ends with a one-line ``error: ...`` and exit status 2; Ctrl-C with one line (``interrupted (Ctrl-C) ...``) and exit status 130.
"""
import argparse
import os
import os.path as osp
import sys

from mmdet_lite.apis.cli import (build_runner, exit_on_user_error,
                                 load_config, note_run, prepare_cpu_distributed,
                                 setup_work_dir)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dump predictions to a pickle file (.pkl)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='save images with predictions drawn into this dir '
                        '(relative to the work dir\'s timestamped folder)')
    parser.add_argument('--wait-time', type=float, default=2, help='interval of --show (s)')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling (can run code) of this checkpoint file, '
                        'one you trust that holds objects beyond the weights-only allow-list')
    parser.add_argument('--allow-partial-load', action='store_true',
                        help='test even if the checkpoint lacks some of the model\'s weights '
                        'or has some in another shape (they stay randomly initialised)')
    parser.add_argument('--report', metavar='DIR',
                        help='write an HTML report (DIR/index.html) after testing; the '
                        'predictions go to --out or DIR/results.pkl')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries; a key the config lacks is added')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation with the config\'s tta_model and '
                        'tta_pipeline (defaults: flip TTA with DetTTAModel)')
    parser.add_argument('--no-fast-path', action='store_true',
                        help='run the model as built: no BN folding, channels-last or '
                        'inference_mode')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone, neck and dense heads')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_drawing(cfg, show: bool, show_dir, wait_time: float) -> None:
    """Turn on ``DetVisualizationHook`` drawing for ``--show`` / ``--show-dir``."""
    hooks = cfg.setdefault('default_hooks', {})
    if 'visualization' not in hooks:
        raise KeyError('--show/--show-dir need default_hooks.visualization '
                       "(dict(type='DetVisualizationHook')) in the config")
    hooks.visualization.draw = True
    hooks.visualization.show = show
    hooks.visualization.wait_time = wait_time
    hooks.visualization.test_out_dir = show_dir


def enable_tta(cfg) -> None:
    """Wrap ``cfg.model`` in ``cfg.tta_model`` and test on ``cfg.tta_pipeline`` (``--tta``).

    As mmdetection's ``tools/test.py``: a missing ``tta_model`` becomes ``DetTTAModel`` with
    NMS at IoU 0.5 and 100 boxes per image; a missing ``tta_pipeline`` becomes the test
    dataset's pipeline (of the innermost dataset of a wrapper) with its last step, the
    packing, replaced by a ``TestTimeAug`` that packs a flipped and an unflipped view with
    ``flip``/``flip_direction`` in the meta. Either default comes with a warning. The
    pipeline is set on ``test_dataloader.dataset`` itself, wrapper or not, as there.
    """
    import warnings
    from copy import deepcopy

    from mmengine.config import ConfigDict
    if 'tta_model' not in cfg:
        warnings.warn('--tta: the config has no tta_model; using DetTTAModel with '
                      'nms iou_threshold=0.5 and max_per_img=100')
        cfg.tta_model = dict(type='DetTTAModel',
                             tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                                          max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('--tta: the config has no tta_pipeline; using the test pipeline with '
                      'flipped and unflipped views')
        dataset_cfg = cfg.test_dataloader.dataset
        while 'dataset' in dataset_cfg:  # e.g. a ClassBalancedDataset around the real one
            dataset_cfg = dataset_cfg['dataset']
        cfg.tta_pipeline = deepcopy(dataset_cfg.pipeline)
        pack_views = dict(type='PackDetInputs',
                          meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                     'scale_factor', 'flip', 'flip_direction'))
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                        [pack_views]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    # cheap checks first: they need neither torch nor the registries
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl/.pickle file, got {args.out}')
    if args.report is not None and args.out is None:
        args.out = osp.join(args.report, 'results.pkl')  # the report reads them back
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    setup_work_dir(cfg, args.config, args.work_dir)
    note_run('test', args, cfg)  # for the message of Ctrl-C
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_drawing(cfg, args.show, args.show_dir, args.wait_time)
    if args.tta:
        enable_tta(cfg)

    from mmdet_lite.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    prepare_cpu_distributed(cfg)
    runner = build_runner(cfg)
    if not args.allow_partial_load:
        from mmdet_lite.engine.weights_fit import WeightsFitCheckHook
        runner.register_hook(WeightsFitCheckHook(
            args.checkpoint, hint='pass --allow-partial-load to test anyway (those weights '
            'stay randomly initialised)'))
    if not args.no_fast_path or args.compile:
        from mmdet_lite.engine.hooks import FastInferenceHook
        fast = not args.no_fast_path
        runner.register_hook(FastInferenceHook(fuse_bn=fast, channels_last=fast,
                                               inference_mode=fast, compile=args.compile))
    dump = None
    if args.out is not None:
        from mmdet_lite.evaluation.metrics.dump_results import AtomicDumpResults
        # first: the Evaluator runs its metrics in order, so a failing metric comes after
        dump = AtomicDumpResults(out_file_path=args.out)
        runner.test_evaluator.metrics.insert(0, dump)
    from mmdet_lite.engine import allow_unsafe_checkpoint
    try:
        with allow_unsafe_checkpoint(*args.trust_checkpoint):
            metrics = runner.test()
    except BaseException:
        if dump is not None and dump.written:
            print(f'note: the predictions were saved to {args.out} before the failure',
                  file=sys.stderr)
        raise
    if args.report is not None:
        write_html_report(cfg, args, metrics)


def write_html_report(cfg, args: argparse.Namespace, metrics: dict) -> None:
    """``--report``: the HTML report of the predictions just dumped to ``args.out``, with
    the metrics the test computed; training curves if the checkpoint sits in a work dir."""
    from mmengine.dist import is_main_process
    if not is_main_process():  # the predictions were gathered on rank 0
        return
    from mmdet_lite.analysis.report import load_results, write_report
    path = write_report(
        cfg, load_results(args.out), args.report,
        work_dir=osp.dirname(osp.abspath(args.checkpoint)), metrics=metrics,
        require_training_log=False,
        facts=[f'config: {args.config}', f'checkpoint: {args.checkpoint}',
               f'predictions: {args.out}'])
    print(f'report written to {path}')


if __name__ == '__main__':
    main()
