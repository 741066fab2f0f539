"""COCO detection, instance-segmentation and proposal evaluation through pycocotools."""
import contextlib
import copy
import io
import logging
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.fileio import dump, get_local_path, load
from mmengine.logging import print_log
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmdet_lite.registry import METRICS
from mmdet_lite.structures.mask import encode_mask_results
from mmdet_lite.structures.mask.segmentation_check import box_polygon, clean_coco_segmentations
from ..functional.ascii_table import ascii_table
from ..functional.coco_utils import (gt_to_coco_dict, quiet_coco, results_to_coco,
                                     sample_to_gt_dict, to_numpy)
from ..functional.recall import eval_recalls
from .coco_eval_backend import build_coco_eval, check_eval_backend

ALLOWED_METRICS = ('bbox', 'segm', 'proposal', 'proposal_fast')
# Position of each summary number in ``COCOeval.stats`` (mmdetection's names).
COCO_STAT_INDEX = OrderedDict([
    ('mAP', 0), ('mAP_50', 1), ('mAP_75', 2), ('mAP_s', 3), ('mAP_m', 4), ('mAP_l', 5),
    ('AR@100', 6), ('AR@300', 7), ('AR@1000', 8),
    ('AR_s@1000', 9), ('AR_m@1000', 10), ('AR_l@1000', 11)])
DEFAULT_AP_ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
DEFAULT_AR_ITEMS = ('AR@100', 'AR@300', 'AR@1000', 'AR_s@1000', 'AR_m@1000', 'AR_l@1000')


class CocoMetricArgumentError(ValueError, AssertionError):
    """A constructor argument mmdetection asserts on (e.g. format_only without a prefix)."""


@METRICS.register_module()
class CocoMetric(BaseMetric):
    """COCO AP/AR for boxes (``bbox``), masks (``segm``) and class-agnostic proposals.

    Results are keyed like mmdetection's: ``coco/bbox_mAP``, ``coco/bbox_mAP_50`` ...,
    ``coco/segm_mAP`` ..., ``coco/AR@100`` ... for proposals, and with ``classwise``
    ``coco/{class}_precision`` (per-class AP; with several metrics the last one evaluated
    wins, as in mmdetection). Values are rounded to 3 decimals; -1 means "not defined" (no
    ground truth in that area range), COCO's convention.

    Invalid segmentations in ``ann_file`` (polygons with fewer than 3 points, an odd number
    of coordinates or a NaN/inf coordinate; malformed RLEs) are dropped when it is read,
    with one warning, as ``CocoDataset`` drops them: pycocotools would fail on them during
    segm evaluation. A ground-truth annotation left without a valid mask is an ignored
    region (crowd, covering its box) in segm evaluation and an ordinary box in bbox
    evaluation, which matches training: ``LoadAnnotations(with_mask=True)`` ignores it.

    Args:
        ann_file (str, optional): COCO annotation json. If None, the ground truth is
            converted from each sample's ``instances`` or ``gt_instances``.
        metric (str | list[str]): Any of 'bbox', 'segm', 'proposal' (COCOeval, class
            agnostic) and 'proposal_fast' (``eval_recalls`` over ``proposal_nums`` and
            ``iou_thrs``, reported as ``AR@{num}``, not rounded). Defaults to 'bbox'.
        classwise (bool): Also log a per-class AP table and report per-class AP.
        proposal_nums (Sequence[int]): Max detections per image (``COCOeval.params.maxDets``);
            COCOeval metrics need at least three, the AR items name them 100, 300, 1000.
        iou_thrs (float | Sequence[float] | np.ndarray, optional): IoU thresholds;
            0.50:0.05:0.95 if None.
        metric_items (Sequence[str], optional): Which summary numbers to report, from
            ``COCO_STAT_INDEX``. Defaults to the six AP items (six AR items for proposals).
        format_only (bool): Only write the result json files (and ``.gt.json`` for
            converted ground truth), no evaluation, and return an empty dict (e.g. for a
            test-server submission). Requires ``outfile_prefix``.
        outfile_prefix (str, optional): Write ``{prefix}.bbox.json`` (and ``.segm.json``,
            and ``.gt.json`` for converted ground truth) when given.
        file_client_args (dict, optional): Removed in mmdetection 3.x; giving it is an error.
        backend_args (dict, optional): mmengine file backend arguments for ``ann_file``.
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        prefix (str, optional): Metric name prefix; ``default_prefix`` 'coco' if None.
        sort_categories (bool): Sort the annotation file's categories by id (Objects365).
        use_mp_eval (bool): Accepted for config compatibility; evaluation is single-process
            (mmdetection's multi-process COCOeval gives the same numbers).
        eval_backend (str): ``'pycocotools'`` (default) or ``'faster-coco-eval'`` (the
            ``faster-coco-eval`` package's C++ COCOeval: same numbers, faster on large
            sets; ImportError naming the package if it is not installed). Not in
            mmdetection 3.3.
    """
    default_prefix: Optional[str] = 'coco'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 metric: Union[str, List[str]] = 'bbox',
                 classwise: bool = False,
                 proposal_nums: Sequence[int] = (100, 300, 1000),
                 iou_thrs: Optional[Union[float, Sequence[float]]] = None,
                 metric_items: Optional[Sequence[str]] = None,
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 file_client_args: Optional[dict] = None,
                 backend_args: Optional[dict] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 sort_categories: bool = False,
                 use_mp_eval: bool = False,
                 eval_backend: str = 'pycocotools') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.metrics = list(metric) if isinstance(metric, (list, tuple)) else [metric]
        for name in self.metrics:
            if name not in ALLOWED_METRICS:
                raise KeyError(f'CocoMetric: unknown metric {name!r}; allowed metrics are '
                               f'{list(ALLOWED_METRICS)}')
        self.classwise = classwise
        self.proposal_nums = [int(n) for n in proposal_nums]
        uses_cocoeval = any(name != 'proposal_fast' for name in self.metrics)
        if uses_cocoeval and len(self.proposal_nums) < 3:
            raise ValueError('CocoMetric: proposal_nums needs at least 3 values (COCO reports '
                             f'recall at three detection limits), got {proposal_nums}')
        if iou_thrs is None:  # the same construction as pycocotools, so 0.5/0.75 match exactly
            iou_thrs = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
        self.iou_thrs = np.atleast_1d(np.asarray(iou_thrs, dtype=np.float64))
        if metric_items is not None:
            unknown = [item for item in metric_items if item not in COCO_STAT_INDEX]
            if unknown:
                raise KeyError(f'CocoMetric: unknown metric_items {unknown}; allowed items are '
                               f'{list(COCO_STAT_INDEX)}')
            metric_items = list(metric_items)
        self.metric_items = metric_items
        if format_only and outfile_prefix is None:
            raise CocoMetricArgumentError(
                "CocoMetric: format_only=True needs outfile_prefix (e.g. 'work_dirs/results/"
                "coco'), where the result json files are written")
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix
        if file_client_args is not None:
            raise RuntimeError('CocoMetric: `file_client_args` is deprecated, use '
                               '`backend_args` instead')
        self.backend_args = backend_args
        check_eval_backend(eval_backend)
        self.eval_backend = eval_backend
        self.use_mp_eval = use_mp_eval
        if use_mp_eval:
            print_log('CocoMetric: use_mp_eval is not supported, evaluating in one process',
                      logger='current', level=logging.WARNING)
        self._coco_api = None if ann_file is None else self._load_ann_file(
            ann_file, sort_categories)
        self.cat_ids: Optional[List[int]] = None
        self.img_ids: Optional[List[int]] = None
        self._segm_coco_api: Optional[COCO] = None  # _coco_api as segm evaluation reads it

    def _load_ann_file(self, ann_file: str, sort_categories: bool) -> COCO:
        """Read a COCO json (any mmengine backend), optionally sorting its categories by id."""
        with get_local_path(ann_file, backend_args=self.backend_args) as local_path:
            if not osp.isfile(local_path):
                raise FileNotFoundError(f'CocoMetric: ann_file not found: {ann_file}')
            dataset = load(local_path, file_format='json')
        if sort_categories:  # Objects365 files list categories out of id order
            dataset['categories'] = sorted(dataset['categories'], key=lambda c: c['id'])
        if isinstance(dataset, dict):
            # pycocotools fails on invalid polygons in segm evaluation (a NaN coordinate
            # exhausts memory); drop them now, as CocoDataset does, with one warning
            clean_coco_segmentations(dataset, ann_file)
            annotations = dataset.get('annotations') or []
            if 'segm' in self.metrics and annotations and not any(
                    isinstance(a, dict) and 'segmentation' in a for a in annotations):
                raise ValueError(f"CocoMetric: metric 'segm' needs instance masks, but no "
                                 f"annotation of '{ann_file}' has a 'segmentation'; evaluate "
                                 "metric='bbox' or use an annotation file with masks")
        return quiet_coco(dataset)

    def process(self, data_batch: Optional[dict], data_samples: Sequence[dict]) -> None:
        """Store one batch of predictions (and ground truth when there is no ann_file).

        Args:
            data_batch (dict, optional): The dataloader batch; unused.
            data_samples (Sequence[dict]): Samples as dicts with ``img_id``, ``ori_shape`` and
                ``pred_instances``: ``bboxes`` [N, 4] (x1, y1, x2, y2, original pixels),
                ``scores`` [N], ``labels`` [N] and optional ``masks`` [N, H, W] (bool tensor
                or already RLE-encoded) and ``mask_scores`` [N].
        """
        for sample in data_samples:
            if 'pred_instances' not in sample or 'img_id' not in sample:
                raise KeyError('CocoMetric.process: each data sample needs `img_id` and '
                               f'`pred_instances`, got keys {sorted(sample.keys())}')
            pred = sample['pred_instances']
            result = dict(img_id=sample['img_id'],
                          bboxes=to_numpy(pred['bboxes'], np.float32).reshape(-1, 4),
                          scores=to_numpy(pred['scores'], np.float32).reshape(-1),
                          labels=to_numpy(pred['labels'], np.int64).reshape(-1))
            if 'masks' in pred:
                # Encoding now keeps the gathered results small across ranks.
                result['masks'] = _as_rles(pred['masks'])
            if 'mask_scores' in pred:
                result['mask_scores'] = to_numpy(pred['mask_scores'], np.float32).reshape(-1)
            needs_gt = self._coco_api is None and not self.format_only
            gt = sample_to_gt_dict(sample) if needs_gt else None
            self.results.append((gt, result))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Evaluate all gathered results (called on rank 0 only).

        Args:
            results (list): ``(gt, prediction)`` pairs stored by :meth:`process`.

        Returns:
            dict[str, float]: Metric name (without prefix) to value; empty for format_only.
        """
        gts = [gt for gt, _ in results]
        preds = [pred for _, pred in results]
        coco_gt = self._coco_api
        if coco_gt is None and not self.format_only:
            coco_gt = quiet_coco(_with_box_areas(gt_to_coco_dict(gts, self._classes())))
            if self.outfile_prefix is not None:
                dump(coco_gt.dataset, f'{self.outfile_prefix}.gt.json')
        self.cat_ids = self._resolve_cat_ids(coco_gt)
        bbox_results, segm_results = results_to_coco(preds, self.cat_ids)
        if self.outfile_prefix is not None:
            self._dump_results(bbox_results, segm_results)
        if self.format_only:
            print_log(f'CocoMetric: results saved with prefix {self.outfile_prefix}',
                      logger='current')
            return OrderedDict()

        self.img_ids = coco_gt.getImgIds() if self._coco_api is not None else list(
            coco_gt.imgs)
        eval_results = OrderedDict()
        for metric in self.metrics:
            if metric == 'proposal_fast':
                eval_results.update(self._fast_eval_recall(coco_gt, preds))
                continue
            if metric == 'segm':
                if segm_results is None and preds:
                    raise KeyError("CocoMetric: metric 'segm' needs pred_instances.masks, but "
                                   'the predictions have no masks')
                # Without 'bbox', loadRes takes areas from the masks, as COCO defines segm.
                detections = [{k: v for k, v in r.items() if k != 'bbox'}
                              for r in segm_results or []]
            else:
                detections = copy.deepcopy(bbox_results)
            gt = self._segm_gt(coco_gt) if metric == 'segm' else coco_gt
            eval_results.update(self._evaluate(metric, gt, detections))
        return eval_results

    def _fast_eval_recall(self, coco_gt: COCO, preds: List[dict]) -> Dict[str, float]:
        """``proposal_fast``: recall of the non-crowd ground truth by each image's boxes,
        averaged over ``iou_thrs``, at each of ``proposal_nums`` (mmdetection's
        ``fast_eval_recall``). The boxes are taken in the order they were predicted."""
        gt_bboxes = []
        for pred in preds:
            anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[pred['img_id']]))
            boxes = [[x, y, x + w, y + h] for x, y, w, h in
                     (ann['bbox'] for ann in anns
                      if not (ann.get('ignore', False) or ann.get('iscrowd', 0)))]
            gt_bboxes.append(np.array(boxes, dtype=np.float32).reshape(-1, 4))
        recalls = eval_recalls(gt_bboxes, [pred['bboxes'] for pred in preds],
                               self.proposal_nums, self.iou_thrs, logger='current')
        average_recall = recalls.mean(axis=1)
        results = OrderedDict((f'AR@{num}', average_recall[i])
                              for i, num in enumerate(self.proposal_nums))
        print_log(''.join(f'\nAR@{num}\t{ar:.4f}' for num, ar in
                          zip(self.proposal_nums, average_recall)), logger='current')
        return results

    def _segm_gt(self, coco_gt: COCO) -> COCO:
        """``coco_gt`` as segm evaluation reads it: annotations without a usable mask
        (none given, or all of it invalid) become ignored regions covering their box.

        pycocotools would fail on them; dropping them would count a correct mask
        prediction there as a false positive. One without a usable box is left out.
        """
        if coco_gt is self._coco_api and self._segm_coco_api is not None:
            return self._segm_coco_api
        annotations = coco_gt.dataset.get('annotations') or []
        unusable = [ann for ann in annotations if not ann.get('segmentation')]
        segm_gt = coco_gt
        if unusable:
            print_log(f'CocoMetric: {len(unusable)} ground-truth annotation(s) have no valid '
                      f"mask (first: id={unusable[0].get('id')}); segm evaluation ignores "
                      'detections in their boxes and does not count them as objects',
                      logger='current', level=logging.WARNING)
            kept = []
            for ann in annotations:
                if ann.get('segmentation'):
                    kept.append(ann)
                elif box_polygon(ann.get('bbox')) is not None:
                    kept.append(dict(ann, iscrowd=1, segmentation=box_polygon(ann['bbox'])))
            segm_gt = quiet_coco(dict(coco_gt.dataset, annotations=kept))
        if coco_gt is self._coco_api:
            self._segm_coco_api = segm_gt
        return segm_gt

    def _classes(self) -> Sequence[str]:
        if not self.dataset_meta or 'classes' not in self.dataset_meta:
            raise ValueError("CocoMetric needs dataset_meta['classes'] (set by the runner from "
                             'the dataset) when ann_file is None')
        return self.dataset_meta['classes']

    def _resolve_cat_ids(self, coco_gt: Optional[COCO]) -> List[int]:
        """COCO category id of each label: label i is the category named ``classes[i]``.

        This is how ``CocoDataset`` assigns labels (class order, the first category of a
        name), so predicted labels map back to the ids the annotation file uses.
        """
        if self._coco_api is None:  # converted ground truth uses the label as category id
            return list(range(len(self._classes())))
        if not self.dataset_meta or 'classes' not in self.dataset_meta:
            return list(coco_gt.getCatIds())
        name_to_id: Dict[str, int] = {}
        for cat in coco_gt.dataset['categories']:
            name_to_id.setdefault(cat['name'], cat['id'])
        classes = list(self.dataset_meta['classes'])
        missing = [name for name in classes if name not in name_to_id]
        if missing:
            raise ValueError(f'CocoMetric: classes {missing} of dataset_meta are not '
                             f'categories of the annotation file ({sorted(name_to_id)})')
        return [name_to_id[name] for name in classes]

    def _dump_results(self, bbox_results: List[dict],
                      segm_results: Optional[List[dict]]) -> None:
        dump(bbox_results, f'{self.outfile_prefix}.bbox.json')
        if segm_results is not None:
            dump(segm_results, f'{self.outfile_prefix}.segm.json')

    def _evaluate(self, metric: str, coco_gt: COCO, detections: List[dict]) -> Dict[str, float]:
        """Run COCOeval for one metric and pick the requested summary numbers."""
        print_log(f'Evaluating {metric}...', logger='current')
        if detections:
            unknown = {d['image_id'] for d in detections} - set(coco_gt.getImgIds())
            if unknown:
                raise ValueError(f'CocoMetric: predictions for img_id {sorted(unknown)[:10]} '
                                 'whose images are not in the ground truth')
        else:  # loadRes cannot take an empty list; score against an empty result set
            print_log(f'CocoMetric: there are no detections at all, so {metric} AP and AR '
                      'are 0 (-1 where there is no ground truth either)', logger='current',
                      level=logging.WARNING)
        coco_eval = build_coco_eval(self.eval_backend, coco_gt, detections,
                                    'bbox' if metric == 'proposal' else metric)
        coco_eval.params.catIds = self.cat_ids
        coco_eval.params.imgIds = self.img_ids
        coco_eval.params.maxDets = list(self.proposal_nums)
        coco_eval.params.iouThrs = self.iou_thrs
        if metric == 'proposal':
            coco_eval.params.useCats = 0  # proposals are class-agnostic
        summary = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
            coco_eval.accumulate()
        with contextlib.redirect_stdout(summary):
            coco_eval.summarize()
        print_log('\n' + summary.getvalue().rstrip(), logger='current')

        eval_results = OrderedDict()
        if metric == 'proposal':
            for item in self.metric_items or DEFAULT_AR_ITEMS:
                eval_results[item] = round(float(coco_eval.stats[COCO_STAT_INDEX[item]]), 3)
            return eval_results
        if self.classwise:
            eval_results.update(self._classwise_ap(coco_eval, coco_gt))
        for item in self.metric_items or DEFAULT_AP_ITEMS:
            value = float(coco_eval.stats[COCO_STAT_INDEX[item]])
            eval_results[f'{metric}_{item}'] = round(value, 3)
        ap = coco_eval.stats[:6]
        print_log(f'{metric}_mAP_copypaste: ' + ' '.join(f'{v:.3f}' for v in ap),
                  logger='current')
        return eval_results

    def _classwise_ap(self, coco_eval: COCOeval, coco_gt: COCO) -> Dict[str, float]:
        """Log a per-class AP table and return ``{class}_precision`` (AP@[.5:.95])."""
        # precision: [num_iou_thrs, num_recall_thrs, num_classes, num_area_ranges, num_max_dets]
        precisions = coco_eval.eval['precision']

        def mean_ap(iou_idx: Optional[int], cls_idx: int, area_idx: int) -> float:
            # The last maxDets column is the largest detection limit.
            p = precisions[:, :, cls_idx, area_idx, -1]
            if iou_idx is not None:
                p = p[iou_idx] if iou_idx >= 0 else p[:0]
            p = p[p > -1]  # -1 marks "no ground truth"
            return float(np.mean(p)) if p.size else float('nan')

        def iou_index(thr: float) -> int:
            hits = np.flatnonzero(np.isclose(self.iou_thrs, thr))
            return int(hits[0]) if hits.size else -1

        per_class, rows = OrderedDict(), []
        for cls_idx, cat_id in enumerate(self.cat_ids):
            name = coco_gt.loadCats(cat_id)[0]['name']
            values = [mean_ap(None, cls_idx, 0), mean_ap(iou_index(0.5), cls_idx, 0),
                      mean_ap(iou_index(0.75), cls_idx, 0)]
            values += [mean_ap(None, cls_idx, area) for area in (1, 2, 3)]
            per_class[f'{name}_precision'] = round(values[0], 3)
            rows.append([name] + [f'{round(v, 3)}' for v in values])
        headers = ['category', 'mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l']
        print_log('\n' + ascii_table([headers] + rows), logger='current')
        return per_class


def _as_rles(masks: Union[list, np.ndarray]) -> List[dict]:
    """Bool masks [N, H, W] or already-encoded RLEs -> RLEs with json-ready str counts."""
    if not isinstance(masks, (list, tuple)):
        return encode_mask_results(masks)
    return [dict(m, counts=m['counts'].decode()) if isinstance(m['counts'], bytes) else m
            for m in masks]


def _with_box_areas(coco_dict: dict) -> dict:
    """Give every converted annotation its box area, as mmdetection's converter does.

    COCOeval sorts ground truth into small / medium / large by ``area``; mmdetection's
    converted ground truth always has the box area there (also for masks), so the area
    ranges of ``mAP_s`` / ``mAP_m`` / ``mAP_l`` hold the same objects as in mmdetection.
    """
    for ann in coco_dict['annotations']:
        ann['area'] = float(ann['bbox'][2] * ann['bbox'][3])
    return coco_dict
