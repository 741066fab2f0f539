"""What a running tool knows about itself, for the messages that say how to go on after it
stops: the Ctrl-C line of ``tools/train.py`` / ``tools/test.py`` and the resume command in
the non-finite-loss message.

The tools call :func:`note_run` as they learn their config, work dir and Runner;
:func:`mmdet_lite.apis.cli.exit_on_user_error` clears the record around each ``main``.
"""
import os.path as osp
import shlex
from typing import List, Optional

from mmengine.config import Config

from .config_loading import NEW_KEY_PREFIX


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


def reset_run() -> None:
    """Forget what the last tool noted (a ``main`` called in-process leaves nothing)."""
    global _run
    _run = RunRecord()
