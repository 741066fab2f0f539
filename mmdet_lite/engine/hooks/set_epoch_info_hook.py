"""Tell the model which epoch is starting."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...registry import HOOKS


@HOOKS.register_module()
class SetEpochInfoHook(Hook):
    """Call ``model.set_epoch(runner.epoch)`` before every training epoch.

    For models whose behaviour depends on the epoch (e.g. a detector that switches its
    assigner after some epochs). The model (unwrapped from DDP) must have ``set_epoch``; the
    epoch passed is 0-based.
    """

    def before_train_epoch(self, runner) -> None:
        """Pass the 0-based index of the starting epoch to ``model.set_epoch``."""
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.set_epoch(runner.epoch)
