"""DetVisualizationHook: draw predictions during validation and testing."""
import os.path as osp
import warnings
from typing import Optional, Sequence

import mmcv
from mmengine.fileio import get
from mmengine.hooks import Hook
from mmengine.utils import mkdir_or_exist
from mmengine.visualization import Visualizer

from ...registry import HOOKS
from ...structures import DetDataSample


@HOOKS.register_module()
class DetVisualizationHook(Hook):
    """Draw ground truth and predictions with the runner's visualizer.

    Where the drawings go during testing:

    1. ``show=True``: shown in a window only; the visualizer's backends are dropped so
       nothing is stored.
    2. ``test_out_dir`` set: written as image files to
       ``{work_dir}/{timestamp}/{test_out_dir}/{basename of img_path}``.
    3. otherwise: sent to the visualizer's backends (local files, TensorBoard ...).

    ``tools/test.py --show-dir DIR`` sets ``draw=True, test_out_dir=DIR``.

    Args:
        draw (bool): Whether to draw anything at all. Defaults to False.
        interval (int): During validation, draw the first image of every ``interval``-th
            iteration. Defaults to 50.
        score_thr (float): Predictions scoring at or below this are not drawn.
            Defaults to 0.3.
        show (bool): Whether to display the drawings in a window. Defaults to False.
        wait_time (float): Seconds each shown drawing stays up. Defaults to 0.
        test_out_dir (str, optional): Directory, relative to the run's timestamped work
            dir, to save test drawings into. Defaults to None.
        backend_args (dict, optional): mmengine file backend arguments for reading images.
            Defaults to None (local disk).
    """

    def __init__(self,
                 draw: bool = False,
                 interval: int = 50,
                 score_thr: float = 0.3,
                 show: bool = False,
                 wait_time: float = 0.,
                 test_out_dir: Optional[str] = None,
                 backend_args: Optional[dict] = None) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive int, got {interval!r}')
        if test_out_dir is not None and not isinstance(test_out_dir, str):
            raise TypeError(f'test_out_dir must be a str or None, got {type(test_out_dir)}')
        self.draw = draw
        self.interval = interval
        self.score_thr = score_thr
        self.show = show
        self.wait_time = wait_time
        self.test_out_dir = test_out_dir
        self.backend_args = backend_args
        self._visualizer: Optional[Visualizer] = None
        self._test_index = 0

    def _get_visualizer(self, runner) -> Visualizer:
        """The runner's visualizer (the current global one if the runner has none)."""
        if self._visualizer is None:
            visualizer = getattr(runner, 'visualizer', None)
            if visualizer is None:
                visualizer = Visualizer.get_current_instance()
            self._visualizer = visualizer
            if self.show:
                # showing replaces storing: keep the backends from saving every image too
                self._visualizer._vis_backends = {}
                warnings.warn('DetVisualizationHook(show=True) only displays drawings; the '
                              "visualizer's vis_backends are cleared and store nothing.")
        return self._visualizer

    def _draw(self, runner, data_sample: DetDataSample, name: str, step: int,
              out_dir: Optional[str] = None) -> None:
        """Load the sample's original image (as RGB) and draw the sample on it."""
        img_path = data_sample.metainfo.get('img_path')
        if img_path is None:
            raise KeyError("DetVisualizationHook needs 'img_path' in each data sample's "
                           'metainfo to load the image to draw on')
        img = mmcv.imfrombytes(get(img_path, backend_args=self.backend_args),
                               channel_order='rgb')  # [H, W, 3]
        if img is None:
            raise ValueError(f'could not decode an image from img_path {img_path!r}')
        self._get_visualizer(runner).add_datasample(
            osp.basename(img_path) if self.show else name,
            img,
            data_sample=data_sample,
            show=self.show,
            wait_time=self.wait_time,
            pred_score_thr=self.score_thr,
            out_file=None if out_dir is None else osp.join(out_dir, osp.basename(img_path)),
            step=step)

    def after_val_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                       outputs: Optional[Sequence[DetDataSample]] = None) -> None:
        """Draw the first sample of every ``interval``-th validation iteration.

        Args:
            runner (Runner): The runner; ``runner.iter`` offsets the count so images of
                successive validations are logged at distinct steps.
            batch_idx (int): Index of the batch in the validation loop.
            data_batch (dict, optional): The batch from the dataloader (unused).
            outputs (Sequence[DetDataSample]): The model's predictions for the batch.
        """
        if not self.draw or not outputs:
            return
        total_iter = runner.iter + batch_idx
        if total_iter % self.interval == 0:
            self._draw(runner, outputs[0], 'val_img', step=total_iter)

    def after_test_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence[DetDataSample]] = None) -> None:
        """Draw every sample of the test batch.

        Args:
            runner (Runner): The runner; ``work_dir`` and ``timestamp`` locate
                ``test_out_dir``.
            batch_idx (int): Index of the batch in the test loop.
            data_batch (dict, optional): The batch from the dataloader (unused).
            outputs (Sequence[DetDataSample]): The model's predictions for the batch.
        """
        if not self.draw or not outputs:
            return
        out_dir = None
        if self.test_out_dir is not None:
            out_dir = osp.join(runner.work_dir, runner.timestamp, self.test_out_dir)
            mkdir_or_exist(out_dir)
        for data_sample in outputs:
            self._test_index += 1
            self._draw(runner, data_sample, 'test_img', self._test_index, out_dir)
