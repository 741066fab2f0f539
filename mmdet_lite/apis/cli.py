"""Shared pieces of the command-line tools: config loading, work dirs, runners, one-line errors.

Progress output of the tools comes from mmengine's ``LoggerHook``: training logs every
``default_hooks.logger.interval`` iterations (iteration, ETA, lr, each loss, time, data time,
memory on CUDA); validation and testing log ``Epoch(val) [i/N]`` / ``Epoch(test) [i/N]``
lines with an ETA at the same interval, which is the progress report of those loops (mmengine
draws no progress bar there). Pass ``--cfg-options default_hooks.logger.interval=1`` to see
every batch.
"""
import ast
import difflib
import functools
import os
import os.path as osp
import shlex
import sys
import traceback
from numbers import Number
from typing import Callable, List, Optional, Tuple

from mmengine.config import Config, DictAction

DEBUG_ENV = 'MMDET_LITE_DEBUG'
# A --cfg-options key starting with this adds a key the config does not have yet.
NEW_KEY_PREFIX = '+'
# Errors that mean "fix your input"; anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, KeyError, ValueError, TypeError)
# Errors that stop a training on purpose, with a message saying what to do (NonFiniteLossHook).
TRAINING_STOPS = (FloatingPointError, )
# Exit status after Ctrl-C, as shells report a process ended by SIGINT (128 + 2).
INTERRUPTED_STATUS = 130


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
    so a traceback into mmdet_lite's internals does not help them; nor does one for a
    training stopped on purpose (``FloatingPointError`` of a non-finite loss, whose message
    says how to go on). Ctrl-C prints one line, where the run stopped and how to resume it
    (:func:`interrupted_message`), and exits with status 130. Set ``MMDET_LITE_DEBUG=1``
    to get the traceback anyway.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        global _run
        _run = RunRecord()
        try:
            return main(*args, **kwargs)
        except (KeyboardInterrupt, Exception) as err:
            if os.environ.get(DEBUG_ENV):
                raise
            if _raised_by_interrupt(err):
                print(interrupted_message(), file=sys.stderr)
                sys.exit(INTERRUPTED_STATUS)
            if not isinstance(err, USER_ERRORS + TRAINING_STOPS):
                raise
            print(f'error: {one_line_message(err)}  (set {DEBUG_ENV}=1 for the traceback)',
                  file=sys.stderr)
            sys.exit(2)
        finally:
            _run = RunRecord()  # a main called in-process leaves nothing behind

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


class RunRecord:
    """What a running tool noted about itself (:func:`note_run`), for the messages that
    say how to go on after it stops: Ctrl-C, or a non-finite loss."""

    def __init__(self) -> None:
        self.tool: Optional[str] = None  # 'train' or 'test'
        self.config: Optional[str] = None
        self.work_dir: Optional[str] = None
        self.checkpoint: Optional[str] = None  # tools/test.py's
        self.resume: Optional[str] = None  # tools/train.py's --resume argument
        self.reset_optimizer = False  # and its --reset-optimizer
        self.first_checkpoint: Optional[str] = None  # the work dir's latest when it started
        self.flags: List[str] = []  # options to repeat when resuming (--amp, ...)
        self.cfg_options: List[str] = []
        self.runner = None


_run = RunRecord()


def note_run(tool: str, args, cfg: Optional[Config] = None, runner=None) -> None:
    """Note the command line, work dir and (once built) Runner of the running tool.

    Args:
        tool (str): ``'train'`` or ``'test'``.
        args (argparse.Namespace): The tool's parsed arguments (``config``,
            ``cfg_options`` and, where the tool has them, ``checkpoint``, ``resume``,
            ``amp``, ``auto_scale_lr``).
        cfg (Config, optional): The config, once its ``work_dir`` is set.
        runner (Runner, optional): The Runner, once built.
    """
    _run.tool = tool
    _run.config = args.config
    _run.cfg_options = list(args.cfg_options or [])
    _run.checkpoint = getattr(args, 'checkpoint', None)
    _run.resume = getattr(args, 'resume', None)
    _run.flags = [flag for flag, attr in (('--amp', 'amp'), ('--auto-scale-lr', 'auto_scale_lr'))
                  if getattr(args, attr, False)]
    _run.reset_optimizer = getattr(args, 'reset_optimizer', False)
    if cfg is not None and cfg.get('work_dir') is not None and _run.work_dir is None:
        _run.work_dir = cfg.work_dir
        _run.first_checkpoint = read_last_checkpoint(cfg.work_dir)
    if runner is not None:
        _run.runner = runner
        # the non-finite loss message of the engine's hook repeats this command's options
        from mmdet_lite.engine.hooks.nonfinite_loss_hook import RESUME_COMMAND_INFO
        runner.message_hub.update_info(RESUME_COMMAND_INFO, resume_command, resumed=False)


def read_last_checkpoint(work_dir: Optional[str]) -> Optional[str]:
    """The checkpoint named by ``<work_dir>/last_checkpoint`` (the one a bare ``--resume``
    picks), or None if the run saved none yet."""
    path = osp.join(work_dir, 'last_checkpoint') if work_dir else None
    if path is None or not osp.isfile(path):
        return None
    with open(path) as f:
        checkpoint = f.read().strip()
    return checkpoint or None


def resume_command(reset_optimizer: bool = False, cfg_options: Optional[dict] = None) -> str:
    """``python tools/train.py CONFIG --work-dir WORK_DIR --resume ...``: the command that
    resumes the running training from its latest checkpoint, with the config, work dir,
    ``--amp``/``--auto-scale-lr`` and ``--cfg-options`` of the running ``tools/train.py``
    (:func:`note_run`).

    Args:
        reset_optimizer (bool): Add ``--reset-optimizer``.
        cfg_options (dict, optional): ``{KEY: VALUE text}`` to set, replacing the same keys
            of the running command's ``--cfg-options``.
    """
    work_dir = _run.work_dir or 'WORK_DIR'
    command = ['python', 'tools/train.py', str(_run.config or 'CONFIG'), '--work-dir',
               str(work_dir), *_run.flags, '--resume']
    if _run.resume not in (None, 'auto') and read_last_checkpoint(str(work_dir)) is None:
        command.append(_run.resume)  # the work dir has none yet: from the same file again
    if reset_optimizer:
        command.append('--reset-optimizer')
    overrides = dict(cfg_options or {})
    items = []
    for item in _run.cfg_options:
        key = item.split('=', maxsplit=1)[0]
        bare_key = key[len(NEW_KEY_PREFIX):] if key.startswith(NEW_KEY_PREFIX) else key
        items.append(f'{key}={overrides.pop(bare_key)}' if bare_key in overrides else item)
    items += [f'{key}={value}' for key, value in overrides.items()]
    if items:
        command += ['--cfg-options', *items]
    return shlex.join(command)


def interrupted_message() -> str:
    """One line after Ctrl-C: where the run stopped, its last checkpoint and the command
    that resumes it (``tools/train.py``), or what was not written (``tools/test.py``)."""
    if _run.tool == 'test':
        return (f'interrupted (Ctrl-C) while testing {_run.checkpoint}: no metrics were '
                f'written. Run it again with: ' + shlex.join(
                    ['python', 'tools/test.py', str(_run.config), str(_run.checkpoint)]
                    + (['--cfg-options', *_run.cfg_options] if _run.cfg_options else [])))
    if _run.tool != 'train':
        return 'interrupted (Ctrl-C)'
    checkpoint = read_last_checkpoint(_run.work_dir)
    # a run started with --reset-optimizer that saved nothing yet still needs it
    reset = _run.reset_optimizer and checkpoint == _run.first_checkpoint
    return (f'interrupted (Ctrl-C) {_training_position(_run.runner)}; last checkpoint: '
            f'{checkpoint or "no checkpoint yet"}. Resume with: '
            f'{resume_command(reset_optimizer=reset)}')


def _training_position(runner) -> str:
    """``'in epoch 1 of 12 with 3 of 48 iterations done'``, or ``'before training
    started'`` when the Runner or its train loop is not built yet."""
    from mmengine.runner import BaseLoop, EpochBasedTrainLoop
    # read the attribute, not ``runner.train_loop``, which would build the loop
    loop = getattr(runner, '_train_loop', None)
    if not isinstance(loop, BaseLoop):
        return 'before training started'
    done = f'{loop.iter} of {loop.max_iters} iterations done'
    if runner.message_hub.get_info('loop_stage') == 'val':
        done += ', while validating'
    if isinstance(loop, EpochBasedTrainLoop):
        return f'in epoch {min(loop.epoch + 1, loop.max_epochs)} of {loop.max_epochs} with {done}'
    return f'with {done}'


def read_config_file(path: str) -> Config:
    """``Config.fromfile(path)``, with a one-line error for a missing file, bad syntax or
    a line of the config that raises (``NameError`` ...).

    mmengine parses the config without a file name, so its ``SyntaxError`` reads
    ``File "<unknown>", line 1`` and does not say which file of a ``_base_`` chain is
    broken. Here the file and its ``_base_`` files are compiled again, as mmengine resolves
    them, to name the broken one.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UserInputError: ``path`` or one of its bases is not valid Python, as
            ``FILE:LINE: syntax error in config: MSG (`CODE`)``, or one of their lines
            raised, as ``FILE:LINE: error in config: TYPE: MSG``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    try:
        return Config.fromfile(path)
    except SyntaxError as err:
        raise UserInputError(_syntax_error_message(str(path), err)) from err
    except Exception as err:  # noqa: BLE001  (re-raised unless a config line raised it)
        frame = _config_frame(str(path), err)
        if frame is None:
            raise
        what = type(err).__name__
        text = one_line_message(err)
        raise UserInputError(f'{frame.filename}:{frame.lineno}: error in config: {what}'
                             f'{"" if text == what else ": " + text}') from err


def _config_frame(path: str, err: BaseException):
    """The last traceback frame of ``err`` that runs a line of ``path`` or one of its
    ``_base_`` files (e.g. a ``NameError`` in the config), or None."""
    files = {osp.abspath(path)}
    try:
        _find_syntax_error(path, chain=(), seen=files)
    except Exception:  # noqa: BLE001  (then only ``path`` itself is matched)
        pass
    frames = [frame for frame in traceback.extract_tb(err.__traceback__)
              if osp.abspath(frame.filename) in files]
    return frames[-1] if frames else None


def _syntax_error_message(path: str, err: SyntaxError) -> str:
    """``FILE:LINE: ...`` for the first file of ``path``'s ``_base_`` tree that fails to
    compile; from ``err`` itself if none does (e.g. a form of config not walked here)."""
    try:
        found = _find_syntax_error(path, chain=())
    except Exception:  # noqa: BLE001  (a base mmengine itself could not read)
        found = None
    if found is None:
        found, chain = err, ()
        if err.filename in (None, '', '<unknown>', '<string>') or not osp.isfile(
                str(err.filename)):
            found.filename = path
    else:
        found, chain = found
    code = (found.text or '').strip()
    code = code if len(code) <= 80 else code[:77] + '...'
    where = f'{found.filename}:{found.lineno}' if found.lineno else str(found.filename)
    message = f'{where}: syntax error in config: {found.msg}'
    if code:
        message += f' (`{code}`)'
    if chain:
        message += f"; reached through _base_ from {' -> '.join(chain)}"
    return message


def _find_syntax_error(path: str, chain: Tuple[str, ...],
                       seen: Optional[set] = None) -> Optional[tuple]:
    """``(SyntaxError, files that include it)`` for the first ``.py`` file of the
    ``_base_`` tree rooted at ``path`` that does not compile, or None. The absolute path
    of every file visited is added to ``seen``."""
    if not path.endswith('.py') or not osp.isfile(path) or path in chain:
        return None
    if seen is not None:
        seen.add(osp.abspath(path))
    with open(path, encoding='utf-8') as f:
        source = f.read()
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as err:
        err.filename = path
        return err, chain
    for base in _base_files(tree):
        base_path, _ = Config._get_cfg_path(base, path)  # how mmengine resolves it
        found = _find_syntax_error(osp.normpath(base_path), chain + (path, ), seen)
        if found is not None:
            return found
    return None


def _base_files(tree: ast.Module) -> List[str]:
    """The ``_base_ = ...`` entries of a parsed config (a str or a list of str)."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == '_base_'):
            value = ast.literal_eval(node.value)
            return [value] if isinstance(value, str) else list(value)
    return []


def load_config(path: str, cfg_options: Optional[List[str]] = None) -> Config:
    """Load a config file and apply ``--cfg-options KEY=VALUE`` overrides.

    Every overridden key must already exist in the config (a typo would otherwise add a
    new, silently ignored key); the error lists the nearest existing keys. A key written
    ``+KEY=VALUE`` is added even if the config lacks it (``+custom_hooks=[...]``). A key
    whose value in the config is a number must get a number (``lr=1e-3x`` is an error,
    not the string ``'1e-3x'``).

    Args:
        path (str): Config file.
        cfg_options (list[str], optional): ``KEY=VALUE`` strings as given on the command
            line (values parsed like mmengine's ``DictAction``: ints, floats, lists, tuples).

    Returns:
        Config: The merged config.

    Raises:
        FileNotFoundError: The config file does not exist.
        UserInputError: The config (or a ``_base_``) has a syntax error, an item is not
            ``KEY=VALUE``, or a number is overridden by something that is not a number.
        KeyError: An overridden key is not in the config.
    """
    cfg = read_config_file(path)
    if cfg_options:
        options = {}
        for key, (text, value) in _split_cfg_options(cfg_options).items():
            if key.startswith(NEW_KEY_PREFIX):
                key = key[len(NEW_KEY_PREFIX):]
            else:
                check_value_type(key, text, value, check_key_exists(cfg, key))
            options[key] = value
        cfg.merge_from_dict(options)
    return cfg


def _is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def check_value_type(key: str, text: str, value, current) -> None:
    """Raise ``UserInputError`` when a number in the config is overridden by a non-number.

    ``None`` stays allowed (it switches things off). Other types are not checked: strings,
    bools, lists and dicts replace each other legitimately in configs.
    """
    if _is_number(current) and value is not None and not _is_number(value):
        raise UserInputError(f'--cfg-options {key}={text}: expected a number (the config '
                             f'has {current!r}), got {text!r}')


def _split_cfg_options(items: List[str]) -> dict:
    """``{KEY: (VALUE text, parsed VALUE)}``, parsed as by mmengine's ``DictAction``."""
    options = {}
    for item in items:
        if '=' not in item:
            raise UserInputError(f'--cfg-options expects KEY=VALUE, got {item!r}')
        key, text = item.split('=', maxsplit=1)
        options[key] = (text, DictAction._parse_iterable(text))
    return options


def parse_cfg_options(items: List[str]) -> dict:
    """Parse ``KEY=VALUE`` strings the way mmengine's ``DictAction`` does."""
    return {key: value for key, (_, value) in _split_cfg_options(items).items()}


def check_key_exists(cfg: Config, dotted_key: str):
    """The value at ``dotted_key`` in ``cfg``; ``KeyError`` naming the nearest keys when
    it is not there."""
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
    return node


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
