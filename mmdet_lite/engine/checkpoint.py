"""Load checkpoints safely on torch >= 2.6, where ``torch.load`` defaults to weights only.

The problem: mmengine 0.10.7 loads local files with ``torch.load(filename, map_location)``.
Since torch 2.6 that means ``weights_only=True``, which refuses every pickled global that is
not a tensor, a container or a plain value. Checkpoints written by mmengine's Runner hold
more than that: the message hub stores ``HistoryBuffer`` objects (each with numpy arrays,
numpy scalars and its statistic methods, pickled as ``getattr(HistoryBuffer, 'mean')``), so
``--resume`` failed with ``Unsupported global: mmengine...HistoryBuffer`` (or, first,
``numpy._core.multiarray.scalar``). Loading only model weights (``load_from``,
``init_detector``, ``init_cfg=dict(type='Pretrained')``) failed the same way whenever the
file was such a Runner checkpoint: the whole file is unpickled either way. Bare state dicts
loaded fine.

The choice: replace mmengine's loader for local paths (``CheckpointLoader`` scheme ``''``,
registered with ``force=True`` when :mod:`mmdet_lite.engine` is imported) by
:func:`load_local_checkpoint`. Every local load in the process goes through it: the Runner's
``load_from`` and ``resume``, mmengine's ``load_checkpoint`` used by the inference API and by
``Pretrained`` initialisation. A Runner subclass would have covered only the Runner, and
monkeypatching ``torch.load`` would have changed every library in the process.

:func:`load_local_checkpoint` always starts with ``torch.load(..., weights_only=True)``,
allow-listing exactly the globals mmengine's own checkpoints contain (``HistoryBuffer``,
numpy arrays, numeric/string dtypes and scalars, and a ``getattr`` that only looks up
``HistoryBuffer`` statistic methods); nothing in that list runs code chosen by the file.
A file that needs anything else is loaded with full unpickling only when it is trusted:

- it lies under a path given to :func:`trust_checkpoints` (``tools/train.py`` trusts the
  run's own work dir while it trains, resuming included: the run wrote those files), or
- it lies under a path listed in the environment variable ``MMDET_LITE_TRUSTED_CHECKPOINTS``
  (``os.pathsep``-separated files or folders).

Otherwise :class:`UntrustedCheckpointError` says which globals were refused, why, and how
to allow them.
"""
import os
import os.path as osp
import pickle
import zipfile
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

try:
    from numpy._core import multiarray  # numpy >= 2
except ImportError:  # numpy 1
    from numpy.core import multiarray

TRUSTED_CHECKPOINTS_ENV = 'MMDET_LITE_TRUSTED_CHECKPOINTS'

# Paths trusted by the code running now (see trust_checkpoints); a list, since the same path
# may be trusted by nested contexts.
_trusted_paths: List[str] = []


class UntrustedCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint needs full unpickling (arbitrary code) and its path is not trusted."""


def _history_buffer_getattr(owner: type, name: str):
    """Stand-in for ``builtins.getattr`` in checkpoints: only ``HistoryBuffer`` methods.

    The message hub pickles each buffer's statistic methods (``min``, ``max``, ``current``,
    ``mean`` and registered ones) as ``getattr(HistoryBuffer, name)``; a general ``getattr``
    would let a file reach any attribute of any allowed object.
    """
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if owner is not HistoryBuffer or name not in allowed:
        raise pickle.UnpicklingError(
            f'checkpoint asks for getattr({getattr(owner, "__name__", owner)!r}, {name!r}); '
            f'only HistoryBuffer statistic methods ({", ".join(sorted(allowed))}) are allowed')
    return getattr(HistoryBuffer, name)


def checkpoint_safe_globals() -> List[Tuple[object, str]]:
    """The globals, beyond torch's defaults, that mmengine checkpoints need.

    Returns:
        list[tuple[object, str]]: ``(object, 'module.qualname')`` pairs for
        ``torch.serialization.safe_globals``; numpy functions are listed under both their
        numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) names, so checkpoints written
        with either load.
    """
    pairs: List[Tuple[object, str]] = [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (_history_buffer_getattr, 'builtins.getattr'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
    ]
    for core in ('numpy.core', 'numpy._core'):
        pairs += [(multiarray._reconstruct, f'{core}.multiarray._reconstruct'),
                  (multiarray.scalar, f'{core}.multiarray.scalar')]
    # dtype instances are rebuilt with __setstate__, which torch allows only for listed
    # types; object and void dtypes are left out, so arrays of Python objects are refused
    for code in '?bhilqBHILQefdgFDGSU':
        dtype_cls = type(np.dtype(code))
        pairs.append((dtype_cls, f'{dtype_cls.__module__}.{dtype_cls.__qualname__}'))
    return pairs


def _normalize(path: Union[str, os.PathLike]) -> str:
    return osp.realpath(osp.expanduser(str(path)))


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def is_trusted_checkpoint(filename: Union[str, os.PathLike]) -> bool:
    """Whether ``filename`` lies under a trusted path (:func:`trust_checkpoints` or the
    ``MMDET_LITE_TRUSTED_CHECKPOINTS`` environment variable)."""
    env_paths = [p for p in os.environ.get(TRUSTED_CHECKPOINTS_ENV, '').split(os.pathsep) if p]
    path = _normalize(filename)
    return any(_is_under(path, _normalize(root)) for root in [*_trusted_paths, *env_paths])


@contextmanager
def trust_checkpoints(*paths: Union[str, os.PathLike]) -> Iterator[None]:
    """Allow full unpickling of checkpoint files under ``paths`` inside the ``with`` block.

    Only for files whose origin you know (the run's own work dir, say): unpickling can run
    arbitrary code.

    Args:
        *paths: Checkpoint files or folders.

    Example:
        >>> with trust_checkpoints('work_dirs/my_run'):
        ...     runner.train()  # resuming from work_dirs/my_run/epoch_3.pth
    """
    added = [str(p) for p in paths]
    _trusted_paths.extend(added)
    try:
        yield
    finally:
        for path in added:
            _trusted_paths.remove(path)


def _refused_globals(filename: str) -> List[str]:
    """Names of the globals in ``filename`` a weights-only load refuses (best effort)."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # a legacy (non-zip) file cannot be scanned; the error still explains
        return []
    allowed = {name for _, name in checkpoint_safe_globals()}
    return [name for name in found if name not in allowed]


def load_local_checkpoint(filename: str, map_location: Optional[Union[str, torch.device]] = None):
    """Load a local checkpoint file: weights only, plus mmengine's own safe state.

    Args:
        filename (str): Path of the file (``~`` is expanded).
        map_location (str | torch.device, optional): As in :func:`torch.load`.

    Returns:
        dict: The checkpoint (a state dict, or ``meta``/``state_dict``/``message_hub``/...
        for a Runner checkpoint).

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        UntrustedCheckpointError: The file holds objects outside the allow-list (or is no
            pickle at all) and is not trusted.
        ValueError: torch cannot read the file (truncated, corrupt, or saved on a device
            this machine lacks).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refusal = err
    except (RuntimeError, EOFError, zipfile.BadZipFile) as err:
        # a truncated or corrupt file, or tensors saved on a device this machine lacks
        raise ValueError(f"checkpoint '{filename}' could not be loaded: "
                         f'{str(err).strip().splitlines()[0]}') from err

    if is_trusted_checkpoint(filename):
        print_log(f'{filename} cannot be loaded with weights_only=True; loading it with '
                  'full unpickling because its path is trusted', logger='current')
        return torch.load(filename, map_location=map_location, weights_only=False)
    raise UntrustedCheckpointError(_refusal_message(filename, refusal)) from refusal


def _refusal_message(filename: str, refusal: Exception) -> str:
    """Why a weights-only load of ``filename`` failed, and how to allow the file."""
    # torch's message is a page of advice; its 'WeightsUnpickler error:' part is the reason
    text = str(refusal)
    reason = text.split('WeightsUnpickler error:', 1)[-1].strip().splitlines()[0]
    refused = _refused_globals(filename)
    what = (f'holds pickled objects of types {", ".join(refused)}' if refused else
            f'cannot be read with weights_only=True ({reason})')
    return (f"checkpoint '{filename}' {what}; mmdet_lite loads checkpoints with "
            'torch.load(weights_only=True) because full unpickling can run arbitrary code '
            'from the file. If you trust where the file came from, allow it with the '
            f'environment variable {TRUSTED_CHECKPOINTS_ENV}={osp.abspath(filename)} (files '
            f"or folders, separated by '{os.pathsep}') or in Python with "
            '`with mmdet_lite.engine.trust_checkpoints(path): ...`')


def load_from_local(filename: str, map_location=None):
    """:func:`load_local_checkpoint` under the name mmengine logs ("by local backend")."""
    return load_local_checkpoint(filename, map_location)


# Every local path: '' is mmengine's fallback prefix, matched when no URL scheme matches.
CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
