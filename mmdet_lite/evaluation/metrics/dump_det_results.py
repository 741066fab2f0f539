"""``DumpDetResults``: predictions pickled for offline evaluation, masks as RLE."""
import warnings
from typing import Optional, Sequence

import torch
from mmengine.evaluator.metric import _to_cpu

from mmdet_lite.registry import METRICS
from mmdet_lite.structures.mask import encode_mask_results
from .dump_results import AtomicDumpResults


@METRICS.register_module()
class DumpDetResults(AtomicDumpResults):
    """Pickle each data sample (as a dict, on the CPU) for offline evaluation.

    Unlike mmengine's ``DumpResults``, predicted instance masks are compressed to RLE
    (``pred_instances.masks`` becomes a list of RLE dicts) and the ground truth is dropped
    unless asked for. The file is written atomically (see :class:`AtomicDumpResults`).

    Args:
        keep_gt (bool): Keep ``gt_instances`` (needed to run ``VOCMetric`` offline).
            Defaults to False.
        keep_gt_ignore (bool): Keep ``ignored_instances``. Defaults to False.
        out_file_path (str): A ``.pkl`` / ``.pickle`` file.
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        collect_dir (str, optional): Folder for gathering on the CPU.
    """

    def __init__(self,
                 keep_gt: bool = False,
                 keep_gt_ignore: bool = False,
                 out_file_path: Optional[str] = None,
                 **kwargs) -> None:
        if out_file_path is None:
            raise TypeError("DumpDetResults needs out_file_path, a '.pkl' file")
        super().__init__(out_file_path=out_file_path, **kwargs)
        self.keep_gt = keep_gt
        self.keep_gt_ignore = keep_gt_ignore

    def process(self, data_batch: Optional[dict], data_samples: Sequence[dict]) -> None:
        """Store the CPU copy of each sample, without ground truth, masks as RLE."""
        data_samples = _to_cpu(data_samples)
        for sample in data_samples:
            if not self.keep_gt:
                sample.pop('gt_instances', None)
            if not self.keep_gt_ignore:
                sample.pop('ignored_instances', None)
            sample.pop('gt_panoptic_seg', None)
            pred = sample.get('pred_instances')
            if pred is not None and 'masks' in pred:
                masks = pred['masks']
                if isinstance(masks, torch.Tensor):
                    masks = masks.numpy()
                if not isinstance(masks, (list, tuple)):  # already-encoded masks stay as they are
                    pred['masks'] = encode_mask_results(masks)
            if 'pred_panoptic_seg' in sample:
                warnings.warn('Panoptic segmentation map will not be compressed. The dumped '
                              'file will be extremely large! Suggest using '
                              '`CocoPanopticMetric` to save the coco format json and '
                              'segmentation png files directly.')
        self.results.extend(data_samples)
