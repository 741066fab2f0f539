"""Grid R-CNN's RoI head: a classification-only box head, boxes located by a GridHead."""
from typing import List, Tuple

import torch
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import bbox2roi
from mmdet_lite.utils import ConfigType, InstanceList
from ..utils import unpack_gt_instances
from .base_roi_head import RoIHeadArgumentError, gt_instances_with_area
from .standard_roi_head import StandardRoIHead


@MODELS.register_module()
class GridRoIHead(StandardRoIHead):
    """StandardRoIHead whose boxes come from grid-point heatmaps instead of deltas.

    Training: the box head's losses on the sampled RoIs, then the positive RoIs, randomly
    jittered (``_random_jitter``), go through ``grid_roi_extractor`` (14x14) and the
    ``grid_head``; at most ``train_cfg.max_num_grid`` (192) of them, picked at random, get
    ``loss_grid``. Test: the box head classifies the proposals and runs NMS on them (its
    ``with_reg=False`` keeps the proposal boxes), then the grid head relocates every kept
    box.

    Args:
        grid_roi_extractor (dict, optional): RoI extractor of the grid branch; None shares
            ``bbox_roi_extractor``.
        grid_head (dict): e.g. ``GridHead``.
        **kwargs: :class:`StandardRoIHead` arguments.
    """

    def __init__(self, grid_roi_extractor: ConfigType, grid_head: ConfigType,
                 **kwargs) -> None:
        if grid_head is None:
            raise RoIHeadArgumentError("GridRoIHead needs grid_head, e.g. dict(type='GridHead')")
        super().__init__(**kwargs)
        self.grid_roi_extractor = self._build_or_share_extractor(grid_roi_extractor)
        self.grid_head = MODELS.build(grid_head)

    def _random_jitter(self, sampling_results: List, batch_img_metas: List[dict],
                       amplitude: float = 0.15) -> List:
        """Shift and rescale the positive RoIs at random (in place), then clip them.

        Centres move by up to ``amplitude`` of the box's width / height and sides scale
        by a factor in [1 - amplitude, 1 + amplitude], so the grid head learns to locate
        points from imperfect boxes.

        Args:
            sampling_results (list[SamplingResult]): Their ``pos_priors`` [P_i, 4] are
                replaced.
            batch_img_metas (list[dict]): ``img_shape`` (h, w) to clip to ([0, w-1] and
                [0, h-1]); None skips the clipping.
            amplitude (float): Largest relative offset. Defaults to 0.15.

        Returns:
            list[SamplingResult]: The same objects.
        """
        for sampling_result, img_meta in zip(sampling_results, batch_img_metas):
            boxes = sampling_result.pos_priors  # [P, 4]
            offsets = boxes.new_empty(boxes.shape[0], 4).uniform_(-amplitude, amplitude)
            centres = (boxes[:, 2:4] + boxes[:, :2]) / 2
            sizes = (boxes[:, 2:4] - boxes[:, :2]).abs()
            new_centres = centres + sizes * offsets[:, :2]
            new_sizes = sizes * (1 + offsets[:, 2:])
            jittered = torch.cat([new_centres - new_sizes / 2, new_centres + new_sizes / 2],
                                 dim=1)
            img_shape = img_meta['img_shape']
            if img_shape is not None:
                jittered[:, 0::2].clamp_(min=0, max=img_shape[1] - 1)
                jittered[:, 1::2].clamp_(min=0, max=img_shape[0] - 1)
            sampling_result.pos_priors = jittered
        return sampling_results

    def _grid_forward(self, x: Tuple[Tensor, ...], rois: Tensor) -> dict:
        """Grid heatmaps of ``rois`` [K, 5]: ``fused`` / ``unfused`` [K, P, 28, 28]."""
        grid_feats = self.grid_roi_extractor(x[:self.grid_roi_extractor.num_inputs],
                                             rois)  # [K, 256, 14, 14]
        if self.with_shared_head:
            grid_feats = self.shared_head(grid_feats)
        # mmdetection flags the head before every test-time forward; nothing reads it
        self.grid_head.test_mode = True
        return self.grid_head(grid_feats)

    def forward(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
                batch_data_samples: SampleList = None) -> tuple:
        """Raw head outputs ('tensor' mode; no post-processing).

        Returns:
            tuple: ``cls_score`` [K, C+1], ``bbox_pred`` (only with a regressing box head),
            the grid heatmaps (a dict) of the first 100 RoIs, and with a mask head the mask
            logits of the first 100 RoIs.
        """
        rois = bbox2roi([res.bboxes for res in rpn_results_list])
        outs = ()
        if self.with_bbox:
            bbox_results = self._bbox_forward(x, rois)
            outs = outs + (bbox_results['cls_score'], )
            if self.bbox_head.with_reg:
                outs = outs + (bbox_results['bbox_pred'], )
            outs = outs + (self._grid_forward(x, rois[:100]), )
        if self.with_mask:
            outs = outs + (self._mask_forward(x, rois[:100])['mask_preds'], )
        return outs

    # ------------------------------------------------------------------ training
    def loss(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
             batch_data_samples: SampleList) -> dict:
        """Losses of the box branch (with ``loss_grid``) and of the mask branch if any.

        As :meth:`StandardRoIHead.loss`, except that the box branch also gets the image
        metas (the jitter clips to the image).

        Returns:
            dict: ``loss_cls``, ``acc`` (``loss_bbox`` with a regressing box head) and
            ``loss_grid`` (absent when the batch has no positive RoI).
        """
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = \
            unpack_gt_instances(batch_data_samples)
        batch_gt_instances = [gt_instances_with_area(gt) for gt in batch_gt_instances]
        sampling_results = self.assign_and_sample(
            x, [res.bboxes for res in rpn_results_list], batch_gt_instances,
            batch_gt_instances_ignore, self.bbox_assigner, self.bbox_sampler)

        losses = dict()
        if self.with_bbox:
            bbox_results = self.bbox_loss(x, sampling_results, batch_img_metas)
            losses.update(bbox_results['loss_bbox'])
        if self.with_mask:
            mask_results = self.mask_loss(x, sampling_results, batch_gt_instances)
            losses.update(mask_results['loss_mask'])
        return losses

    def bbox_loss(self, x: Tuple[Tensor, ...], sampling_results: List,
                  batch_img_metas: List[dict] = None) -> dict:
        """Box head losses (see :class:`StandardRoIHead`) plus ``loss_grid``.

        Args:
            x (tuple[Tensor]): Features, each [B, C, H_l, W_l].
            sampling_results (list[SamplingResult]): Per-image sampled RoIs; their
                positives are jittered in place.
            batch_img_metas (list[dict]): Metas of each image (``img_shape``).

        Returns:
            dict: As ``StandardRoIHead.bbox_loss``, with ``loss_grid`` added to
            ``loss_bbox``.
        """
        if batch_img_metas is None:
            raise RoIHeadArgumentError('GridRoIHead.bbox_loss needs batch_img_metas')
        bbox_results = super().bbox_loss(x, sampling_results)

        sampling_results = self._random_jitter(sampling_results, batch_img_metas)
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])  # [P, 5]
        # the head's GroupNorms cannot take an empty batch
        if pos_rois.shape[0] == 0:
            return bbox_results

        grid_feats = self.grid_roi_extractor(x[:self.grid_roi_extractor.num_inputs],
                                             pos_rois)  # [P, 256, 14, 14]
        if self.with_shared_head:
            grid_feats = self.shared_head(grid_feats)
        # a random subset of the positives keeps the grid branch cheap
        max_num_grid = self.train_cfg.get('max_num_grid', 192)
        sample_idx = torch.randperm(grid_feats.shape[0])[:min(grid_feats.shape[0],
                                                              max_num_grid)]
        grid_pred = self.grid_head(grid_feats[sample_idx])
        loss_grid = self.grid_head.loss(grid_pred, sample_idx, sampling_results,
                                        self.train_cfg)
        bbox_results['loss_bbox'].update(loss_grid)
        return bbox_results

    # ------------------------------------------------------------------ inference
    def predict_bbox(self, x: Tuple[Tensor, ...], batch_img_metas: List[dict],
                     rpn_results_list: InstanceList, rcnn_test_cfg: ConfigType,
                     rescale: bool = False) -> InstanceList:
        """Classify the proposals and run NMS, then let the grid head relocate the boxes.

        Returns:
            list[InstanceData]: ``bboxes`` [N, 4] (refined), ``scores`` [N], ``labels`` [N]
            per image.
        """
        results_list = super().predict_bbox(x, batch_img_metas=batch_img_metas,
                                            rpn_results_list=rpn_results_list,
                                            rcnn_test_cfg=rcnn_test_cfg, rescale=False)
        grid_rois = bbox2roi([res.bboxes for res in results_list])
        if grid_rois.shape[0] != 0:
            grid_preds = self._grid_forward(x, grid_rois)
            results_list = self.grid_head.predict_by_feat(
                grid_preds=grid_preds, results_list=results_list,
                batch_img_metas=batch_img_metas, rescale=rescale)
        return results_list
