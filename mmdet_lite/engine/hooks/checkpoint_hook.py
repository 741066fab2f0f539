"""mmengine's ``CheckpointHook`` made safe to kill at any moment, and complete for resuming.

Registered under the same name, so every config's ``default_hooks.checkpoint =
dict(type='CheckpointHook', ...)`` builds it (scope ``mmdet_lite``); arguments are
mmengine's. What changes:

- **Atomic files.** A checkpoint is written to ``<name>.tmp``, flushed to disk and renamed
  over ``<name>``; the ``last_checkpoint`` pointer that ``--resume`` reads is replaced the
  same way, and only after that rename. A run killed mid-write leaves at most a ``.tmp``
  file, which nothing reads (and the next run deletes); ``last_checkpoint`` still names the
  previous complete checkpoint.
- **Old checkpoints go last.** mmengine deletes the oldest kept checkpoint
  (``max_keep_ckpts``) before writing the new one; here it is deleted after the new one is
  in place, so a failed write never leaves fewer complete checkpoints than before.
- **Failed writes say so.** An ``OSError`` while writing (a full disk, say) is re-raised
  naming the checkpoint path, the OS error and the checkpoint that is still the latest.
- **Exact resume.** Each checkpoint also holds every rank's RNG states, restored when
  training resumes (:mod:`.resume_state`) at the point of mmdet_lite's train loop
  (:mod:`mmdet_lite.engine.runner.loops`) where the checkpoint was taken.

Only rank 0 writes files (mmengine's ``Runner.save_checkpoint`` is ``master_only``);
every rank takes part in collecting the RNG states.
"""
import fnmatch
import os
import os.path as osp
import re
from contextlib import contextmanager
from typing import Iterator, Optional

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook

from ...registry import HOOKS
from ..resume_checkpoint import find_resume_checkpoint
from .resume_state import RESUME_STATE_KEY, ExactResume

# Suffix of a checkpoint file while it is being written.
TMP_SUFFIX = '.tmp'


def write_text_atomically(path: str, text: str) -> None:
    """Replace the file ``path`` by one holding ``text``; readers see the old or the new
    content, never a part."""
    tmp_path = path + TMP_SUFFIX
    with open(tmp_path, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_path, path)


def _fsync_file(path: str) -> None:
    # the rename must not reach the disk before the data it points at
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


@HOOKS.register_module()
class CheckpointHook(MMEngineCheckpointHook):
    """Save checkpoints atomically and with the state needed to resume exactly.

    Args:
        **kwargs: Arguments of mmengine's ``CheckpointHook`` (``interval``, ``by_epoch``,
            ``max_keep_ckpts``, ``save_best``, ``filename_tmpl``, ...), same defaults.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.exact_resume = ExactResume()
        self._resume_state_to_save: Optional[dict] = None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and self._is_local():
            self._remove_partial_files(runner)
        self.exact_resume.install(runner)

    def before_val(self, runner) -> None:
        self.exact_resume.before_val()

    def after_val(self, runner) -> None:
        self.exact_resume.after_val()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._resume_state_to_save is not None:
            checkpoint[RESUME_STATE_KEY] = self._resume_state_to_save

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.exact_resume.load(checkpoint)

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        """Write the checkpoint of ``step``, then point ``last_checkpoint`` at it, then
        delete the checkpoint that falls out of ``max_keep_ckpts``."""
        outdated = None
        # _save_best_checkpoint may save the same step again: it is kept once
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        self._resume_state_to_save = self.exact_resume.gather()  # every rank takes part
        try:
            self._save_atomically(runner, ckpt_filename,
                                  file_client_args=self.file_client_args,
                                  save_optimizer=self.save_optimizer,
                                  save_param_scheduler=self.save_param_scheduler,
                                  meta=meta, by_epoch=self.by_epoch,
                                  backend_args=self.backend_args, **self.args)
        finally:
            self._resume_state_to_save = None
        if not is_main_process():
            return

        last_file = osp.join(runner.work_dir, 'last_checkpoint')
        write_text_atomically(last_file, self.last_ckpt)
        if outdated is not None:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed writes folders
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        """mmengine's best-checkpoint logic, with its file written atomically too."""
        with self._atomic_runner_saves(runner):
            super()._save_best_checkpoint(runner, metrics)

    @contextmanager
    def _atomic_runner_saves(self, runner) -> Iterator[None]:
        # mmengine's _save_best_checkpoint calls runner.save_checkpoint(out_dir, filename,
        # ...) directly (out_dir is always self.out_dir); for its duration that call goes
        # through _save_atomically
        runner.save_checkpoint = (
            lambda _out_dir, filename, *args, **kwargs: self._save_atomically(
                runner, filename, *args, **kwargs))
        try:
            yield
        finally:
            del runner.save_checkpoint

    def _save_atomically(self, runner, filename: str, *args, **kwargs) -> None:
        """``runner.save_checkpoint`` into ``filename + '.tmp'``, then rename it.

        Raises:
            OSError: Writing or renaming failed; names the file and the OS error.
        """
        if not self._is_local():  # object stores have no rename; write directly
            type(runner).save_checkpoint(runner, self.out_dir, filename, *args, **kwargs)
            return
        path = osp.join(self.out_dir, filename)
        tmp_path = path + TMP_SUFFIX
        try:
            type(runner).save_checkpoint(runner, self.out_dir, filename + TMP_SUFFIX,
                                         *args, **kwargs)
            if is_main_process():
                _fsync_file(tmp_path)
                os.replace(tmp_path, path)
        except OSError as err:
            if is_main_process() and osp.exists(tmp_path):
                os.remove(tmp_path)
            previous = find_resume_checkpoint(runner.work_dir)  # what --resume would load
            kept = (f'the latest complete checkpoint is still {previous}' if previous else
                    'there is no earlier checkpoint to resume from')
            raise OSError(err.errno, f'could not save checkpoint {path}: '
                          f'{err.strerror or err}. The partial file was removed and {kept} '
                          '(free disk space or set default_hooks.checkpoint.out_dir, then '
                          'resume with --resume)') from err
        finally:
            if is_main_process() and osp.exists(tmp_path):  # any other failure
                os.remove(tmp_path)

    def _is_local(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    def _remove_partial_files(self, runner) -> None:
        """Delete ``*.tmp`` checkpoints a killed run left behind in ``out_dir``."""
        if not osp.isdir(self.out_dir):
            return
        # 'epoch_{}.pth' -> 'epoch_*.pth.tmp' (also for format specs such as '{:04d}')
        patterns = [re.sub(r'\{[^}]*\}', '*', self.filename_tmpl) + TMP_SUFFIX,
                    'best_*' + TMP_SUFFIX]
        for name in sorted(os.listdir(self.out_dir)):
            if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                runner.logger.warning(f'Removing {name}: a checkpoint whose writing was '
                                      'interrupted')
                os.remove(osp.join(self.out_dir, name))
