"""Evaluate saved predictions without running the model.

``PKL_RESULTS`` is the file ``tools/test.py CONFIG CKPT --out PKL_RESULTS`` writes (one dict
per image; instance masks as tensors or already RLE-encoded, both are accepted). The
config's evaluator gets the test dataset's metainfo and runs on the saved predictions,
giving the metrics ``tools/test.py`` printed for them.

As mmdetection's ``eval_metric.py``, the evaluator is the config's ``val_evaluator`` (the
dataset its ``test_dataloader``'s); a config without ``val_evaluator`` uses its
``test_evaluator``. Where the two differ, override ``val_evaluator`` with ``--cfg-options``
(e.g. ``val_evaluator.ann_file=...``).
"""
import argparse
import os.path as osp

from mmdet_lite.apis.cli import exit_on_user_error, load_config

EXAMPLE = """example:
  python tools/test.py configs/shapes/mask-rcnn_r18_fpn_shapes.py \\
      work_dirs/mask-rcnn_r18_fpn_shapes/epoch_10.pth --out results.pkl
  python tools/analysis_tools/eval_metric.py \\
      configs/shapes/mask-rcnn_r18_fpn_shapes.py results.pkl
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Evaluate metric of the results saved in pkl format', epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='Config of the model')
    parser.add_argument('pkl_results', help='Results in pickle format (tools/test.py --out)')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries; a key the config lacks is added')
    return parser.parse_args(argv)


def evaluate_predictions(cfg, predictions: list) -> dict:
    """Run the config's evaluator on saved predictions.

    Args:
        cfg (Config): Config with ``test_dataloader.dataset`` and ``val_evaluator`` (or
            ``test_evaluator``).
        predictions (list[dict]): What ``tools/test.py --out`` wrote.

    Returns:
        dict: Metric name (``coco/bbox_mAP`` ...) to value.
    """
    from mmengine.evaluator import Evaluator

    from mmdet_lite.registry import DATASETS

    evaluator_cfg = cfg.get('val_evaluator') or cfg.get('test_evaluator')
    if evaluator_cfg is None:
        raise KeyError('the config has no val_evaluator (nor test_evaluator) to evaluate '
                       'the predictions with')
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    evaluator = Evaluator(evaluator_cfg)
    evaluator.dataset_meta = dataset.metainfo
    return evaluator.offline_evaluate(predictions)


@exit_on_user_error
def main(argv=None) -> dict:
    args = parse_args(argv)
    if not osp.isfile(args.pkl_results):
        raise FileNotFoundError(f'prediction file not found: {args.pkl_results} '
                                '(write one with tools/test.py CONFIG CKPT --out FILE.pkl)')
    cfg = load_config(args.config, args.cfg_options)

    import mmengine
    from mmengine.registry import init_default_scope

    from mmdet_lite.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope') or 'mmdet_lite')
    predictions = mmengine.load(args.pkl_results)
    if not isinstance(predictions, list):
        raise TypeError(f'{args.pkl_results} holds a {type(predictions).__name__}; expected '
                        'the list of per-image predictions tools/test.py --out writes')
    eval_results = evaluate_predictions(cfg, predictions)
    print(eval_results)
    return eval_results


if __name__ == '__main__':
    main()
