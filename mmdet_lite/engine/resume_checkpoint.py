"""Which checkpoint a bare ``--resume`` continues from.

mmengine's ``Runner`` (``resume=True``, no ``load_from``) takes the path written in
``<work_dir>/last_checkpoint`` as it is: a path from another machine (a work dir copied or
mounted elsewhere) or one naming a deleted file makes the resume fail, and without the
pointer file it trains from scratch next to the checkpoints it could have resumed.
:func:`find_resume_checkpoint` checks the pointer and falls back to the newest checkpoint
file of the work dir, saying so.
"""
import logging
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

from mmengine.logging import print_log

# CheckpointHook's default file names (filename_tmpl 'epoch_{}.pth' / 'iter_{}.pth')
_CHECKPOINT_NAME = re.compile(r'(epoch|iter)_(\d+)\.pth')


def read_checkpoint_pointer(work_dir: str) -> Optional[str]:
    """The path written in ``<work_dir>/last_checkpoint``, or None without that file.

    Args:
        work_dir (str): The work dir.

    Returns:
        str or None: The path, stripped of surrounding white space (possibly empty).
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip()


def _is_usable(path: str) -> bool:
    # an empty file is what a full disk or a crash leaves behind: not worth loading
    return osp.isfile(path) and osp.getsize(path) > 0


def newest_checkpoint_file(work_dir: str) -> Optional[str]:
    """The newest non-empty ``epoch_<n>.pth`` or ``iter_<n>.pth`` directly in ``work_dir``.

    Newest is the highest ``n`` of its kind; when both kinds are there (a run that switched
    loops), the more recently written of the two candidates (epochs and iterations do not
    compare).

    Args:
        work_dir (str): The work dir.

    Returns:
        str or None: Its path, or None when there is none.
    """
    if not osp.isdir(work_dir):
        return None
    best = {}  # kind -> (number, mtime, path)
    for name in os.listdir(work_dir):
        match = _CHECKPOINT_NAME.fullmatch(name)
        path = osp.join(work_dir, name)
        if match is None or not _is_usable(path):
            continue
        candidate = (int(match.group(2)), osp.getmtime(path), path)
        kind = match.group(1)
        if kind not in best or candidate[:2] > best[kind][:2]:
            best[kind] = candidate
    if not best:
        return None
    candidates: List[Tuple[int, float, str]] = list(best.values())
    return max(candidates, key=lambda c: (c[1], c[0]))[2]


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint that ``--resume`` without a path continues from.

    The one ``<work_dir>/last_checkpoint`` names, if it is a non-empty file; otherwise the
    newest checkpoint file in ``work_dir`` (:func:`newest_checkpoint_file`), with a warning
    naming the pointer's path and the one used instead.

    Args:
        work_dir (str): The work dir.

    Returns:
        str or None: The checkpoint path, or None when the work dir holds no checkpoint.
    """
    named = read_checkpoint_pointer(work_dir)
    if named and _is_usable(named):
        return named
    newest = newest_checkpoint_file(work_dir)
    if newest is None:
        if named:
            print_log(f'--resume: {osp.join(work_dir, "last_checkpoint")} names {named}, '
                      f'which {_what_is_wrong(named)}, and {work_dir} holds no epoch_*.pth or '
                      'iter_*.pth checkpoint: training from the start', logger='current',
                      level=logging.WARNING)
        return None
    if named is None:
        problem = f'{work_dir} has no last_checkpoint file'
    elif not named:
        problem = f'{osp.join(work_dir, "last_checkpoint")} is empty'
    else:
        problem = (f'{osp.join(work_dir, "last_checkpoint")} names {named}, which '
                   f'{_what_is_wrong(named)}')
    print_log(f'--resume: {problem}; resuming from the newest checkpoint in the work dir '
              f'instead: {newest}', logger='current', level=logging.WARNING)
    return newest


def _what_is_wrong(path: str) -> str:
    if not osp.exists(path):
        return 'does not exist (deleted, or a path on another machine)'
    if not osp.isfile(path):
        return 'is not a file'
    return 'is empty'
