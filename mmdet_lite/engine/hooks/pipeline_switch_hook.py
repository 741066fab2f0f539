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
    pipeline.

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
            runner.logger.info('Switch pipeline now!')
            train_loader.dataset.pipeline = Compose([
                TRANSFORMS.build(t) if isinstance(t, dict) else t
                for t in self.switch_pipeline])
            if drop_persistent_workers(train_loader):
                self._restart_dataloader = True
            self._has_switched = True
        elif self._restart_dataloader:
            restore_initialized(train_loader)
