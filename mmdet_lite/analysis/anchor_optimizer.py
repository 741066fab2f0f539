"""Fit YOLO anchor sizes to a dataset's ground-truth boxes.

The boxes are taken as they reach the model: each image resized so that its longer side
becomes the input size (keep-ratio resize), so box (w, h) is scaled by
``input_shape / max(img_w, img_h)``. Anchors and boxes are then compared as if centred on
the same point, so only their sizes matter, and the quality of a set of anchors is the
*average best IoU*: for every box the IoU with its closest anchor, averaged over the boxes.

Two optimizers, as in mmdetection's ``tools/analysis_tools/optimize_anchors.py``:

- :class:`YOLOKMeansAnchorOptimizer`: k-means with 1 - IoU as the distance (darknet's
  ``calc_anchors``);
- :class:`YOLODEAnchorOptimizer`: ``scipy.optimize.differential_evolution`` minimising
  1 - average best IoU over the anchor widths and heights.

Example:
    >>> optimizer = YOLOKMeansAnchorOptimizer(
    ...     dataset=dataset, input_shape=[608, 608], logger=None, device='cpu',
    ...     num_anchors=9, iters=1000, out_dir='work_dirs')
    >>> anchors = optimizer.optimize()  # 9 (w, h), smallest area first
"""
import json
import os
import os.path as osp
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from mmdet_lite.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps, bbox_xyxy_to_cxcywh

Anchor = Tuple[float, float]  # (w, h) in input pixels


class AnchorOptimizerArgumentError(ValueError, AssertionError):
    """Bad input for an anchor optimizer (an ``AssertionError`` in mmdetection)."""


def zero_centered_boxes(whs: Tensor) -> Tensor:
    """Boxes of the given sizes centred on (0, 0).

    Args:
        whs (Tensor): Sizes [N, 2] as (w, h).

    Returns:
        Tensor: Boxes [N, 4] as (x1, y1, x2, y2).
    """
    return bbox_cxcywh_to_xyxy(torch.cat([torch.zeros_like(whs), whs], dim=1))


def average_best_iou(bboxes: Tensor, anchor_boxes: Tensor) -> float:
    """Mean over the boxes of the IoU with their best-overlapping anchor.

    Args:
        bboxes (Tensor): Zero-centred ground-truth boxes [N, 4].
        anchor_boxes (Tensor): Zero-centred anchors [K, 4].

    Returns:
        float: The average best IoU, in [0, 1].
    """
    return bbox_overlaps(bboxes, anchor_boxes).max(dim=1).values.mean().item()  # [N, K]


def _available_device(device: str) -> str:
    # mmdetection's default is 'cuda:0'; on a machine without CUDA use the CPU instead of
    # failing on the first tensor
    if str(device).startswith('cuda') and not torch.cuda.is_available():
        warnings.warn(f'device {device!r} is not available (no CUDA); using the CPU',
                      UserWarning)
        return 'cpu'
    return device


class BaseAnchorOptimizer:
    """Collect a dataset's box sizes at the model's input scale; subclasses fit anchors.

    Args:
        dataset: A detection dataset: ``len(dataset)`` and ``get_data_info(i)`` giving
            ``width``, ``height`` and ``instances`` with ``bbox`` (x1, y1, x2, y2).
        input_shape (Sequence[int]): Model input size as (width, height).
        logger (logging.Logger, optional): Where progress goes; None uses mmengine's
            current logger.
        device (str): Device of the IoU computations. Defaults to ``'cuda:0'`` (the CPU
            when CUDA is not available).
        out_dir (str, optional): Folder of ``anchor_optimize_result.json``; None saves
            nothing.
    """

    def __init__(self, dataset, input_shape: Sequence[int], logger=None,
                 device: str = 'cuda:0', out_dir: Optional[str] = None) -> None:
        if logger is None:
            from mmengine.logging import MMLogger
            logger = MMLogger.get_current_instance()
        self.dataset = dataset
        self.input_shape = input_shape
        self.logger = logger
        self.device = _available_device(device)
        self.out_dir = out_dir
        bbox_whs, img_shapes = self.get_whs_and_shapes()
        # keep-ratio resize: the longer image side becomes the input size. As in
        # mmdetection each of w and h is scaled by its own input side over that longer
        # side (the same factor for a square input).
        ratios = img_shapes.max(axis=1, keepdims=True) / np.array([input_shape])  # [N, 2]
        self.bbox_whs = bbox_whs / ratios  # [N, 2]

    def get_whs_and_shapes(self) -> Tuple[np.ndarray, np.ndarray]:
        """Sizes of all ground-truth boxes and of the image each lies in.

        Boxes flagged ``ignore_flag`` (crowd) are counted too, as in mmdetection.

        Returns:
            tuple[np.ndarray, np.ndarray]: Box sizes [N, 2] and image sizes [N, 2], both as
            (width, height).
        """
        from mmengine.utils import ProgressBar
        self.logger.info('Collecting bboxes from annotation...')
        bbox_whs, img_shapes = [], []
        progress = ProgressBar(len(self.dataset))
        for index in range(len(self.dataset)):
            data_info = self.dataset.get_data_info(index)
            img_shape = (data_info['width'], data_info['height'])
            for instance in data_info['instances']:
                x1, y1, x2, y2 = instance['bbox']
                bbox_whs.append((x2 - x1, y2 - y1))
                img_shapes.append(img_shape)
            progress.update()
        print('\n')
        if not bbox_whs:
            raise AnchorOptimizerArgumentError(
                'the dataset has no ground-truth boxes to fit anchors to')
        self.logger.info(f'Collected {len(bbox_whs)} bboxes.')
        return (np.array(bbox_whs, dtype=np.float64),
                np.array(img_shapes, dtype=np.float64))

    def get_zero_center_bbox_tensor(self) -> Tensor:
        """The collected boxes centred on (0, 0), [N, 4] float32 (x1, y1, x2, y2)."""
        whs = torch.from_numpy(self.bbox_whs).to(self.device, dtype=torch.float32)
        return zero_centered_boxes(whs)

    def optimize(self) -> List[Anchor]:
        raise NotImplementedError

    def save_result(self, anchors: Sequence[Anchor],
                    path: Optional[str] = None) -> List[List[int]]:
        """Log the anchors rounded to whole pixels and save them to
        ``path/anchor_optimize_result.json`` (a list of [w, h]).

        Returns:
            list[list[int]]: The rounded anchors.
        """
        rounded = [[int(round(float(w))), int(round(float(h)))] for w, h in anchors]
        self.logger.info(f'Anchor optimize result:{rounded}')
        if path:
            os.makedirs(path, exist_ok=True)
            json_path = osp.join(path, 'anchor_optimize_result.json')
            with open(json_path, 'w', encoding='utf-8') as f:
                json.dump(rounded, f)
            self.logger.info(f'Result saved in {json_path}')
        return rounded


def _sorted_by_area(whs: np.ndarray) -> List[Anchor]:
    return sorted(((float(w), float(h)) for w, h in whs), key=lambda wh: wh[0] * wh[1])


class YOLOKMeansAnchorOptimizer(BaseAnchorOptimizer):
    """k-means over box sizes with 1 - IoU as the distance (as darknet's detector.c).

    Args:
        num_anchors (int): Number of anchors (clusters).
        iters (int): Most expectation-maximisation rounds.
        **kwargs: Arguments of :class:`BaseAnchorOptimizer`.
    """

    def __init__(self, num_anchors: int, iters: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_anchors = num_anchors
        self.iters = iters

    def optimize(self) -> List[Anchor]:
        """Fit, log and save the anchors; returns them (w, h), smallest area first."""
        anchors = self.kmeans_anchors()
        self.save_result(anchors, self.out_dir)
        return anchors

    def kmeans_anchors(self) -> List[Anchor]:
        """Cluster the boxes; the cluster centres are the anchors, smallest area first."""
        from mmengine.utils import ProgressBar
        self.logger.info(f'Start cluster {self.num_anchors} YOLO anchors with K-means...')
        bboxes = self.get_zero_center_bbox_tensor()  # [N, 4]
        centers = self.initial_centers(bboxes)  # [K, 4]
        # -1: no box assigned yet, so the first expectation never looks converged
        assignments = torch.full((bboxes.shape[0], ), -1, dtype=torch.long,
                                 device=bboxes.device)
        progress = ProgressBar(self.iters)
        for i in range(self.iters):
            converged, assignments = self.kmeans_expectation(bboxes, assignments, centers)
            if converged:
                self.logger.info(f'K-means process has converged at iter {i}.')
                break
            centers = self.kmeans_maximization(bboxes, assignments, centers)
            progress.update()
        print('\n')
        avg_iou = average_best_iou(bboxes, centers)
        self.logger.info(f'Anchor cluster finish. Average IOU: {avg_iou}')
        return _sorted_by_area(bbox_xyxy_to_cxcywh(centers)[:, 2:].cpu().numpy())

    def initial_centers(self, bboxes: Tensor) -> Tensor:
        """k-means++ seeding: each next centre drawn with probability growing with its
        distance (1 - best IoU) to the centres chosen so far.

        mmdetection draws all centres uniformly, with replacement; a box drawn twice (or
        two boxes of one size) then leaves a cluster empty for good, and its anchor stays
        0 x 0. Seeding apart avoids that; the random numbers come from torch's global
        generator (``torch.manual_seed`` makes a run repeatable).

        Args:
            bboxes (Tensor): Zero-centred boxes [N, 4].

        Returns:
            Tensor: Initial centres [num_anchors, 4].
        """
        num_boxes = bboxes.shape[0]
        chosen = [int(torch.randint(0, num_boxes, (1, )))]
        for _ in range(1, self.num_anchors):
            distance = 1 - bbox_overlaps(bboxes, bboxes[chosen]).max(dim=1).values  # [N]
            weights = distance.clamp(min=0)**2
            if weights.sum() > 0:
                chosen.append(int(torch.multinomial(weights, 1)))
            else:  # fewer distinct sizes than anchors: repeat one
                chosen.append(int(torch.randint(0, num_boxes, (1, ))))
        return bboxes[chosen].clone()

    def kmeans_maximization(self, bboxes: Tensor, assignments: Tensor,
                            centers: Tensor) -> Tensor:
        """Move each centre to the mean of its boxes (mean w and h, still centred on 0).

        A cluster left without boxes keeps its centre (mmdetection resets it to 0 x 0).
        """
        new_centers = centers.clone()
        for i in range(centers.shape[0]):
            members = assignments == i
            if members.any():
                new_centers[i] = bboxes[members].mean(dim=0)
        return new_centers

    def kmeans_expectation(self, bboxes: Tensor, assignments: Tensor,
                           centers: Tensor) -> Tuple[bool, Tensor]:
        """Assign each box to its highest-IoU centre.

        Returns:
            tuple[bool, Tensor]: Whether nothing changed, and the assignments [N].
        """
        closest = bbox_overlaps(bboxes, centers).argmax(dim=1)  # [N]
        converged = bool((closest == assignments).all())
        return converged, closest


class YOLODEAnchorOptimizer(BaseAnchorOptimizer):
    """Anchors found by differential evolution, minimising 1 - average best IoU.

    Args:
        num_anchors (int): Number of anchors.
        iters (int): Most generations (``maxiter`` of scipy's optimizer).
        strategy (str): scipy's differential evolution strategy, e.g. ``'best1bin'``,
            ``'rand1exp'``, ``'currenttobest1bin'``. Defaults to ``'best1bin'``.
        population_size (int): Population size multiplier (``popsize``). Defaults to 15.
        convergence_thr (float): Relative tolerance of convergence (``tol``).
            Defaults to 0.0001.
        mutation (tuple[float, float]): Dithering range of the mutation constant.
            Defaults to (0.5, 1).
        recombination (float): Crossover probability. Defaults to 0.7.
        **kwargs: Arguments of :class:`BaseAnchorOptimizer`.
    """

    def __init__(self, num_anchors: int, iters: int, strategy: str = 'best1bin',
                 population_size: int = 15, convergence_thr: float = 0.0001,
                 mutation: Tuple[float, float] = (0.5, 1), recombination: float = 0.7,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_anchors = num_anchors
        self.iters = iters
        self.strategy = strategy
        self.population_size = population_size
        self.convergence_thr = convergence_thr
        self.mutation = mutation
        self.recombination = recombination

    def optimize(self) -> List[Anchor]:
        """Fit, log and save the anchors; returns them (w, h), smallest area first."""
        anchors = self.differential_evolution()
        self.save_result(anchors, self.out_dir)
        return anchors

    def differential_evolution(self) -> List[Anchor]:
        """Search (w1, h1, ..., wK, hK), each in [0, input side], for the best IoU."""
        from scipy.optimize import differential_evolution
        bboxes = self.get_zero_center_bbox_tensor()
        bounds = [(0, self.input_shape[0]), (0, self.input_shape[1])] * self.num_anchors
        result = differential_evolution(
            func=self.avg_iou_cost, bounds=bounds, args=(bboxes, ), strategy=self.strategy,
            maxiter=self.iters, popsize=self.population_size, tol=self.convergence_thr,
            mutation=self.mutation, recombination=self.recombination, updating='immediate',
            disp=True)
        self.logger.info(f'Anchor evolution finish. Average IOU: {1 - result.fun}')
        return _sorted_by_area(np.asarray(result.x).reshape(-1, 2))

    @staticmethod
    def avg_iou_cost(anchor_params: Sequence[float], bboxes: Tensor) -> float:
        """1 - average best IoU of the anchors (w1, h1, w2, h2, ...) over ``bboxes``.

        Args:
            anchor_params (Sequence[float]): Flat anchor sizes [2K].
            bboxes (Tensor): Zero-centred boxes [N, 4].

        Returns:
            float: The cost, in [0, 1].
        """
        if len(anchor_params) % 2 != 0:
            raise AnchorOptimizerArgumentError(
                f'anchor_params must hold (w, h) pairs, got {len(anchor_params)} numbers')
        anchor_whs = torch.as_tensor(np.asarray(anchor_params, dtype=np.float64).reshape(
            -1, 2)).to(bboxes.device, dtype=bboxes.dtype)  # [K, 2]
        return 1 - average_best_iou(bboxes, zero_centered_boxes(anchor_whs))
