"""Print a config with its ``_base_`` files and ``--cfg-options`` merged in.

Usage::

    python tools/misc/print_config.py CONFIG [--cfg-options KEY=VALUE ...]
"""
import argparse


from mmdet_lite.apis.cli import exit_on_user_error, load_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Print the fully merged config')
    parser.add_argument('config', help='config file')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries, e.g. model.backbone.depth=101')
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    print(f'Config:\n{cfg.pretty_text}')


if __name__ == '__main__':
    main()
