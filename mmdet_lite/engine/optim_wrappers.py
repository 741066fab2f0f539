"""mmengine's optimizer wrappers, able to skip the update of a step whose loss is not finite.

:class:`~mmdet_lite.engine.hooks.NonFiniteLossHook` must stop (or skip) a step with a NaN or
infinite loss *before* ``backward`` and the optimizer step turn every weight into NaN. The
one place that sees the loss before both is the optimizer wrapper's ``update_params(loss)``
(mmengine's ``BaseModel.train_step`` and ``MMDistributedDataParallel.train_step`` call it
with the parsed loss), and mmengine has no hook or callback there. So, as issue 14 asks
where a public extension point is missing, the registered classes are subclassed:
:class:`NonFiniteGuardMixin` overrides ``update_params`` once, and :class:`OptimWrapper`,
:class:`AmpOptimWrapper` and :class:`~mmdet_lite.engine.amp.CPUAmpOptimWrapper` inherit it.

They are registered in mmdet_lite's ``OPTIM_WRAPPERS`` under mmengine's own names
``'OptimWrapper'`` and ``'AmpOptimWrapper'``. mmengine's optimizer-wrapper constructor builds
``optim_wrapper = dict(type='OptimWrapper', ...)`` (the type it also defaults to) through
the registry, and with ``default_scope = 'mmdet_lite'`` (every config's runtime) a build
switches to the registry of that scope, :data:`mmdet_lite.registry.OPTIM_WRAPPERS`, and
looks the name up there before its mmengine parent. So configs get these classes unchanged,
with no new type name to learn; a wrapper built in another scope, or a user's own wrapper
class, gets the check by inheriting :class:`NonFiniteGuardMixin` (first in its bases).

Without an attached guard (no ``NonFiniteLossHook`` in the run) the wrappers behave exactly
as mmengine's: ``update_params`` checks nothing and communicates nothing.
"""
from typing import Callable, Dict, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper
from mmengine.optim import OptimWrapper as MMEngineOptimWrapper

from ..registry import OPTIM_WRAPPERS

#: Called, instead of the update, with the loss of a step that was skipped.
NonFiniteGuard = Callable[[torch.Tensor], None]


def loss_is_finite_on_all_ranks(loss: torch.Tensor) -> bool:
    """Whether ``loss`` is finite on every rank: one all-reduce of one number when
    distributed (every rank must call it), none otherwise."""
    num_bad_ranks = torch.tensor([0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0],
                                 device=loss.device)
    all_reduce(num_bad_ranks, op='sum')  # returns at once in a non-distributed run
    return num_bad_ranks.item() == 0


class NonFiniteGuardMixin:
    """``update_params`` that skips backward, step and ``zero_grad`` for a non-finite loss.

    While a guard is attached (:meth:`attach_nonfinite_guard`; ``NonFiniteLossHook`` does it
    in ``before_train``), ``update_params(loss)`` first checks the loss. When it is NaN or
    infinite on any rank (ranks agree with one all-reduce, so that every rank skips and DDP's
    gradient all-reduce never waits for a rank that skipped), nothing is updated: no
    backward (so the gradient-accumulation count does not advance either), no optimizer or
    momentum step, no ``zero_grad``; the guard is called with this rank's loss instead.
    Otherwise, and always without a guard, the wrapper's own ``update_params`` runs.

    Put it first in the bases of a wrapper class: ``class MyWrapper(NonFiniteGuardMixin,
    OptimWrapper)``.
    """

    _nonfinite_guard: Optional[NonFiniteGuard] = None

    @property
    def nonfinite_guard(self) -> Optional[NonFiniteGuard]:
        """The attached guard, or ``None``."""
        return self._nonfinite_guard

    def attach_nonfinite_guard(self, guard: NonFiniteGuard) -> None:
        """Skip the update of steps with a non-finite loss, calling ``guard(loss)`` instead.

        Args:
            guard (callable): Called with this rank's loss (possibly finite: another rank's
                was not) of each skipped ``update_params``.
        """
        if not callable(guard):
            raise TypeError(f'attach_nonfinite_guard: the guard must be callable, got '
                            f'{guard!r}')
        # the update_params that runs must be this mixin's (or one of a class deriving
        # from it, which calls it through super()), not one of a base listed before it
        kind = type(self)
        owner = next(c for c in kind.__mro__ if 'update_params' in vars(c))
        if not issubclass(owner, NonFiniteGuardMixin):
            raise TypeError(f'{kind.__name__}: NonFiniteGuardMixin must come before '
                            f'{owner.__name__} in the bases, or {owner.__name__}.update_params '
                            f'runs without the check: class {kind.__name__}('
                            f'NonFiniteGuardMixin, ...)')
        self._nonfinite_guard = guard

    def detach_nonfinite_guard(self) -> None:
        """Go back to the plain ``update_params`` of the wrapper."""
        self._nonfinite_guard = None

    def update_params(self, loss: torch.Tensor, step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """The wrapper's ``update_params``, skipped (see the class) for a non-finite loss."""
        guard = self._nonfinite_guard
        if guard is not None and not loss_is_finite_on_all_ranks(loss):
            guard(loss)
            return
        super().update_params(loss, step_kwargs=step_kwargs,  # type: ignore[misc]
                              zero_kwargs=zero_kwargs)


@OPTIM_WRAPPERS.register_module()
class OptimWrapper(NonFiniteGuardMixin, MMEngineOptimWrapper):
    """mmengine's ``OptimWrapper`` with :class:`NonFiniteGuardMixin`; registered under
    mmengine's name (see the module docstring for why a subclass and why that name)."""


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(NonFiniteGuardMixin, MMEngineAmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` (fp16 autocast, ``GradScaler``) with
    :class:`NonFiniteGuardMixin`; registered under mmengine's name (see the module
    docstring for why a subclass and why that name)."""
