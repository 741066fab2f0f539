"""Training history of a work dir, read from mmengine's ``vis_data`` json logs.

Each run of ``tools/train.py`` writes ``WORK_DIR/<timestamp>/vis_data/scalars.json`` (and
the same lines in ``<timestamp>.json``): one json object per line, training lines with
``iter`` and ``step`` (the global iteration; ``epoch`` in epoch-based runs), validation lines
with the metrics (``coco/bbox_mAP`` ...) and ``step`` (the epoch, or the iteration in
iteration-based runs). A resumed training is a second run dir that goes on where the first
stopped; :func:`read_training_log` joins such runs into one history.
"""
import glob
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


@dataclass
class TrainingLog:
    """The logged lines of one training, in step order.

    Attributes:
        train (list[dict]): Training lines (``loss``, ``loss_*``, ``lr``, ``iter``, ``step``).
        val (list[dict]): Validation lines (metrics and ``step``).
        files (list[str]): The json logs they came from, oldest first.
    """
    train: List[dict] = field(default_factory=list)
    val: List[dict] = field(default_factory=list)
    files: List[str] = field(default_factory=list)

    @property
    def by_epoch(self) -> bool:
        """Whether validation steps are epochs (training lines carry ``epoch``)."""
        return any('epoch' in line for line in self.train)

    def loss_curves(self) -> Dict[str, Tuple[List[int], List[float]]]:
        """``{name: (iterations, values)}`` of ``loss`` and each ``loss_*`` term."""
        names = sorted({k for line in self.train for k in line if k.startswith('loss')},
                       key=lambda k: (k != 'loss', k))  # the total first
        return {name: ([line['step'] for line in self.train if name in line],
                       [line[name] for line in self.train if name in line])
                for name in names}

    def metric_curves(self, suffix: str = 'mAP') -> Dict[str, Tuple[List[int], List[float]]]:
        """``{name: (steps, values)}`` of the validation metrics named ``*{suffix}``
        (e.g. ``coco/bbox_mAP``, ``pascal_voc/mAP``); steps are epochs or iterations."""
        names = sorted({k for line in self.val for k in line if k.endswith(suffix)})
        return {name: ([line['step'] for line in self.val if name in line],
                       [line[name] for line in self.val if name in line])
                for name in names}


def read_json_log(path: str) -> Tuple[List[dict], List[dict]]:
    """Split one json log into training lines (with ``iter``) and the other (validation)
    lines, in file order.

    Raises:
        ValueError: A line is not a json object.
    """
    train, val = [], []
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
            (train if 'iter' in entry else val).append(entry)
    return train, val


def _run_logs(work_dir: str) -> List[str]:
    """One json log per run under ``work_dir`` (or of ``work_dir`` itself, a run dir),
    oldest run first; ``scalars.json`` where a run has it."""
    logs = []
    run_dirs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data'))) + \
        ([osp.join(work_dir, 'vis_data')] if osp.isdir(osp.join(work_dir, 'vis_data')) else [])
    for vis_dir in run_dirs:
        scalars = osp.join(vis_dir, 'scalars.json')
        candidates = [scalars] if osp.isfile(scalars) else sorted(
            glob.glob(osp.join(vis_dir, '*.json')))
        logs += candidates[:1]
    return logs


def read_training_log(work_dir: str) -> Optional[TrainingLog]:
    """The history of the latest training in ``work_dir``, resumed runs joined.

    Runs are taken from the newest one with training lines backwards, as long as each
    earlier run ends before the later part starts (a resume); a run that overlaps it was
    an earlier training from scratch and is left out. Test runs (no training lines) are
    skipped.

    Args:
        work_dir (str): A ``tools/train.py`` work dir (with timestamped run dirs) or one
            run dir.

    Returns:
        TrainingLog | None: None when no run there has training lines.
    """
    runs = []
    for path in _run_logs(work_dir):
        train, val = read_json_log(path)
        if train:
            runs.append((path, train, val))
    if not runs:
        return None
    joined = [runs[-1]]
    for run in reversed(runs[:-1]):
        if run[1][-1]['step'] < joined[0][1][0]['step']:
            joined.insert(0, run)
        else:
            break
    log = TrainingLog()
    val_by_step: Dict[int, dict] = {}
    for path, train, val in joined:
        log.files.append(path)
        log.train += train
        for line in val:  # a resumed run may validate a step again: the later one wins
            val_by_step[line.get('step', len(val_by_step))] = line
    log.val = [val_by_step[step] for step in sorted(val_by_step)]
    return log
