"""Draw what the training pipeline feeds the model: images with their boxes and masks.

Usage::

    python tools/analysis_tools/browse_dataset.py CONFIG [--output-dir DIR] [--not-show]
        [--show-interval 2] [--cfg-options KEY=VALUE ...]

Each sample of ``cfg.train_dataloader.dataset`` goes through the training pipeline (resize,
flip, crop, Mosaic / MixUp through MultiImageMixDataset or their cached versions ...) and
is drawn with its ground truth, in the pipeline's output coordinates, by the config's
visualizer; with ``--output-dir`` each drawing is saved there as a PNG named after the image
(with the sample index appended if the pipeline replaced the image by another one).
"""
import argparse
import os.path as osp


from mmdet_lite.apis.cli import exit_on_user_error, load_config

_FILE_ONLY_BACKENDS = ('agg', 'pdf', 'ps', 'svg', 'cairo', 'template')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Browse a dataset through its pipeline')
    parser.add_argument('config', help='config file')
    parser.add_argument('--output-dir', default=None, help='save the drawings here')
    parser.add_argument('--not-show', action='store_true', help='do not open a window')
    parser.add_argument('--show-interval', type=float, default=2,
                        help='seconds each image is shown')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries')
    return parser.parse_args(argv)


def check_can_show() -> None:
    """Raise if there is no window to show images in (headless: matplotlib's Agg)."""
    import matplotlib.pyplot as plt
    if plt.get_backend().lower() in _FILE_ONLY_BACKENDS:
        raise ValueError('no display to show images on (matplotlib backend '
                         f'{plt.get_backend()!r}); pass --not-show and --output-dir DIR '
                         'to save the drawings instead')


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    if args.not_show and args.output_dir is None:
        raise ValueError('--not-show without --output-dir would draw nothing anywhere; '
                         'give --output-dir DIR')
    cfg = load_config(args.config, args.cfg_options)
    if not args.not_show:
        check_can_show()

    from mmengine.registry import init_default_scope
    from mmengine.utils import ProgressBar

    from mmdet_lite.apis import init_visualizer
    from mmdet_lite.registry import DATASETS
    from mmdet_lite.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope') or 'mmdet_lite')  # for the pipeline's Compose
    if 'dataset' not in cfg.get('train_dataloader', {}):
        raise KeyError(f'the config has no train_dataloader.dataset to browse: {args.config}')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    visualizer = init_visualizer(cfg, dataset.metainfo)

    progress = ProgressBar(len(dataset))
    used_names = set()
    for index in range(len(dataset)):
        item = dataset[index]
        sample = item['data_samples']
        img = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1]  # [H, W, 3] BGR -> RGB
        img_path = sample.metainfo.get('img_path')
        # A PNG named after the (first) image: lossless, so thin boxes and mask edges
        # stay as drawn.
        stem = osp.splitext(osp.basename(img_path))[0] if img_path else f'{index:06d}'
        name = f'{stem}.png'
        if name in used_names:
            # When the pipeline gives up on a sample (e.g. RandomCrop without boxes), the
            # dataset returns another image: keep one drawing per index all the same.
            name = f'{stem}_{index:06d}.png'
        used_names.add(name)
        visualizer.add_datasample(
            name, img, data_sample=sample, draw_pred=False, show=not args.not_show,
            wait_time=args.show_interval,
            out_file=None if args.output_dir is None else osp.join(args.output_dir, name))
        progress.update()


if __name__ == '__main__':
    main()
