"""Shared pieces of the command-line tools: config loading, work dirs, runners, one-line errors.

Progress output of the tools comes from mmengine's ``LoggerHook``: training logs every
``default_hooks.logger.interval`` iterations (iteration, ETA, lr, each loss, time, data time,
memory on CUDA); validation and testing log ``Epoch(val) [i/N]`` / ``Epoch(test) [i/N]``
lines with an ETA at the same interval, which is the progress report of those loops (mmengine
draws no progress bar there). Pass ``--cfg-options default_hooks.logger.interval=1`` to see
every batch.
"""
import difflib
import functools
import os
import os.path as osp
import sys
from typing import Callable, List, Optional

from mmengine.config import Config, DictAction

DEBUG_ENV = 'MMDET_LITE_DEBUG'
# A --cfg-options key starting with this adds a key the config does not have yet.
NEW_KEY_PREFIX = '+'
# Errors that mean "fix your input"; anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, KeyError, ValueError, TypeError)


class UserInputError(ValueError):
    """Bad input from the command line or a config; reported in one line, no traceback."""


def one_line_message(err: BaseException) -> str:
    """The message of ``err`` on one line.

    A DataLoader worker re-raises its error with the worker's traceback in the message;
    the last line of that traceback is the original ``SomeError: message``.
    """
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = str(text)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if 'Original Traceback' in text and lines:
        return lines[-1]
    return ' '.join(lines) or type(err).__name__


def exit_on_user_error(main: Callable) -> Callable:
    """Turn input errors raised by ``main`` into a one-line message and exit status 2.

    Missing files, unknown config keys or types and invalid values are the user's to fix,
    so a traceback into mmdet_lite's internals does not help them. Set ``MMDET_LITE_DEBUG=1``
    to get the traceback anyway.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get(DEBUG_ENV):
                raise
            print(f'error: {one_line_message(err)}  (set {DEBUG_ENV}=1 for the traceback)',
                  file=sys.stderr)
            sys.exit(2)

    return wrapper


def load_config(path: str, cfg_options: Optional[List[str]] = None) -> Config:
    """Load a config file and apply ``--cfg-options KEY=VALUE`` overrides.

    Every overridden key must already exist in the config (a typo would otherwise add a
    new, silently ignored key); the error lists the nearest existing keys. A key written
    ``+KEY=VALUE`` is added even if the config lacks it (``+custom_hooks=[...]``).

    Args:
        path (str): Config file.
        cfg_options (list[str], optional): ``KEY=VALUE`` strings as given on the command
            line (values parsed like mmengine's ``DictAction``: ints, floats, lists, tuples).

    Returns:
        Config: The merged config.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        options = {}
        for key, value in parse_cfg_options(cfg_options).items():
            if key.startswith(NEW_KEY_PREFIX):
                key = key[len(NEW_KEY_PREFIX):]
            else:
                check_key_exists(cfg, key)
            options[key] = value
        cfg.merge_from_dict(options)
    return cfg


def parse_cfg_options(items: List[str]) -> dict:
    """Parse ``KEY=VALUE`` strings the way mmengine's ``DictAction`` does."""
    options = {}
    for item in items:
        if '=' not in item:
            raise UserInputError(f'--cfg-options expects KEY=VALUE, got {item!r}')
        key, value = item.split('=', maxsplit=1)
        options[key] = DictAction._parse_iterable(value)
    return options


def check_key_exists(cfg: Config, dotted_key: str) -> None:
    """Raise ``KeyError`` naming the nearest keys when ``dotted_key`` is not in ``cfg``."""
    node, walked = cfg._cfg_dict, []
    for part in dotted_key.split('.'):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            options = list(node.keys()) if isinstance(node, dict) else []
            prefix = '.'.join(walked)
            near = difflib.get_close_matches(part, options, n=5, cutoff=0.4)
            near = [f'{prefix}.{k}' if prefix else k for k in near]
            hint = (f'nearest keys: {", ".join(near)}' if near else
                    f'keys at {prefix or "the top level"}: '
                    f'{", ".join(map(str, options[:15])) or "(none)"}')
            raise KeyError(f'--cfg-options: {dotted_key!r} is not a key of the config '
                           f'({part!r} not found under {prefix or "the top level"}); {hint}. '
                           f'To add a new key on purpose, write it as '
                           f'{NEW_KEY_PREFIX}{dotted_key}=VALUE')
        walked.append(part)


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
