"""Faster / Mask R-CNN's second stage: RoI features -> box head (-> mask head)."""
from typing import Dict, List, Tuple

from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import bbox2roi, get_box_wh
from mmdet_lite.utils import InstanceList, OptConfigType, OptMultiConfig


@MODELS.register_module()
class StandardRoIHead(BaseModule):
    """Assign and sample proposals, pool their features, classify/refine boxes, segment.

    Training (per image): proposals -> ``assigner`` (IoU with GT) -> ``sampler``
    (512 RoIs, 25% positive) -> RoI features -> box losses; the positive RoIs also go
    through the mask branch. Test: proposals -> box head -> per-class NMS -> masks of the
    kept detections.

    Args:
        bbox_roi_extractor (dict): e.g. ``SingleRoIExtractor`` with 7x7 RoIAlign.
        bbox_head (dict): e.g. ``Shared2FCBBoxHead``.
        mask_roi_extractor (dict, optional): 14x14 RoIAlign extractor for masks.
        mask_head (dict, optional): e.g. ``FCNMaskHead``.
        share_roi_extractor (bool): Reuse the box extractor for masks.
        train_cfg (dict, optional): ``assigner``, ``sampler``, ``pos_weight``, ``mask_size``.
        test_cfg (dict, optional): ``score_thr``, ``nms``, ``max_per_img``,
            ``mask_thr_binary``.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 bbox_roi_extractor: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 mask_roi_extractor: OptConfigType = None,
                 mask_head: OptConfigType = None,
                 share_roi_extractor: bool = False,
                 shared_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if shared_head is not None:
            raise ValueError('StandardRoIHead: shared_head (the C4 ResLayer head) is not '
                             'supported by mmdet_lite; use an FPN model')
        if bbox_head is None:
            raise ValueError('StandardRoIHead needs bbox_head (and bbox_roi_extractor)')
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.bbox_roi_extractor = MODELS.build(bbox_roi_extractor)
        self.bbox_head = MODELS.build(bbox_head)
        self.share_roi_extractor = share_roi_extractor
        if mask_head is not None:
            self.mask_roi_extractor = (self.bbox_roi_extractor if share_roi_extractor else
                                       MODELS.build(mask_roi_extractor))
            self.mask_head = MODELS.build(mask_head)
        if train_cfg is not None:
            self.bbox_assigner = TASK_UTILS.build(train_cfg['assigner'])
            self.bbox_sampler = TASK_UTILS.build(train_cfg['sampler'])

    @property
    def with_bbox(self) -> bool:
        return getattr(self, 'bbox_head', None) is not None

    @property
    def with_mask(self) -> bool:
        return getattr(self, 'mask_head', None) is not None

    # ------------------------------------------------------------------ forward parts
    def _bbox_forward(self, x: Tuple[Tensor, ...], rois: Tensor) -> Dict[str, Tensor]:
        # x: FPN levels [B, 256, H/4, W/4] ... ; rois: [K, 5]
        bbox_feats = self.bbox_roi_extractor(x[:self.bbox_roi_extractor.num_inputs], rois)
        cls_score, bbox_pred = self.bbox_head(bbox_feats)  # [K, C+1], [K, C*4]
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=bbox_feats)

    def _mask_forward(self, x: Tuple[Tensor, ...], rois: Tensor) -> Dict[str, Tensor]:
        mask_feats = self.mask_roi_extractor(x[:self.mask_roi_extractor.num_inputs],
                                             rois)  # [K, 256, 14, 14]
        return dict(mask_preds=self.mask_head(mask_feats))  # [K, C, 28, 28]

    def forward(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
                batch_data_samples: SampleList = None) -> tuple:
        """Raw head outputs for all proposals ('tensor' mode; no post-processing)."""
        rois = bbox2roi([res.bboxes for res in rpn_results_list])
        bbox_results = self._bbox_forward(x, rois)
        outs = (bbox_results['cls_score'], bbox_results['bbox_pred'])
        if self.with_mask:
            outs = outs + (self._mask_forward(x, rois[:100])['mask_preds'], )
        return outs

    # ------------------------------------------------------------------ training
    def loss(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of the box (and mask) branch.

        Args:
            x (tuple[Tensor]): Neck outputs.
            rpn_results_list (list[InstanceData]): Proposals per image (``bboxes``).
            batch_data_samples (list[DetDataSample]): With ``gt_instances``.

        Returns:
            dict: ``loss_cls``, ``acc``, ``loss_bbox`` (and ``loss_mask``).
        """
        batch_gt_instances = [_with_area(sample.gt_instances) for sample in batch_data_samples]
        sampling_results = []
        for i, (proposals, sample, gt_instances) in enumerate(
                zip(rpn_results_list, batch_data_samples, batch_gt_instances)):
            ignored = sample.get('ignored_instances', None)
            priors = InstanceData(priors=proposals.bboxes.detach())
            assign_result = self.bbox_assigner.assign(priors, gt_instances, ignored)
            sampling_results.append(self.bbox_sampler.sample(
                assign_result, priors, gt_instances,
                feats=[level[i][None] for level in x]))

        losses = dict()
        rois = bbox2roi([res.priors for res in sampling_results])  # [K, 5]
        bbox_results = self._bbox_forward(x, rois)
        bbox_out = self.bbox_head.loss_and_target(bbox_results['cls_score'],
                                                  bbox_results['bbox_pred'], rois,
                                                  sampling_results, self.train_cfg)
        losses.update(bbox_out['loss_bbox'])

        if self.with_mask:
            pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
            mask_preds = self._mask_forward(x, pos_rois)['mask_preds']
            mask_out = self.mask_head.loss_and_target(mask_preds, sampling_results,
                                                      batch_gt_instances, self.train_cfg)
            losses.update(mask_out['loss_mask'])
        return losses

    # ------------------------------------------------------------------ inference
    def predict(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
                batch_data_samples: SampleList, rescale: bool = False) -> InstanceList:
        """Detections per image: ``bboxes``, ``scores``, ``labels`` (and ``masks``).

        With a mask head the boxes stay in the network-input frame until the masks are
        predicted from them; the mask head then maps both to the original image.
        """
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        results_list = self.predict_bbox(x, batch_img_metas, rpn_results_list,
                                         rescale=rescale and not self.with_mask)
        if self.with_mask:
            results_list = self.predict_mask(x, batch_img_metas, results_list, rescale)
        return results_list

    def predict_bbox(self, x: Tuple[Tensor, ...], batch_img_metas: List[dict],
                     rpn_results_list: InstanceList, rescale: bool = False) -> InstanceList:
        """Classify and refine the proposals, then per-class NMS."""
        proposals = [res.bboxes for res in rpn_results_list]
        rois = bbox2roi(proposals)
        bbox_results = self._bbox_forward(x, rois)
        num_per_img = [len(p) for p in proposals]
        return self.bbox_head.predict_by_feat(
            rois.split(num_per_img), bbox_results['cls_score'].split(num_per_img),
            bbox_results['bbox_pred'].split(num_per_img), batch_img_metas,
            rcnn_test_cfg=self.test_cfg, rescale=rescale)

    def predict_mask(self, x: Tuple[Tensor, ...], batch_img_metas: List[dict],
                     results_list: InstanceList, rescale: bool = False) -> InstanceList:
        """Predict a mask for every kept detection."""
        rois = bbox2roi([res.bboxes for res in results_list])
        mask_preds = self._mask_forward(x, rois)['mask_preds']
        num_per_img = [len(res) for res in results_list]
        return self.mask_head.predict_by_feat(mask_preds.split(num_per_img), results_list,
                                              batch_img_metas, self.test_cfg, rescale)


def _with_area(gt_instances: InstanceData) -> InstanceData:
    """The ground truths whose boxes have a positive width and height.

    The sampler adds every GT box as a positive proposal of itself; for a zero-area box
    the regression target log(0 / 0) is NaN, so such boxes (which hold no object pixels)
    are left out of the RoI losses.
    """
    widths, heights = get_box_wh(gt_instances.bboxes)  # [G] each; tensor or box object
    valid = (widths > 0) & (heights > 0)
    return gt_instances if bool(valid.all()) else gt_instances[valid]
