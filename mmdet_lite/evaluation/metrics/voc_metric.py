"""Pascal VOC mAP and proposal recall (mmdetection's ``VOCMetric``)."""
import warnings
from collections import OrderedDict
from typing import Any, List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmdet_lite.registry import METRICS
from ..functional.coco_utils import to_numpy
from ..functional.mean_ap import EVAL_MODES, EvalModeError, eval_map
from ..functional.recall import eval_recalls

ALLOWED_METRICS = ('recall', 'mAP')


class VOCMetricArgumentError(ValueError, AssertionError):
    """A constructor argument mmdetection asserts on."""


def _boxes_to_numpy(boxes: Any) -> np.ndarray:
    """Box object (``.tensor``), tensor or array -> float32 array [N, 4]."""
    boxes = getattr(boxes, 'tensor', boxes)
    return to_numpy(boxes, np.float32).reshape(-1, 4)


@METRICS.register_module()
class VOCMetric(BaseMetric):
    """Pascal VOC evaluation: per-class AP (``'mAP'``) or proposal recall (``'recall'``).

    Results are keyed like mmdetection's (default prefix ``pascal_voc``): ``mAP`` (mean
    over ``iou_thrs`` of the mean AP, not rounded) and ``AP50``, ``AP75`` ... (rounded to 3
    decimals) for ``'mAP'``; ``recall@{num}@{iou}`` and, with several thresholds,
    ``AR@{num}`` for ``'recall'``. A per-class table (class, gts, dets, recall, ap) is
    logged for each threshold. Boxes use VOC's legacy pixel convention (``x2 - x1 + 1``).

    Ground truth is read from each sample's ``gt_instances`` and ``ignored_instances``
    (``difficult`` objects) as they come out of the test pipeline, so ``LoadAnnotations``
    must come after ``Resize`` there (as in mmdetection's VOC configs) to keep the boxes in
    original-image pixels, where the predictions are.

    Args:
        iou_thrs (float | list[float]): IoU thresholds. Defaults to 0.5.
        scale_ranges (list[tuple], optional): ``(min_side, max_side)`` ranges to evaluate
            separately (a table each; the reported AP is their mean); None: all boxes.
        metric (str | list[str]): ``'mAP'`` or ``'recall'`` (a list must hold one).
        proposal_nums (Sequence[int]): Proposal counts of ``'recall'``.
            Defaults to (100, 300, 1000).
        eval_mode (str): ``'11points'`` (VOC2007's AP) or ``'area'`` (VOC2010+).
            Defaults to ``'11points'``.
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        prefix (str, optional): Metric name prefix; ``'pascal_voc'`` if None.
    """

    default_prefix: Optional[str] = 'pascal_voc'

    def __init__(self,
                 iou_thrs: Union[float, List[float]] = 0.5,
                 scale_ranges: Optional[List[tuple]] = None,
                 metric: Union[str, List[str]] = 'mAP',
                 proposal_nums: Sequence[int] = (100, 300, 1000),
                 eval_mode: str = '11points',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.iou_thrs = [iou_thrs] if isinstance(iou_thrs, (int, float)) else list(iou_thrs)
        self.scale_ranges = scale_ranges
        if not isinstance(metric, str):
            if len(metric) != 1:
                raise VOCMetricArgumentError(f'VOCMetric evaluates one metric, got {metric}')
            metric = metric[0]
        if metric not in ALLOWED_METRICS:
            raise KeyError(f"metric should be one of 'recall', 'mAP', but got {metric}.")
        self.metric = metric
        self.proposal_nums = proposal_nums
        if eval_mode not in EVAL_MODES:
            raise EvalModeError(f'VOCMetric: eval_mode must be one of {EVAL_MODES}, got '
                                f'{eval_mode!r}')
        self.eval_mode = eval_mode

    def process(self, data_batch: Optional[dict], data_samples: Sequence[dict]) -> None:
        """Store each sample's ground truth and its detections split by class.

        Args:
            data_batch (dict, optional): The dataloader batch; unused.
            data_samples (Sequence[dict]): Samples as dicts with ``gt_instances``
                (``bboxes``, ``labels``), optional ``ignored_instances`` and
                ``pred_instances`` (``bboxes`` [N, 4], ``scores`` [N], ``labels`` [N]).
        """
        num_classes = len(self._classes())
        for sample in data_samples:
            for key in ('gt_instances', 'pred_instances'):
                if key not in sample:
                    raise KeyError(f'VOCMetric.process: each data sample needs `{key}`, got '
                                   f'keys {sorted(sample.keys())}')
            gt, ignored = sample['gt_instances'], sample.get('ignored_instances') or {}
            ann = dict(
                labels=to_numpy(gt['labels'], np.int64).reshape(-1),
                bboxes=_boxes_to_numpy(gt['bboxes']),
                bboxes_ignore=_boxes_to_numpy(ignored['bboxes']) if 'bboxes' in ignored
                else np.zeros((0, 4), dtype=np.float32),
                labels_ignore=to_numpy(ignored['labels'], np.int64).reshape(-1)
                if 'labels' in ignored else np.zeros(0, dtype=np.int64))
            pred = sample['pred_instances']
            bboxes = _boxes_to_numpy(pred['bboxes'])
            scores = to_numpy(pred['scores'], np.float32).reshape(-1, 1)
            labels = to_numpy(pred['labels'], np.int64).reshape(-1)
            dets = [np.hstack([bboxes[labels == c], scores[labels == c]])
                    for c in range(num_classes)]
            self.results.append((ann, dets))

    def _classes(self) -> Sequence[str]:
        if not self.dataset_meta or 'classes' not in self.dataset_meta:
            raise ValueError("VOCMetric needs dataset_meta['classes'] (set by the runner from "
                             'the dataset)')
        return self.dataset_meta['classes']

    def compute_metrics(self, results: list) -> dict:
        """Evaluate the gathered ``(ground truth, detections)`` pairs.

        Args:
            results (list): Pairs stored by :meth:`process`.

        Returns:
            dict: Metric name (without prefix) to value.
        """
        logger = MMLogger.get_current_instance()
        gts, preds = zip(*results)
        eval_results = OrderedDict()
        if self.metric == 'mAP':
            dataset_type = self.dataset_meta.get('dataset_type')
            if dataset_type in ('VOC2007', 'VOC2012'):
                dataset_name = 'voc'
                official = '11points' if dataset_type == 'VOC2007' else 'area'
                if self.eval_mode != official:
                    warnings.warn(f'Pascal {dataset_type} uses `{official}` as default '
                                  f'evaluate mode, but you are using {self.eval_mode}.')
            else:
                dataset_name = self._classes()
            mean_aps = []
            for iou_thr in self.iou_thrs:
                logger.info(f'\n{"-" * 15}iou_thr: {iou_thr}{"-" * 15}')
                # the VOC devkit counts pixels inclusively: w = x2 - x1 + 1
                mean_ap, _ = eval_map(preds, gts, scale_ranges=self.scale_ranges,
                                      iou_thr=iou_thr, dataset=dataset_name, logger=logger,
                                      eval_mode=self.eval_mode, use_legacy_coordinate=True)
                if isinstance(mean_ap, list):  # one per scale range (each in the log)
                    mean_ap = float(np.mean(mean_ap))
                mean_aps.append(mean_ap)
                eval_results[f'AP{int(iou_thr * 100):02d}'] = round(mean_ap, 3)
            eval_results['mAP'] = sum(mean_aps) / len(mean_aps)
            eval_results.move_to_end('mAP', last=False)
        else:
            # proposals are single-class results: class 0 holds them (as in mmdetection)
            recalls = eval_recalls([gt['bboxes'] for gt in gts], [pred[0] for pred in preds],
                                   self.proposal_nums, self.iou_thrs, logger=logger,
                                   use_legacy_coordinate=True)
            for i, num in enumerate(self.proposal_nums):
                for j, iou_thr in enumerate(self.iou_thrs):
                    eval_results[f'recall@{num}@{iou_thr}'] = recalls[i, j]
            if recalls.shape[1] > 1:
                for num, ar in zip(self.proposal_nums, recalls.mean(axis=1)):
                    eval_results[f'AR@{num}'] = ar
        return eval_results
