"""Plot training curves or summarise training speed from mmengine json logs.

Usage::

    python tools/analysis_tools/analyze_logs.py plot_curve LOG.json [LOG2.json ...]
        [--keys loss bbox_mAP] [--legend NAME ...] [--title T] --out curve.png
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG.json [...]
        [--include-outliers]

A log is ``WORK_DIR/<timestamp>/vis_data/<timestamp>.json`` (or ``scalars.json``): one
dict per line, training lines with ``epoch`` (epoch-based runs), ``iter`` and ``step``
(the global iteration), validation lines with the metrics (``coco/bbox_mAP`` ...) and
``step`` (the epoch, or the iteration for iteration-based runs). A key matches a logged
name exactly or as its last ``/`` part: ``bbox_mAP`` plots ``coco/bbox_mAP``. Curves share
one x axis, the training iteration; validation points sit at the iteration where their
epoch ended.
"""
import argparse
import json
import os.path as osp
from typing import Dict, List, Tuple


from mmdet_lite.apis.cli import exit_on_user_error

Log = Dict[str, List[dict]]  # 'train' and 'val' lines of one log


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Analyze mmengine json logs')
    commands = parser.add_subparsers(dest='command', required=True)
    plot = commands.add_parser('plot_curve', help='plot curves of logged values')
    plot.add_argument('json_logs', nargs='+', help='json logs (vis_data/*.json)')
    plot.add_argument('--keys', nargs='+', default=['bbox_mAP'],
                      help='values to plot, e.g. loss loss_cls bbox_mAP')
    plot.add_argument('--legend', nargs='+', default=None,
                      help='a name per log, or per log and key (log-major order)')
    plot.add_argument('--title', default=None, help='figure title')
    plot.add_argument('--out', required=True, help='output image, e.g. curve.png')
    plot.add_argument('--style', default='whitegrid',
                      help='accepted for mmdetection compatibility (unused)')
    speed = commands.add_parser('cal_train_time', help='summarise the time per iteration')
    speed.add_argument('json_logs', nargs='+', help='json logs (vis_data/*.json)')
    speed.add_argument('--include-outliers', action='store_true',
                       help="keep each epoch's first iteration (slow: warm-up, data "
                       'loader start) in the averages')
    return parser.parse_args(argv)


def load_json_log(path: str) -> Log:
    """Split a log into training lines (with ``iter``) and validation lines (without).

    Args:
        path (str): The json log.

    Returns:
        dict: ``train`` and ``val`` lists of dicts, in file order.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'json log not found: {path}')
    log: Log = dict(train=[], val=[])
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path}, line {number}: not a json object ({err.msg}); '
                                 'expected an mmengine vis_data/*.json log') from None
            if not isinstance(entry, dict):
                raise ValueError(f'{path}, line {number}: expected a json object, got '
                                 f'{type(entry).__name__}')
            log['train' if 'iter' in entry else 'val'].append(entry)
    if not log['train'] and not log['val']:
        raise ValueError(f'{path} is empty: no logged steps')
    return log


def find_key(log: Log, key: str, path: str) -> Tuple[str, str]:
    """The ``(part, logged name)`` a requested key refers to, trying training lines first.

    Raises:
        KeyError: Nothing matches; the message lists the keys the log has.
    """
    for part in ('train', 'val'):
        names = {name for entry in log[part] for name in entry}
        matches = sorted(n for n in names if n == key or n.split('/')[-1] == key)
        if key in names:
            return part, key
        if matches:
            return part, matches[0]
    available = sorted({n for part in log.values() for entry in part for n in entry} -
                       {'epoch', 'iter', 'step'})
    raise KeyError(f'key {key!r} is not in {path}; available keys: {", ".join(available)}')


def curve(log: Log, part: str, name: str) -> Tuple[List[float], List[float]]:
    """x (training iteration) and y values of one logged name."""
    entries = [e for e in log[part] if name in e]
    if part == 'train':
        return [e['step'] for e in entries], [e[name] for e in entries]
    # validation steps are epochs when training logged epochs: move each to its last iter
    last_iter_of_epoch = {}
    for entry in log['train']:
        if 'epoch' in entry:
            last_iter_of_epoch[entry['epoch']] = entry['step']
    xs = [last_iter_of_epoch.get(e['step'], e['step']) if last_iter_of_epoch else e['step']
          for e in entries]
    return xs, [e[name] for e in entries]


def plot_curve(args: argparse.Namespace) -> None:
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt

    logs = [load_json_log(path) for path in args.json_logs]
    num_logs, num_keys = len(logs), len(args.keys)
    legend = args.legend
    if legend is not None and len(legend) not in (num_logs, num_logs * num_keys):
        raise ValueError(f'--legend needs one name per log ({num_logs}) or per log and key '
                         f'({num_logs * num_keys}), got {len(legend)}')
    fig, axes = plt.subplots(num_keys, 1, figsize=(8, 3.2 * num_keys), squeeze=False)
    for k, (key, ax) in enumerate(zip(args.keys, axes[:, 0])):
        for i, (path, log) in enumerate(zip(args.json_logs, logs)):
            part, name = find_key(log, key, path)
            xs, ys = curve(log, part, name)
            if legend is None:
                label = f'{osp.basename(path)}: {name}' if num_logs > 1 else name
            else:
                label = legend[i] if len(legend) == num_logs else legend[i * num_keys + k]
            ax.plot(xs, ys, marker='o' if part == 'val' else None, markersize=4,
                    label=label)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend()
    axes[-1, 0].set_xlabel('iter')
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f'saved the curves of {", ".join(args.keys)} to {args.out}')


def cal_train_time(args: argparse.Namespace) -> None:
    import numpy as np

    for path in args.json_logs:
        log = load_json_log(path)
        per_epoch: Dict[int, List[float]] = {}
        for entry in log['train']:
            if 'time' in entry:
                per_epoch.setdefault(entry.get('epoch', 1), []).append(entry['time'])
        if not per_epoch:
            raise KeyError(f"{path} has no 'time' in its training lines")
        if not args.include_outliers:
            per_epoch = {e: times[1:] or times for e, times in per_epoch.items()}
        epochs = sorted(per_epoch)
        means = np.array([np.mean(per_epoch[e]) for e in epochs])
        all_times = np.concatenate([per_epoch[e] for e in epochs])
        print(f'-----Analyze train time of {path}-----')
        print(f'slowest epoch {epochs[int(means.argmax())]}, average time is '
              f'{means.max():.4f} s/iter')
        print(f'fastest epoch {epochs[int(means.argmin())]}, average time is '
              f'{means.min():.4f} s/iter')
        print(f'time std over epochs is {means.std():.4f}')
        print(f'average iter time: {all_times.mean():.4f} s/iter\n')


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    if args.command == 'plot_curve':
        plot_curve(args)
    else:
        cal_train_time(args)


if __name__ == '__main__':
    main()
