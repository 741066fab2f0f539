"""Mean Teacher: the teacher's weights follow an exponential moving average of the student's.

`Tarvainen & Valpola 2017 <https://arxiv.org/abs/1703.01780>`_. The semi-supervised
detector holds two copies of one architecture, ``student`` (trained by the optimizer) and
``teacher`` (which produces the pseudo labels and is updated only here).
"""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from ...registry import HOOKS
from .hook_errors import HookArgumentError, HookModelError


@HOOKS.register_module()
class MeanTeacherHook(Hook):
    """Update ``model.teacher`` as an exponential moving average of ``model.student``.

    After every ``interval``-th training iteration, each teacher parameter becomes
    ``(1 - momentum) * teacher + momentum * student``. Before training starts from
    iteration 0 the teacher gets a copy of the student's parameters (a resumed run keeps the
    teacher of its checkpoint). Parameters are paired by their order in ``named_parameters``
    (the two models share one architecture).

    Args:
        momentum (float): Weight of the student in each update, in (0, 1).
            Defaults to 0.001.
        interval (int): Update after every ``interval`` iterations. Defaults to 1.
        skip_buffer (bool): Average parameters only. With False, every floating point
            entry of the state dicts (BN running statistics too) is averaged, in
            ``state_dict`` order; integer buffers (``num_batches_tracked``) are left alone.
            Defaults to True.
    """

    def __init__(self,
                 momentum: float = 0.001,
                 interval: int = 1,
                 skip_buffer: bool = True) -> None:
        if not 0 < momentum < 1:
            raise HookArgumentError(
                f'MeanTeacherHook: momentum must be in (0, 1), got {momentum}')
        self.momentum = momentum
        self.interval = interval
        # mmdetection's argument is `skip_buffer`, its attribute `skip_buffers`.
        self.skip_buffers = skip_buffer

    @staticmethod
    def _unwrap(runner) -> nn.Module:
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        """Check the model has ``teacher`` and ``student``; at iteration 0 copy the student
        into the teacher.

        Raises:
            HookModelError: (an ``AssertionError`` too) ``teacher`` or ``student`` is missing.
        """
        model = self._unwrap(runner)
        missing = [name for name in ('teacher', 'student') if not hasattr(model, name)]
        if missing:
            raise HookModelError(
                f'MeanTeacherHook needs a semi-supervised model with `teacher` and `student` '
                f'submodules; {type(model).__name__} has no {" or ".join(missing)}')
        if runner.iter == 0:
            self.momentum_update(model, 1)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Move the teacher towards the student after every ``interval`` iterations."""
        if (runner.iter + 1) % self.interval != 0:
            return
        self.momentum_update(self._unwrap(runner), self.momentum)

    def momentum_update(self, model: nn.Module, momentum: float) -> None:
        """Set ``teacher = (1 - momentum) * teacher + momentum * student`` in place.

        Args:
            model (nn.Module): A model with ``teacher`` and ``student`` submodules.
            momentum (float): Weight of the student; 1 copies it.
        """
        if self.skip_buffers:
            pairs = zip(model.student.parameters(), model.teacher.parameters())
        else:
            pairs = ((src, dst) for src, dst in zip(model.student.state_dict().values(),
                                                    model.teacher.state_dict().values())
                     if dst.dtype.is_floating_point)
        for src, dst in pairs:
            dst.data.mul_(1 - momentum).add_(src.data, alpha=momentum)
