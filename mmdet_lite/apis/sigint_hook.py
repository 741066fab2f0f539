"""A hook that stops a run at its next step once Ctrl-C was pressed, even if the
``KeyboardInterrupt`` of that Ctrl-C got swallowed (see :func:`.cli.record_sigint`).

Kept apart from :mod:`.cli`, which the tools import before torch is loaded.
"""
from typing import Optional

from mmengine.hooks import Hook

from .cli import SigintRecord


class SigintCheckHook(Hook):
    """Raise ``KeyboardInterrupt`` at the start and end of every iteration and epoch
    (training, validation and testing) once ``record`` holds a SIGINT.

    Registered by ``tools/train.py`` on its Runner, not built from configs. The highest
    priority makes it run before the other hooks of a step, so that an interrupted run
    does no more work than the step it was in.

    Args:
        record (SigintRecord): What :func:`~mmdet_lite.apis.cli.record_sigint` yields.
    """

    priority = 'HIGHEST'

    def __init__(self, record: SigintRecord) -> None:
        self.record = record

    def _before_epoch(self, runner, mode: str = 'train') -> None:
        self.record.raise_if_received()

    def _after_epoch(self, runner, mode: str = 'train') -> None:
        self.record.raise_if_received()

    def _before_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                     mode: str = 'train') -> None:
        self.record.raise_if_received()

    def _after_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                    outputs=None, mode: str = 'train') -> None:
        self.record.raise_if_received()
