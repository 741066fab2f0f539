"""YOLOX's last epochs: no Mosaic/MixUp/RandomAffine, an extra L1 box loss."""
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...registry import HOOKS
from .dataloader_restart import drop_persistent_workers, restore_initialized


@HOOKS.register_module()
class YOLOXModeSwitchHook(Hook):
    """Before the last ``num_last_epochs`` epochs, skip the strong augmentations and turn
    on the head's L1 loss.

    Once, before the first epoch with ``epoch + 1 >= max_epochs - num_last_epochs``
    (0-based ``epoch``; a run resumed later switches at its first epoch), this calls
    ``train_dataloader.dataset.update_skip_type_keys(skip_type_keys)`` (the dataset is a
    :class:`MultiImageMixDataset`) and sets ``bbox_head.use_l1 = True`` on the model, or
    on ``model.detector`` when the model wraps one. With persistent workers the loader's
    workers are restarted so they see the change. Both changes are logged at INFO level
    through ``runner.logger``, naming the epoch (1-based, as the training log counts).

    Note the switch comes one epoch earlier than "the last ``num_last_epochs`` epochs": with
    ``max_epochs=300, num_last_epochs=15`` it happens before epoch index 284, so 16 epochs
    run without the augmentations (mmdetection's behaviour).

    Args:
        num_last_epochs (int): See above. Defaults to 15.
        skip_type_keys (Sequence[str]): Transform type names to skip from then on.
            Defaults to ('Mosaic', 'RandomAffine', 'MixUp').
    """

    def __init__(self,
                 num_last_epochs: int = 15,
                 skip_type_keys: Sequence[str] = ('Mosaic', 'RandomAffine', 'MixUp')) -> None:
        self.num_last_epochs = num_last_epochs
        self.skip_type_keys = skip_type_keys
        self._restart_dataloader = False
        self._has_switched = False

    def before_train_epoch(self, runner) -> None:
        """Switch the dataset and the head at the first epoch of the last phase."""
        train_loader = runner.train_dataloader
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        in_last_phase = runner.epoch + 1 >= runner.max_epochs - self.num_last_epochs
        if in_last_phase and not self._has_switched:
            # mmdetection's two messages start the lines; the rest says when and what.
            epoch, epochs_left = runner.epoch + 1, runner.max_epochs - runner.epoch
            train_loader.dataset.update_skip_type_keys(self.skip_type_keys)
            runner.logger.info(
                f'No mosaic and mixup aug now! From epoch {epoch} (the last {epochs_left} '
                f'of {runner.max_epochs} epochs) the training pipeline skips '
                + ', '.join(self.skip_type_keys))
            if drop_persistent_workers(train_loader):
                self._restart_dataloader = True
            detector = model.detector if hasattr(model, 'detector') else model
            detector.bbox_head.use_l1 = True
            runner.logger.info(
                f'Add additional L1 loss now! From epoch {epoch} bbox_head.use_l1 = True')
            self._has_switched = True
        elif self._restart_dataloader:
            restore_initialized(train_loader)
