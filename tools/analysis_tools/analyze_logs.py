"""Plot training curves or summarise training speed of one or several runs.

Usage::

    python tools/analysis_tools/analyze_logs.py plot_curve RUN [RUN ...]
        [--keys loss bbox_mAP] [--legend NAME ...] [--title T] --out curve.png
    python tools/analysis_tools/analyze_logs.py cal_train_time RUN [RUN ...]
        [--include-outliers]

A ``RUN`` is a json log or a folder holding one: a work dir (the log of its latest run is
used), a ``<timestamp>/`` run folder or a ``vis_data/`` folder. The log is
``WORK_DIR/<timestamp>/vis_data/<timestamp>.json`` (or ``scalars.json``): one dict per line,
training lines with ``epoch`` (epoch-based runs), ``iter`` and ``step`` (the global
iteration), validation lines with the metrics (``coco/bbox_mAP`` ...) and ``step`` (the
epoch, or the iteration for iteration-based runs). A key matches a logged name exactly or as
its last ``/`` part: ``bbox_mAP`` plots ``coco/bbox_mAP``.

As in mmdetection, every (run, key) pair is one curve on one shared axes, x being the
training iteration (validation points sit at the iteration where their epoch ended). The
legend names a curve by its key for a single run, by the run (its work dir name) for
several runs and one key, and by ``run: key`` otherwise; ``--legend`` overrides the run
names (one per run) or every label (one per run and key, run-major). ``cal_train_time``
reports each run, then, for several runs, their average iteration times side by side.
"""
import argparse
import glob
import os.path as osp
from collections import Counter
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple


from mmdet_lite.apis.cli import exit_on_user_error

Log = Dict[str, List[dict]]  # 'train' and 'val' lines of one log

EPILOG = """examples:
  # compare the mAP of two trainings (work dirs), one curve each
  python tools/analysis_tools/analyze_logs.py plot_curve \\
      work_dirs/retinanet_r18_fpn_shapes work_dirs/fcos_r18_fpn_shapes \\
      --keys bbox_mAP --out map.png
  # losses of one run
  python tools/analysis_tools/analyze_logs.py plot_curve \\
      work_dirs/faster-rcnn_r18_fpn_shapes --keys loss_cls loss_bbox --out losses.png
  python tools/analysis_tools/analyze_logs.py cal_train_time \\
      work_dirs/retinanet_r18_fpn_shapes work_dirs/fcos_r18_fpn_shapes
"""
RUNS_HELP = 'json logs (vis_data/*.json) or work dirs (the latest run in each)'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Analyze mmengine json logs', epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    plot = commands.add_parser('plot_curve', help='plot curves of logged values',
                               epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    plot.add_argument('json_logs', nargs='+', help=RUNS_HELP)
    plot.add_argument('--keys', nargs='+', default=['bbox_mAP'],
                      help='values to plot, e.g. loss loss_cls bbox_mAP')
    plot.add_argument('--legend', nargs='+', default=None,
                      help='a name per run, or per run and key (run-major order)')
    plot.add_argument('--title', default=None, help='figure title')
    plot.add_argument('--out', required=True, help='output image, e.g. curve.png')
    # accepted for mmdetection compatibility; curves always span the whole log, x being
    # the iteration, and are written to --out with matplotlib's Agg backend
    plot.add_argument('--style', default='whitegrid', help='(unused)')
    plot.add_argument('--start-epoch', default='1', help='(unused)')
    plot.add_argument('--eval-interval', default='1', help='(unused)')
    plot.add_argument('--backend', default=None, help='(unused)')
    speed = commands.add_parser('cal_train_time', help='summarise the time per iteration',
                                epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    speed.add_argument('json_logs', nargs='+', help=RUNS_HELP)
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
    from mmdet_lite.analysis.training_log import read_json_log
    train, val = read_json_log(path)
    log: Log = dict(train=train, val=val)
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


def resolve_log(path: str) -> str:
    """The json log a command-line argument names.

    Args:
        path (str): A json log; or a folder: a work dir (its latest run), a run folder
            (``<timestamp>/``) or a ``vis_data/`` folder.

    Returns:
        str: ``.../<timestamp>/vis_data/<timestamp>.json`` (``scalars.json`` when that is
        the only json there) of the latest run, latest meaning the last timestamp folder
        name with a vis_data json (a ``tools/test.py`` run leaves none).

    Raises:
        FileNotFoundError: Neither a file nor a folder with such a log.
    """
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'json log not found: {path}')
    if glob.glob(osp.join(path, 'vis_data', '*.json')):
        vis_dir = osp.join(path, 'vis_data')  # a run folder
    elif osp.basename(osp.normpath(path)) == 'vis_data':
        vis_dir = path
    else:  # a work dir: one run folder per start of training (or testing)
        runs = sorted(osp.dirname(osp.dirname(p))
                      for p in glob.glob(osp.join(path, '*', 'vis_data', '*.json')))
        if not runs:
            raise FileNotFoundError(
                f'no json log in {path}: expected a work dir with <timestamp>/vis_data/'
                '<timestamp>.json (written by tools/train.py), a run folder or a json file')
        vis_dir = osp.join(runs[-1], 'vis_data')
    logs = sorted(glob.glob(osp.join(vis_dir, '*.json')))
    named = [p for p in logs if osp.basename(p) != 'scalars.json']
    if not (named or logs):
        raise FileNotFoundError(f'no json log in {vis_dir}')
    return (named or logs)[-1]


def run_name(log_path: str) -> str:
    """What to call a run in a legend: the work dir name of a ``<work_dir>/<timestamp>/
    vis_data/*.json`` log, else the log's file name without ``.json``."""
    parts = osp.normpath(osp.abspath(log_path)).split(osp.sep)
    if len(parts) >= 4 and parts[-2] == 'vis_data':
        return parts[-4]
    return osp.splitext(parts[-1])[0]


class Run(NamedTuple):
    """One log to plot or time: its legend name, its path and its lines."""
    name: str
    path: str
    log: Log


def load_runs(paths: Sequence[str]) -> List[Run]:
    """Resolve (:func:`resolve_log`), load and name each log; names repeated across runs
    get ``#1``, ``#2`` ... appended so that legends tell them apart."""
    resolved = [resolve_log(path) for path in paths]
    names = [run_name(path) for path in resolved]
    counts = Counter(names)
    seen: Counter = Counter()
    for i, name in enumerate(names):
        if counts[name] > 1:
            seen[name] += 1
            names[i] = f'{name} #{seen[name]}'
    return [Run(name, path, load_json_log(path)) for name, path in zip(names, resolved)]


def curve_labels(runs: Sequence[Run], names: List[List[str]],
                 legend: Optional[Sequence[str]] = None) -> List[str]:
    """Legend labels of the curves, log-major (for each run, each key).

    Args:
        runs (Sequence[Run]): The runs.
        names (list[list[str]]): Per run, the logged name plotted for each key.
        legend (Sequence[str], optional): One name per run (the logged name is appended
            when several keys are plotted) or one per curve. By default the logged name
            for one run, the run name for several runs and one key, and ``run: name``
            otherwise.

    Returns:
        list[str]: ``len(runs) * num_keys`` labels.
    """
    num_runs, num_keys = len(runs), len(names[0])
    if legend is not None and len(legend) not in (num_runs, num_runs * num_keys):
        raise ValueError(f'--legend needs one name per log ({num_runs}) or per log and key '
                         f'({num_runs * num_keys}), got {len(legend)}')
    if legend is not None and len(legend) == num_runs * num_keys:
        return list(legend)
    run_names = [run.name for run in runs] if legend is None else list(legend)
    labels = []
    for run_label, run_keys in zip(run_names, names):
        for name in run_keys:
            if legend is None and num_runs == 1:
                labels.append(name)
            elif num_keys == 1:
                labels.append(run_label)
            else:
                labels.append(f'{run_label}: {name}')
    return labels


def plot_curves(runs: Sequence[Run], keys: Sequence[str],
                legend: Optional[Sequence[str]] = None, title: Optional[str] = None,
                out: Optional[str] = None) -> list:
    """Draw one curve per (run, key) on one axes, as mmdetection does, and save it.

    The x axis is the training iteration; validation values sit at the last iteration of
    their epoch and are drawn with markers.

    Args:
        runs (Sequence[Run]): The runs (:func:`load_runs`).
        keys (Sequence[str]): Logged names or their last ``/`` part (``bbox_mAP``).
        legend (Sequence[str], optional): See :func:`curve_labels`.
        title (str, optional): Figure title.
        out (str, optional): Image file to write.

    Returns:
        list[matplotlib.lines.Line2D]: The curves drawn, log-major; ``get_label()``,
        ``get_xdata()``, ``get_ydata()`` give what was plotted and ``line.axes`` the axes
        (with its legend).
    """
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt

    found = [[find_key(run.log, key, run.path) for key in keys] for run in runs]
    labels = iter(curve_labels(runs, [[name for _, name in parts] for parts in found],
                               legend))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lines = []
    for run, run_parts in zip(runs, found):
        for key, (part, name) in zip(keys, run_parts):
            print(f'plot curve of {run.path}, metric is {key}')
            xs, ys = curve(run.log, part, name)
            line, = ax.plot(xs, ys, marker='o' if part == 'val' else None, markersize=4,
                            linewidth=1 if part == 'val' else 0.8, label=next(labels))
            lines.append(line)
    ax.set_xlabel('iter')
    ax.set_ylabel(keys[0] if len(keys) == 1 else 'value')
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    if out:
        fig.savefig(out, dpi=100)
    plt.close(fig)
    return lines


def plot_curve(args: argparse.Namespace) -> list:
    runs = load_runs(args.json_logs)
    lines = plot_curves(runs, args.keys, args.legend, args.title, args.out)
    print(f'saved the curves of {", ".join(args.keys)} to {args.out}')
    return lines


def train_time(log: Log, path: str, include_outliers: bool = False) -> Dict[str, float]:
    """Time per training iteration of one log.

    Args:
        log (dict): A loaded log (:func:`load_json_log`).
        path (str): Its file, for messages.
        include_outliers (bool): Keep each epoch's first logged time (slow: warm-up and
            data loader start).

    Returns:
        dict: ``slowest_epoch``, ``slowest`` (its mean s/iter), ``fastest_epoch``,
        ``fastest``, ``std`` (of the epoch means) and ``average`` (over all iterations).
    """
    import numpy as np

    per_epoch: Dict[int, List[float]] = {}
    for entry in log['train']:
        if 'time' in entry:
            per_epoch.setdefault(entry.get('epoch', 1), []).append(entry['time'])
    if not per_epoch:
        raise KeyError(f"{path} has no 'time' in its training lines")
    if not include_outliers:
        per_epoch = {e: times[1:] or times for e, times in per_epoch.items()}
    epochs = sorted(per_epoch)
    means = np.array([np.mean(per_epoch[e]) for e in epochs])
    all_times = np.concatenate([per_epoch[e] for e in epochs])
    return dict(slowest_epoch=epochs[int(means.argmax())], slowest=float(means.max()),
                fastest_epoch=epochs[int(means.argmin())], fastest=float(means.min()),
                std=float(means.std()), average=float(all_times.mean()))


def cal_train_time(args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    runs = load_runs(args.json_logs)
    stats = {}
    for run in runs:
        times = train_time(run.log, run.path, args.include_outliers)
        stats[run.name] = times
        print(f'-----Analyze train time of {run.path}-----')
        print(f'slowest epoch {times["slowest_epoch"]}, average time is '
              f'{times["slowest"]:.4f} s/iter')
        print(f'fastest epoch {times["fastest_epoch"]}, average time is '
              f'{times["fastest"]:.4f} s/iter')
        print(f'time std over epochs is {times["std"]:.4f}')
        print(f'average iter time: {times["average"]:.4f} s/iter\n')
    if len(runs) > 1:  # the comparison, fastest run first
        width = max(len(name) for name in stats)
        print(f'{"run":<{width}}  average s/iter')
        for name, times in sorted(stats.items(), key=lambda item: item[1]['average']):
            print(f'{name:<{width}}  {times["average"]:.4f}')
    return stats


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    if args.command == 'plot_curve':
        return plot_curve(args)
    return cal_train_time(args)


if __name__ == '__main__':
    main()
