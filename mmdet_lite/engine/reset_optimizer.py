"""Resume a run with the optimizer and the lr schedule of the config (``--reset-optimizer``).

``--resume`` restores everything from the checkpoint, the optimizer state (its lr, momentum
and Adam moments) and the param schedulers included, so a lower lr in the config has no
effect on a resumed run. After a non-finite loss that is the wrong state to go on from.

:class:`ResetOptimizerRunner` is a Runner whose resume restores the model weights, the epoch
and iteration counters, the message hub and (through ``CheckpointHook``) the RNG states and
data position, but keeps the optimizer and param schedulers that the Runner built from the
config. The schedulers are then stepped as an uninterrupted run of that config would have
stepped them, so the lr of the first resumed iteration is the new config's lr at that
iteration (a warmup does not start again).

It uses mmengine's ``Runner.resume(filename, resume_optimizer, resume_param_scheduler)``
switches. ``Runner.train`` builds the optimizer and schedulers, then calls
``load_or_resume``, which calls ``self.resume(filename)`` with no way to pass them; so, as
issue 14 asks where a public extension point is missing, the registered ``Runner`` is
subclassed and its public ``resume`` overridden. ``tools/train.py --reset-optimizer`` builds
this class (``ResetOptimizerRunner.from_cfg(cfg)``) instead of mmengine's ``Runner``,
leaving the config as it is, so the config dumped in the work dir does not reset the
optimizer of a later ``--resume``; it is registered in mmdet_lite's ``RUNNERS`` too, so a
config can ask for it with ``runner_type = 'ResetOptimizerRunner'``.
"""
import logging
import warnings
from typing import Callable, Iterable, List, Union

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, Runner

from ..registry import RUNNERS


@RUNNERS.register_module()
class ResetOptimizerRunner(Runner):
    """mmengine's ``Runner`` whose resume keeps the config's optimizer and lr schedule.

    Its :meth:`resume` defaults to ``resume_optimizer=False, resume_param_scheduler=False``
    (mmengine's defaults are True, and ``load_or_resume`` passes neither) and steps the
    freshly built schedulers to the resumed iteration. Without a resume (no ``resume=True``,
    or no checkpoint found) it trains as mmengine's ``Runner``.
    """

    def resume(self, filename: str, resume_optimizer: bool = False,
               resume_param_scheduler: bool = False,
               map_location: Union[str, Callable] = 'default') -> None:
        """Resume from ``filename``; by default without its optimizer and scheduler states.

        Args:
            filename (str): The checkpoint.
            resume_optimizer (bool): Restore the optimizer state too. Defaults to False.
            resume_param_scheduler (bool): Restore the param schedulers too; when False they
                are stepped to the resumed epoch and iteration instead. Defaults to False.
            map_location (str | callable): As mmengine's. Defaults to ``'default'``.
        """
        super().resume(filename, resume_optimizer=resume_optimizer,
                       resume_param_scheduler=resume_param_scheduler,
                       map_location=map_location)
        if not resume_param_scheduler:
            fast_forward_param_schedulers(self)
        if not (resume_optimizer or resume_param_scheduler):
            print_log(f'--reset-optimizer: resumed the weights and counters of {filename}; '
                      f'the optimizer and the lr schedule are the config\'s, at iteration '
                      f'{self.iter} (lr {_lr_text(self)})', logger='current')


def fast_forward_param_schedulers(runner) -> None:
    """Step freshly built param schedulers to the runner's (resumed) epoch and iteration.

    Replays what ``ParamSchedulerHook`` does in an uninterrupted run: iteration-based
    schedulers step after every iteration, epoch-based ones after every epoch of an
    ``EpochBasedTrainLoop`` (an ``IterBasedTrainLoop`` never steps them). The steps go
    in the same order, so the values are the same floats.

    Args:
        runner (Runner): Its ``param_schedulers`` are built and at step 0; its train loop
            holds the resumed ``epoch`` and ``iter``.
    """
    schedulers = _all_schedulers(runner.param_schedulers)
    if not schedulers:
        return
    by_iter = [s for s in schedulers if not s.by_epoch]
    by_epoch = [s for s in schedulers if s.by_epoch]
    for scheduler in by_epoch:
        if getattr(scheduler, 'need_val_args', False):
            print_log(f'--reset-optimizer: {type(scheduler).__name__} steps on validation '
                      'metrics, which a resume cannot replay; it starts from its beginning',
                      logger='current', level=logging.WARNING)
    by_epoch = [s for s in by_epoch if not getattr(s, 'need_val_args', False)]
    loop = runner.train_loop
    num_epochs = runner.epoch if isinstance(loop, EpochBasedTrainLoop) else 0
    epoch_length = len(loop.dataloader) if num_epochs else 0
    epochs_stepped = 0
    with warnings.catch_warnings():
        # "scheduler.step() before optimizer.step()": on purpose here
        warnings.simplefilter('ignore', UserWarning)
        for i in range(1, runner.iter + 1):
            _step(by_iter)
            if epoch_length and i % epoch_length == 0 and epochs_stepped < num_epochs:
                _step(by_epoch)
                epochs_stepped += 1
        for _ in range(num_epochs - epochs_stepped):
            _step(by_epoch)


def _all_schedulers(param_schedulers) -> List:
    if param_schedulers is None:
        return []
    if isinstance(param_schedulers, dict):  # one list per optimizer of an OptimWrapperDict
        return [s for group in param_schedulers.values() for s in group]
    return list(param_schedulers)


def _step(schedulers: Iterable) -> None:
    for scheduler in schedulers:
        scheduler.step()


def _lr_text(runner) -> str:
    return ', '.join(f'{lr[0]:.6g}' for lr in runner.optim_wrapper.get_lr().values())
