"""BaseRoIHead: what every second stage has (optional shared head, box and mask branches)."""
from abc import ABCMeta, abstractmethod
from typing import List, Optional, Tuple

from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import get_box_wh
from mmdet_lite.utils import InstanceList, OptConfigType, OptMultiConfig


class BaseRoIHead(BaseModule, metaclass=ABCMeta):
    """Base class of RoI heads.

    Builds the optional ``shared_head`` (e.g. the C4 ``ResLayer``) and delegates the box
    and mask branches to ``init_bbox_head`` / ``init_mask_head`` and the training
    assignment to ``init_assigner_sampler``. ``predict`` runs the box branch, then the mask
    branch on the kept boxes.

    Args:
        bbox_roi_extractor (dict, optional): RoI feature extractor of the box branch.
        bbox_head (dict, optional): Box head; no box branch when None.
        mask_roi_extractor (dict, optional): RoI feature extractor of the mask branch.
        mask_head (dict, optional): Mask head; no mask branch when None.
        shared_head (dict, optional): Layers run on the RoI features of both branches.
        train_cfg (dict, optional): ``train_cfg.rcnn`` of the detector.
        test_cfg (dict, optional): ``test_cfg.rcnn`` of the detector.
        init_cfg (dict | list[dict], optional): Initialization config.
    """

    def __init__(self,
                 bbox_roi_extractor: OptMultiConfig = None,
                 bbox_head: OptMultiConfig = None,
                 mask_roi_extractor: OptMultiConfig = None,
                 mask_head: OptMultiConfig = None,
                 shared_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if shared_head is not None:
            self.shared_head = MODELS.build(shared_head)
        if bbox_head is not None:
            self.init_bbox_head(bbox_roi_extractor, bbox_head)
        if mask_head is not None:
            self.init_mask_head(mask_roi_extractor, mask_head)
        self.init_assigner_sampler()

    @property
    def with_bbox(self) -> bool:
        """bool: Whether the head has a box branch."""
        return getattr(self, 'bbox_head', None) is not None

    @property
    def with_mask(self) -> bool:
        """bool: Whether the head has a mask branch."""
        return getattr(self, 'mask_head', None) is not None

    @property
    def with_shared_head(self) -> bool:
        """bool: Whether the RoI features go through a shared head first."""
        return getattr(self, 'shared_head', None) is not None

    @abstractmethod
    def init_bbox_head(self, *args, **kwargs) -> None:
        """Build ``bbox_roi_extractor`` and ``bbox_head``."""

    @abstractmethod
    def init_mask_head(self, *args, **kwargs) -> None:
        """Build ``mask_roi_extractor`` and ``mask_head``."""

    @abstractmethod
    def init_assigner_sampler(self, *args, **kwargs) -> None:
        """Build the training assigner and sampler."""

    @abstractmethod
    def loss(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
             batch_data_samples: SampleList) -> dict:
        """Losses of the second stage from the proposals and the ground truth."""

    def assign_and_sample(self, x: Tuple[Tensor, ...], proposals: List[Tensor],
                          batch_gt_instances: InstanceList,
                          batch_gt_instances_ignore: List[Optional[InstanceData]], assigner,
                          sampler) -> list:
        """Match each image's proposals to its ground truth, then pick the RoIs to train on.

        Args:
            x (tuple[Tensor]): Features, each [B, C, H_l, W_l]; samplers that score RoIs with
                the head (OHEM) read the image's own slice.
            proposals (list[Tensor]): Boxes [N_i, 4] per image, detached here: the losses
                of this stage do not flow back into the proposals.
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G_i, 4] and ``labels`` [G_i]
                per image.
            batch_gt_instances_ignore (list[InstanceData | None]): Regions to ignore.
            assigner: e.g. ``MaxIoUAssigner`` (the stage's own in a cascade).
            sampler: e.g. ``RandomSampler``; it also adds the gt boxes as proposals.

        Returns:
            list[SamplingResult]: One per image.
        """
        if len(proposals) != len(batch_gt_instances):
            raise RoIHeadArgumentError(f'{len(proposals)} proposal lists for '
                                       f'{len(batch_gt_instances)} images')
        sampling_results = []
        for i, (boxes, gt_instances, ignored) in enumerate(
                zip(proposals, batch_gt_instances, batch_gt_instances_ignore)):
            priors = InstanceData(priors=boxes.detach())
            assign_result = assigner.assign(priors, gt_instances, ignored)
            sampling_results.append(sampler.sample(assign_result, priors, gt_instances,
                                                   feats=[level[i][None] for level in x]))
        return sampling_results

    def predict(self,
                x: Tuple[Tensor],
                rpn_results_list: InstanceList,
                batch_data_samples: SampleList,
                rescale: bool = False) -> InstanceList:
        """Detections per image: ``bboxes``, ``scores``, ``labels`` (and ``masks``).

        With a mask head the boxes stay in the network-input frame until the masks are
        predicted from them; the mask head then maps both to the original image.

        Args:
            x (tuple[Tensor]): Features, each [B, C, H_l, W_l].
            rpn_results_list (list[InstanceData]): Proposals (``bboxes``) per image.
            batch_data_samples (list[DetDataSample]): Metas of each image.
            rescale (bool): Map the results to the original image. Defaults to False.

        Returns:
            list[InstanceData]: ``bboxes`` [N, 4], ``scores`` [N], ``labels`` [N] and with a
            mask head ``masks`` [N, H, W].
        """
        if not self.with_bbox:
            raise RoIHeadArgumentError(f'{type(self).__name__}.predict needs a bbox_head')
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        results_list = self.predict_bbox(x, batch_img_metas, rpn_results_list,
                                         rcnn_test_cfg=self.test_cfg,
                                         rescale=rescale and not self.with_mask)
        if self.with_mask:
            results_list = self.predict_mask(x, batch_img_metas, results_list,
                                             rescale=rescale)
        return results_list


class RoIHeadArgumentError(ValueError, AssertionError):
    """A RoI head argument or input that mmdetection asserts on."""


def gt_instances_with_area(gt_instances: InstanceData) -> InstanceData:
    """The ground truths whose boxes have a positive width and height.

    RoI heads train on these only: the sampler adds every gt box as a positive proposal of
    itself, and for a zero-area box the regression target log(0 / 0) is NaN (such boxes hold
    no object pixels anyway).

    Args:
        gt_instances (InstanceData): ``bboxes`` [G, 4] (a tensor or a box object) and the
            other per-instance fields.

    Returns:
        InstanceData: ``gt_instances`` itself when every box has an area, else the subset.
    """
    widths, heights = get_box_wh(gt_instances.bboxes)  # [G] each
    valid = (widths > 0) & (heights > 0)
    return gt_instances if bool(valid.all()) else gt_instances[valid]
