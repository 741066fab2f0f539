"""Load checkpoints without ever running code from them.

Every local checkpoint read in the process goes through :func:`load_local_checkpoint`: the
Runner's ``load_from`` and ``resume``, ``tools/test.py``, ``init_detector`` and
``init_cfg=dict(type='Pretrained')`` all end in mmengine's ``CheckpointLoader``, whose scheme
for local paths (prefix ``''``) is replaced here with ``force=True`` when
:mod:`mmdet_lite.engine` is imported. A Runner subclass would have covered only the Runner;
monkeypatching ``torch.load`` would have changed every library in the process.

The load is always ``torch.load(..., weights_only=True)`` with an explicit allow-list of the
globals mmdet_lite's (and mmengine's) own checkpoints contain beside tensors and plain
containers: the message hub's ``HistoryBuffer`` and the statistic methods it pickles as
``getattr(HistoryBuffer, name)``, numpy arrays, numeric/string dtypes and scalars, and
``collections.OrderedDict``. Nothing on that list runs code chosen by the file.

Nothing is trusted because of where it lies (a file dropped into a shared ``work_dirs/``
must not run code on ``--resume``). A file that needs more is refused with
:class:`UntrustedCheckpointError`, naming the globals it asks for. The one opt-in is explicit
and per file: ``--trust-checkpoint FILE`` on ``tools/train.py``, ``tools/test.py`` and
``demo/image_demo.py``, or :func:`allow_unsafe_checkpoint` in Python. It names one file,
and the file must still be the one the user named (same inode, size and modification time)
when it is read.

A file that is no checkpoint at all (an HTML page saved by a failed download, an empty or
truncated file) gets :class:`CorruptCheckpointError`, which says what the file looks like and
never suggests trusting it.
"""
import collections
import os
import os.path as osp
import pickle
import re
import zipfile
from contextlib import contextmanager
from typing import Iterator, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

try:
    from numpy._core import multiarray  # numpy >= 2
except ImportError:  # numpy 1
    from numpy.core import multiarray

# How the command-line tools spell the opt-in; the error messages quote it.
TRUST_FLAG = '--trust-checkpoint'
_PICKLE_PROTO = 0x80  # first byte of a pickle of protocol >= 2 (torch's legacy format)
_ZIP_MAGIC = b'PK\x03\x04'  # torch's default format since 1.6 is a zip archive


class UntrustedCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint holds pickled objects outside the allow-list (loading could run code)."""


class CorruptCheckpointError(ValueError):
    """A file is not a readable PyTorch checkpoint (empty, truncated, an HTML page, ...)."""


class _FileIdentity(NamedTuple):
    """What makes "the file the user named": its real path and inode, size and mtime."""
    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int


def _identity(filename: Union[str, os.PathLike]) -> _FileIdentity:
    path = osp.realpath(osp.expanduser(str(filename)))
    stat = os.stat(path)
    return _FileIdentity(path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


# Files the running code explicitly allowed to be fully unpickled (allow_unsafe_checkpoint).
_allowed_files: List[_FileIdentity] = []


@contextmanager
def allow_unsafe_checkpoint(*filenames: Union[str, os.PathLike]) -> Iterator[None]:
    """Allow full unpickling of exactly these checkpoint files inside the ``with`` block.

    Unpickling can run arbitrary code from the file: use this only for a file whose origin
    you know and trust. Folders are not accepted, and a file replaced after this call (other
    inode, size or modification time) is not allowed.

    Args:
        *filenames: Checkpoint files.

    Raises:
        FileNotFoundError: A name is not an existing file.

    Example:
        >>> with allow_unsafe_checkpoint('old_run/epoch_12_with_custom_state.pth'):
        ...     model = init_detector(config, 'old_run/epoch_12_with_custom_state.pth')
    """
    added = []
    for filename in filenames:
        if not osp.isfile(osp.expanduser(str(filename))):
            raise FileNotFoundError(f'{TRUST_FLAG}: {filename} is not a file (only single '
                                    'checkpoint files can be trusted, not folders)')
        added.append(_identity(filename))
    _allowed_files.extend(added)
    try:
        yield
    finally:
        for identity in added:
            _allowed_files.remove(identity)


def is_unsafe_load_allowed(filename: Union[str, os.PathLike]) -> bool:
    """Whether ``filename`` is, unchanged, a file given to :func:`allow_unsafe_checkpoint`."""
    try:
        return _identity(filename) in _allowed_files
    except OSError:
        return False


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
    """The globals, beyond torch's defaults, that mmdet_lite's checkpoints need.

    Returns:
        list[tuple[object, str]]: ``(object, 'module.qualname')`` pairs for
        ``torch.serialization.safe_globals``; numpy functions are listed under both their
        numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) names, so checkpoints written
        with either load.
    """
    pairs: List[Tuple[object, str]] = [
        (collections.OrderedDict, 'collections.OrderedDict'),
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


def describe_non_checkpoint(filename: str) -> Optional[str]:
    """What ``filename`` looks like when it is plainly not a PyTorch checkpoint.

    Looks at the size and the first bytes only, so it is cheap for multi-GB files.

    Args:
        filename (str): An existing file.

    Returns:
        str | None: e.g. ``'is empty (0 bytes)'`` or ``'is an HTML page (1234 bytes,
        begins "<!DOCTYPE html>")'``; None when the file starts like a checkpoint (a zip
        archive or a pickle) and only reading it can tell.
    """
    size = osp.getsize(filename)
    if size == 0:
        return 'is empty (0 bytes): an interrupted download or copy?'
    with open(filename, 'rb') as f:
        head = f.read(512)
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(filename):  # the archive's directory is at its end
            return (f'is truncated ({size} bytes): it starts like a PyTorch checkpoint (a zip '
                    'archive) but its end is missing, as after an interrupted download or copy')
        with zipfile.ZipFile(filename) as archive:
            if not any(name.endswith('data.pkl') for name in archive.namelist()):
                return f'is a zip archive ({size} bytes) but not a PyTorch checkpoint (no data.pkl)'
        return None
    if head[0] == _PICKLE_PROTO:
        return None
    text = head.lstrip().lower()
    begins = head.lstrip()[:40].decode('utf-8', errors='replace').splitlines()
    begins = begins[0] if begins else ''
    if text.startswith((b'<!doctype html', b'<html', b'<?xml', b'<head', b'<body')) or \
            (text.startswith(b'<') and b'<html' in text):
        return (f'is an HTML page ({size} bytes, begins "{begins}"), not a PyTorch checkpoint: '
                'the download saved a web page (an error or login page?) instead of the file')
    if all(32 <= byte < 127 or byte in b'\t\r\n' for byte in head):
        return f'is a text file ({size} bytes, begins "{begins}"), not a PyTorch checkpoint'
    return f'is not a PyTorch checkpoint ({size} bytes, begins with bytes {head[:8]!r})'


def _refused_globals(filename: str, refusal: Exception) -> List[str]:
    """Names of the globals in ``filename`` that the allow-list refuses.

    Returns:
        list[str]: e.g. ``['pathlib.Path']``; empty when ``refusal`` is no refusal of a
        global but a damaged pickle stream.
    """
    text = str(refusal)
    # torch names the first refused global ('Unsupported global: GLOBAL x.y') or class
    # ("but got <class 'x.y'>"); our getattr stand-in names what it was asked for
    named = re.findall(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>|(getattr)\(", text)
    found = [name for groups in named for name in groups if name]
    try:  # a zip checkpoint can be scanned whole without unpickling it
        scanned = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # the legacy format cannot; the first name above is all we know
        scanned = []
    allowed = {name for _, name in checkpoint_safe_globals()}
    if not found:
        return []
    return list(dict.fromkeys(found + [name for name in scanned if name not in allowed]))


def load_local_checkpoint(filename: str, map_location: Optional[Union[str, torch.device]] = None):
    """Load a local checkpoint file: weights only, plus the allow-listed mmengine state.

    Args:
        filename (str): Path of the file (``~`` is expanded).
        map_location (str | torch.device, optional): As in :func:`torch.load`.

    Returns:
        dict: The checkpoint (a state dict, or ``meta``/``state_dict``/``message_hub``/...
        for a Runner checkpoint).

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        CorruptCheckpointError: The file is not a readable checkpoint (empty, truncated,
            an HTML page, saved on a device this machine lacks, ...).
        UntrustedCheckpointError: The file holds objects outside the allow-list and was
            not allowed with :func:`allow_unsafe_checkpoint`.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    problem = describe_non_checkpoint(filename)
    if problem is not None:
        raise CorruptCheckpointError(f"checkpoint '{filename}' {problem}. Nothing was loaded; "
                                     'download or copy the file again.')
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refusal = err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise _unreadable(filename, err) from err

    refused = _refused_globals(filename, refusal)
    if not refused:  # no refused global: a damaged pickle stream ("Unsupported operand")
        raise _unreadable(filename, refusal) from refusal
    if is_unsafe_load_allowed(filename):
        print_log(f'{filename} holds pickled objects outside the weights-only allow-list '
                  f'({", ".join(refused)}); unpickling it fully because it was given to '
                  f'{TRUST_FLAG} / allow_unsafe_checkpoint', logger='current')
        return torch.load(filename, map_location=map_location, weights_only=False)
    raise UntrustedCheckpointError(_refusal_message(filename, refusal, refused)) from refusal


def _unreadable(filename: str, err: Exception) -> CorruptCheckpointError:
    lines = str(err).strip().splitlines()
    reason = lines[0] if lines else type(err).__name__
    return CorruptCheckpointError(
        f"checkpoint '{filename}' ({osp.getsize(filename)} bytes) could not be read: {reason}. "
        'It may be truncated or damaged (download or copy it again), or hold tensors saved '
        'on a device this machine lacks (pass map_location).')


def _refusal_message(filename: str, refusal: Exception, refused: List[str]) -> str:
    """Why ``filename`` was refused, and the explicit way to load a file the user trusts."""
    # torch's message is a page of advice; its 'WeightsUnpickler error:' part is the reason
    reason = str(refusal).split('WeightsUnpickler error:', 1)[-1].strip().splitlines()
    detail = f' ({reason[0]})' if 'getattr' in refused and reason else ''
    return (f"checkpoint '{filename}' holds pickled objects of types {', '.join(refused)}"
            f"{detail}, which are not on mmdet_lite's allow-list: checkpoints are loaded with "
            'torch.load(weights_only=True) because unpickling other objects can run arbitrary '
            'code from the file, and nothing was loaded. Only if you know where this file '
            f'came from and trust it to run code on this machine, load it with {TRUST_FLAG} '
            f'{osp.abspath(filename)} (tools/train.py, tools/test.py, demo/image_demo.py) or, '
            f"in Python, `with mmdet_lite.engine.allow_unsafe_checkpoint('{filename}'): ...`.")


def load_from_local(filename: str, map_location=None):
    """:func:`load_local_checkpoint` under the name mmengine logs ("by local backend")."""
    return load_local_checkpoint(filename, map_location)


# Every local path: '' is mmengine's fallback prefix, matched when no URL scheme matches.
CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
