"""Replace the training pipeline from a given epoch on (e.g. RTMDet's last epochs without
Mosaic and MixUp)."""
from typing import List, Union

from mmcv.transforms import Compose
from mmengine.hooks import Hook

from ...registry import HOOKS, TRANSFORMS
from .dataloader_restart import drop_persistent_workers, restore_initialized


@HOOKS.register_module()
class PipelineSwitchHook(Hook):
    """Set ``train_dataloader.dataset.pipeline`` to ``switch_pipeline`` at ``switch_epoch``.

    The switch happens once, before the first training epoch whose 0-based index is at
    least ``switch_epoch``, so a run resumed after that epoch switches at its first epoch.
    With persistent workers the loader's workers are restarted so they see the new
    pipeline. The switch is logged at INFO level through ``runner.logger``, naming the
    epoch (1-based, as the training log counts) and the new pipeline's transforms.

    Args:
        switch_epoch (int): 0-based epoch from which the new pipeline is used.
        switch_pipeline (list[dict | callable]): Transform configs (built from
            ``TRANSFORMS``) or transforms of the new pipeline.
    """

    def __init__(self, switch_epoch: int, switch_pipeline: List[Union[dict, object]]) -> None:
        self.switch_epoch = switch_epoch
        self.switch_pipeline = switch_pipeline
        self._restart_dataloader = False
        self._has_switched = False

    def before_train_epoch(self, runner) -> None:
        """Switch the pipeline at the first epoch >= ``switch_epoch``."""
        train_loader = runner.train_dataloader
        if runner.epoch >= self.switch_epoch and not self._has_switched:
            pipeline = Compose([
                TRANSFORMS.build(t) if isinstance(t, dict) else t
                for t in self.switch_pipeline])
            train_loader.dataset.pipeline = pipeline
            # mmdetection logs only 'Switch pipeline now!'; keep that phrase for anyone
            # searching logs for it, and say when and to what.
            runner.logger.info(
                f'Switch pipeline now! From epoch {runner.epoch + 1} '
                f'(switch_epoch={self.switch_epoch}) the training pipeline is: '
                + ' -> '.join(type(t).__name__ for t in pipeline.transforms))
            if drop_persistent_workers(train_loader):
                self._restart_dataloader = True
            self._has_switched = True
        elif self._restart_dataloader:
            restore_initialized(train_loader)
