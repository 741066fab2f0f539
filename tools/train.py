"""Train a detector from a config: ``python tools/train.py CONFIG [options]``.

Flags follow mmdetection's ``tools/train.py``:

- ``--work-dir DIR``: logs and checkpoints (default: the config's ``work_dir``, else
  ``./work_dirs/<config name>``). An existing folder is reused; nothing in it is deleted.
- ``--amp``: mixed precision, fp16 autocast on CUDA, bf16 autocast on the CPU
  (:mod:`mmdet_lite.engine.amp`).
- ``--auto-scale-lr``: scale the lr by total batch size / ``auto_scale_lr.base_batch_size``.
- ``--resume [CKPT]``: restore model, optimizer, schedulers and iteration counter from CKPT,
  or from the latest checkpoint of the work dir when no path is given. Every checkpoint is
  read weights-only with an allow-list (:mod:`mmdet_lite.engine.checkpoint`), whatever
  folder it lies in.
- ``--reset-optimizer`` (with ``--resume``): restore the model weights, the epoch and
  iteration counters, the message hub, the RNG states and the data position, but take the
  optimizer (lr, momentum and Adam state start afresh) and the lr schedule from the config,
  stepped to the resumed iteration. The way to go on after a non-finite loss with a lower
  lr: ``--resume --reset-optimizer --cfg-options optim_wrapper.optimizer.lr=...``. The run
  uses :class:`~mmdet_lite.engine.ResetOptimizerRunner`, so a config that names another
  ``runner_type`` is refused.
- ``--trust-checkpoint FILE``: allow full unpickling (which can run code) of this one file,
  for a checkpoint you trust that holds objects beyond the allow-list. Repeatable.
- ``--cfg-options KEY=VALUE ...``: override config entries; a key the config lacks is
  added (with a warning naming the existing key when it looks like a typo of one), and a
  number must stay a number.
- ``--launcher none|pytorch|slurm|mpi``: distributed launcher (``tools/dist_train.sh``,
  ``tools/slurm_train.sh``).

Bad input (missing files, unknown keys, invalid values) ends with a one-line ``error: ...``
on stderr and exit status 2; ``MMDET_LITE_DEBUG=1`` shows the traceback. So does a training
stopped by a non-finite loss, with the command that goes on from the last checkpoint.
Ctrl-C prints one line, where training stopped, the last checkpoint and the command that
resumes it, and exits with status 130; also when the ``KeyboardInterrupt`` it raised was
swallowed on its way up (the SIGINT is recorded and raised again at the next iteration, see
:func:`mmdet_lite.apis.cli.record_sigint`).
"""
import argparse
import logging
import os
import os.path as osp


from mmdet_lite.apis.cli import (UserInputError, build_runner,
                                 exit_on_user_error, load_config, note_run,
                                 prepare_cpu_distributed, record_sigint,
                                 setup_work_dir)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 autocast on CUDA, bf16 on CPU')
    parser.add_argument('--channels-last', action='store_true',
                        help='train in channels-last memory format (ChannelsLastHook): '
                        'faster convolutions on CPU (oneDNN) and under AMP on GPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint in the work dir '
                        'when no path is given')
    parser.add_argument('--reset-optimizer', action='store_true',
                        help='with --resume: restore the weights and counters but take the '
                        'optimizer and lr schedule from the config (e.g. a lower lr after a '
                        'non-finite loss)')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling (can run code) of this checkpoint file, '
                        'one you trust that holds objects beyond the weights-only allow-list')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries, e.g. train_cfg.max_epochs=2; a key '
                        'the config lacks is added (a warning names a near existing key)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local_rank / --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def apply_resume(cfg, resume: str) -> None:
    """``--resume``: set ``cfg.resume`` and ``cfg.load_from`` for mmengine's Runner.

    Args:
        cfg (Config): The config; its ``work_dir`` is set.
        resume (str): ``'auto'`` for the latest checkpoint of the work dir
            (:func:`~mmdet_lite.engine.resume_checkpoint.find_resume_checkpoint`: the one
            ``last_checkpoint`` names, else the newest ``epoch_*.pth`` / ``iter_*.pth``),
            or a checkpoint path.

    Raises:
        FileNotFoundError: ``resume`` is a path that is not a file.
    """
    if resume == 'auto':
        from mmengine.logging import print_log

        from mmdet_lite.engine.resume_checkpoint import (find_resume_checkpoint,
                                                         read_checkpoint_pointer)
        named = read_checkpoint_pointer(cfg.work_dir)
        checkpoint = find_resume_checkpoint(cfg.work_dir)  # warns when `named` is not it
        if checkpoint is None and not named:
            print_log(f'--resume: no checkpoint in {cfg.work_dir} yet, training from the '
                      'start', logger='current', level=logging.WARNING)
        # without a checkpoint, mmengine would still try the file last_checkpoint names
        cfg.resume = checkpoint is not None
        # when last_checkpoint is right, mmengine reads the same file from it (and logs
        # "Auto resumed from the latest checkpoint ..."); otherwise the file is named here,
        # so that mmengine neither fails on a dangling pointer nor starts from scratch
        cfg.load_from = None if checkpoint == named else checkpoint
    else:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume: checkpoint not found: {resume}')
        cfg.resume = True
        cfg.load_from = resume


def check_runner_type_resets_optimizer(cfg) -> None:
    """``--reset-optimizer`` builds a :class:`~mmdet_lite.engine.ResetOptimizerRunner`
    (whose ``resume`` keeps the config's optimizer and lr schedule); a config that names
    another ``runner_type`` cannot have both.

    Raises:
        UserInputError: ``cfg.runner_type`` is not ``ResetOptimizerRunner`` or a subclass.
    """
    runner_type = cfg.get('runner_type')
    if runner_type is None:
        return
    from mmdet_lite.engine import ResetOptimizerRunner
    from mmdet_lite.registry import RUNNERS
    runner_cls = RUNNERS.get(runner_type) if isinstance(runner_type, str) else runner_type
    if isinstance(runner_cls, type) and issubclass(runner_cls, ResetOptimizerRunner):
        return
    raise UserInputError(
        f'--reset-optimizer trains with mmdet_lite\'s ResetOptimizerRunner, whose resume keeps '
        f'the config\'s optimizer and lr schedule, but the config sets runner_type='
        f'{runner_type!r}: remove runner_type from the config, or derive that runner from '
        f'mmdet_lite.engine.ResetOptimizerRunner')


@exit_on_user_error
def main(argv=None) -> None:
    with record_sigint() as sigint:
        train(parse_args(argv), sigint)


def train(args: argparse.Namespace, sigint) -> None:
    """Build the Runner from the command line's config and train.

    Args:
        args (argparse.Namespace): The parsed command line.
        sigint (SigintRecord): Ctrl-C as recorded by
            :func:`~mmdet_lite.apis.cli.record_sigint`, checked at every iteration.
    """
    # the config first: its errors need neither torch nor the registries
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    setup_work_dir(cfg, args.config, args.work_dir)
    note_run('train', args, cfg)  # for the messages of Ctrl-C and of a non-finite loss
    if args.reset_optimizer and args.resume is None:
        raise UserInputError('--reset-optimizer only applies with --resume (it keeps the '
                             "checkpoint's weights and counters but the config's optimizer)")
    if args.resume is not None:
        apply_resume(cfg, args.resume)

    from mmdet_lite.engine import allow_unsafe_checkpoint, enable_amp
    from mmdet_lite.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    if args.amp:
        enable_amp(cfg)
    if args.channels_last:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='ChannelsLastHook')]
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError('--auto-scale-lr needs `auto_scale_lr = dict(enable=..., '
                             'base_batch_size=N)` in the config (see schedule_1x.py)')
        cfg.auto_scale_lr.enable = True

    if args.reset_optimizer:
        check_runner_type_resets_optimizer(cfg)

    prepare_cpu_distributed(cfg)
    if args.reset_optimizer and 'runner_type' not in cfg:
        from mmdet_lite.engine import ResetOptimizerRunner
        runner = ResetOptimizerRunner.from_cfg(cfg)  # the config itself stays as it is
    else:
        runner = build_runner(cfg)
    note_run('train', args, cfg, runner)
    from mmdet_lite.apis.sigint_hook import SigintCheckHook
    runner.register_hook(SigintCheckHook(sigint))
    # no file is trusted for where it lies (its own work dir included), only by name
    with allow_unsafe_checkpoint(*args.trust_checkpoint):
        runner.train()


if __name__ == '__main__':
    main()
