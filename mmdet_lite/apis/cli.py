"""Shared pieces of the command-line tools: one-line errors, work dirs, runners.

Config loading lives in :mod:`.config_loading`, what a running tool knows about itself (for
the Ctrl-C and resume messages) in :mod:`.run_record`; both are re-exported here.

Progress output of the tools comes from mmengine's ``LoggerHook``: training logs every
``default_hooks.logger.interval`` iterations (iteration, ETA, lr, each loss, time, data time,
memory on CUDA); validation and testing log ``Epoch(val) [i/N]`` / ``Epoch(test) [i/N]``
lines with an ETA at the same interval, which is the progress report of those loops (mmengine
draws no progress bar there). Pass ``--cfg-options default_hooks.logger.interval=1`` to see
every batch.
"""
import contextlib
import functools
import os
import os.path as osp
import signal
import sys
from typing import Callable, Iterator, List, Optional

from mmengine.config import Config

from . import run_record
from .config_loading import (NEW_KEY_PREFIX, check_key_exists, load_config,
                             parse_cfg_options, read_config_file)
from .errors import UserInputError, one_line_message
from .run_record import note_run, read_last_checkpoint, resume_command

# what the tools import from here
__all__ = ['DEBUG_ENV', 'NEW_KEY_PREFIX', 'UserInputError', 'one_line_message',
           'exit_on_user_error', 'load_config', 'read_config_file', 'parse_cfg_options',
           'check_key_exists', 'note_run', 'read_last_checkpoint', 'resume_command',
           'setup_work_dir', 'build_runner', 'prepare_cpu_distributed',
           'check_no_sync_bn_on_cpu', 'SigintRecord', 'record_sigint']

DEBUG_ENV = 'MMDET_LITE_DEBUG'
# Errors that mean "fix your input"; anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, KeyError, ValueError, TypeError)
# Errors that stop a training on purpose, with a message saying what to do (NonFiniteLossHook).
TRAINING_STOPS = (FloatingPointError, )
# Exit status after Ctrl-C, as shells report a process ended by SIGINT (128 + 2).
INTERRUPTED_STATUS = 130


def exit_on_user_error(main: Callable) -> Callable:
    """Turn input errors raised by ``main`` into a one-line message and exit status 2.

    Missing files, unknown config keys or types and invalid values are the user's to fix,
    so a traceback into mmdet_lite's internals does not help them; nor does one for a
    training stopped on purpose (``FloatingPointError`` of a non-finite loss, whose message
    says how to go on). Ctrl-C prints one line, where the run stopped and how to resume it
    (:func:`interrupted_message`), and exits with status 130. Set ``MMDET_LITE_DEBUG=1``
    to get the traceback anyway.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        run_record.reset_run()
        try:
            return main(*args, **kwargs)
        except (KeyboardInterrupt, Exception) as err:
            if os.environ.get(DEBUG_ENV):
                raise
            if _raised_by_interrupt(err):
                print(run_record.interrupted_message(), file=sys.stderr)
                sys.exit(INTERRUPTED_STATUS)
            if not isinstance(err, USER_ERRORS + TRAINING_STOPS):
                raise
            print(f'error: {one_line_message(err)}  (set {DEBUG_ENV}=1 for the traceback)',
                  file=sys.stderr)
            sys.exit(2)
        finally:
            run_record.reset_run()  # a main called in-process leaves nothing behind

    return wrapper


def _raised_by_interrupt(err: BaseException) -> bool:
    """``err`` is a ``KeyboardInterrupt``, or was raised while handling one: mmengine's
    ``Config.pretty_text`` (run at every checkpoint save) turns any exception, Ctrl-C
    included, into a ``SyntaxError``."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


class SigintRecord:
    """Whether Ctrl-C (SIGINT) came while :func:`record_sigint` was in force.

    Attributes:
        received (bool): A SIGINT arrived.
    """

    def __init__(self) -> None:
        self.received = False

    def raise_if_received(self) -> None:
        """Raise ``KeyboardInterrupt`` again if a SIGINT came; for the places a run passes
        often (a hook at each iteration) in case the first one was swallowed."""
        if self.received:
            raise KeyboardInterrupt


@contextlib.contextmanager
def record_sigint() -> Iterator[SigintRecord]:
    """Make Ctrl-C stop a run even where a ``KeyboardInterrupt`` gets swallowed.

    Python turns SIGINT into a ``KeyboardInterrupt`` raised in whatever the main thread
    runs at that moment. Where that is Python code called from C that ignores errors (an
    attribute lookup through a C API that clears them, a finalizer, a callback), the
    exception vanishes without a trace and a training goes on to its end, exit status 0.
    Inside this block a SIGINT is also written down, in the yielded record: raise it again
    at the run's next step with :meth:`SigintRecord.raise_if_received` (the training tool
    registers a hook that does), and leaving the block with a recorded SIGINT raises
    ``KeyboardInterrupt`` (the cause being any other error that ended the block), so that
    :func:`exit_on_user_error` reports the interrupt and exits with status 130.

    Only Python's own SIGINT handler is replaced, in the main thread, and restored on
    exit: a process that ignores SIGINT (started with ``nohup``, say) or whose caller
    handles it keeps that behaviour, and the record then stays empty.

    Yields:
        SigintRecord: Its ``received`` turns True at the first SIGINT.
    """
    record = SigintRecord()

    def on_sigint(signum, frame):
        record.received = True
        raise KeyboardInterrupt  # what Python's own handler does

    previous = signal.getsignal(signal.SIGINT)
    installed = False
    if previous is signal.default_int_handler:
        try:
            signal.signal(signal.SIGINT, on_sigint)
            installed = True
        except ValueError:  # not the main thread: signals cannot be handled here
            pass
    try:
        yield record
    except BaseException as err:
        if record.received and not _raised_by_interrupt(err):
            raise KeyboardInterrupt from err
        raise
    else:
        if record.received:  # swallowed on its way out, after the run's last step
            raise KeyboardInterrupt
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)


def setup_work_dir(cfg: Config, config_path: str, work_dir: Optional[str]) -> None:
    """Set ``cfg.work_dir``: CLI flag > config value > ``./work_dirs/<config name>``.

    Existing work dirs are reused as they are: nothing in them is deleted.
    """
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def build_runner(cfg: Config):
    """Build the Runner: ``RUNNERS.build(cfg)`` if the config names a ``runner_type``,
    else mmengine's ``Runner.from_cfg(cfg)``."""
    if 'runner_type' in cfg:
        from mmdet_lite.registry import RUNNERS
        return RUNNERS.build(cfg)
    from mmengine.runner import Runner
    return Runner.from_cfg(cfg)


def prepare_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` run on a machine without CUDA (gloo, CPU DDP).

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` and wraps the model in DDP
    with ``device_ids=[LOCAL_RANK]``, both of which need a GPU. Without one, start the
    process group here with the gloo backend (the Runner then skips its own set-up) and
    wrap the CPU model with ``device_ids=None``. With CUDA this does nothing.
    """
    import torch
    import torch.distributed as dist
    if cfg.get('launcher') != 'pytorch' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')  # rank/world size from torchrun's env vars
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    check_no_sync_bn_on_cpu(cfg)


def _sync_bn_keys(node, key: str) -> List[str]:
    """Config keys under ``node`` whose ``norm_cfg`` asks for SyncBN."""
    if isinstance(node, dict):
        found = []
        if isinstance(node.get('norm_cfg'), dict) and 'SyncBN' in str(node['norm_cfg'].get('type')):
            found.append(f'{key}.norm_cfg')
        for name, value in node.items():
            found += _sync_bn_keys(value, f'{key}.{name}')
        return found
    if isinstance(node, (list, tuple)):
        return [k for i, value in enumerate(node) for k in _sync_bn_keys(value, f'{key}.{i}')]
    return []


def check_no_sync_bn_on_cpu(cfg: Config) -> None:
    """SyncBN has no CPU implementation: say so before DDP fails with a bare message.

    Raises:
        ValueError: ``cfg.model`` has a ``norm_cfg`` of type SyncBN, or ``cfg.sync_bn`` is
            set, and the distributed run is on the CPU.
    """
    keys = _sync_bn_keys(cfg.get('model'), 'model')
    if cfg.get('sync_bn'):
        keys.append('sync_bn')
    if keys:
        raise ValueError(f"{', '.join(keys)} asks for SyncBN, which needs CUDA GPUs: "
                         'torch.nn.SyncBatchNorm has no CPU implementation. For distributed '
                         "training on CPU (gloo) use norm_cfg=dict(type='BN', ...) (each "
                         'process then keeps its own BN statistics), e.g. --cfg-options '
                         f"{keys[0]}.type=BN")
