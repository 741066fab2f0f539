"""PAA's probabilistic anchor assignment (Kim & Lee, 2020, "Probabilistic Anchor Assignment
with IoU Prediction for Object Detection").

:class:`PAAAssignmentMixin` holds the assignment steps of :class:`~.paa_head.PAAHead`
(mmdetection defines them on the head; they live here so that the head file reads as forward,
losses and prediction):

1. ``get_targets``: a loose first assignment (``train_cfg.assigner``, a MaxIoUAssigner with
   IoU > 0.1 in the configs) proposes candidate positives for every gt.
2. ``get_pos_loss``: each candidate is scored by how well the head already fits it, its focal
   plus GIoU loss.
3. ``paa_reassign``: per gt, the ``topk`` lowest-loss candidates of every level are fitted
   with a mixture of two 1-D Gaussians over the loss (:class:`GaussianMixture1D`);
   ``gmm_separation_scheme`` keeps the low-loss component's candidates up to the density peak
   as positives, every other candidate becomes a negative.
"""
from typing import List, Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import InstanceList, OptInstanceList
from ..utils import GaussianMixture1D
from .anchor_head import AnchorHead
from .atss_targets import ATSSHeadError


class PAAAssignmentMixin:
    """First assignment, candidate losses and the mixture-model reassignment of PAA.

    Expects the host head (an ATSSHead) to have ``train_cfg``, ``num_classes``, ``topk``,
    ``covariance_type``, ``bbox_coder``, ``loss_cls`` and ``loss_bbox``, and AnchorHead's
    ``_get_targets_single`` (which the first assignment calls). Put it before the head's base
    in the bases (``class PAAHead(PAAAssignmentMixin, ATSSHead)``) so that its
    ``get_targets`` replaces ATSSHead's.
    """

    def get_targets(self,
                    anchor_list: List[List[Tensor]],
                    valid_flag_list: List[List[Tensor]],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None,
                    unmap_outputs: bool = True) -> tuple:
        """First assignment (``train_cfg.assigner``) of every anchor of every image.

        Unlike :meth:`ATSSHead.get_targets` the targets stay per image (all levels in one
        tensor), and the candidates' indices and gt indices come along.

        Args:
            anchor_list (list[list[Tensor]]): Per image, per level anchors [N_l, 4].
            valid_flag_list (list[list[Tensor]]): Per image, per level bool [N_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.
            batch_img_metas (list[dict]): Meta of each image (``img_shape``).
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.
            unmap_outputs (bool): Must be True (targets for all anchors).

        Returns:
            tuple: per image lists ``labels`` [N] (``num_classes`` = background),
            ``label_weights`` [N], ``bbox_targets`` [N, 4], ``bbox_weights`` [N, 4],
            ``pos_inds`` (indices of the positives among the N anchors, ascending) and
            ``gt_inds`` (each positive's gt index).
        """
        if self.train_cfg is None:
            raise ValueError(f'{type(self).__name__} was built without train_cfg; the loss '
                             "needs train_cfg with an assigner, e.g. dict(type='MaxIoUAssigner', "
                             'pos_iou_thr=0.1, neg_iou_thr=0.1, min_pos_iou=0)')
        num_imgs = len(batch_img_metas)
        if not len(anchor_list) == len(valid_flag_list) == len(batch_gt_instances) == num_imgs:
            raise ATSSHeadError(
                f'expected one entry per image ({num_imgs}) in anchor_list '
                f'({len(anchor_list)}), valid_flag_list ({len(valid_flag_list)}) and '
                f'batch_gt_instances ({len(batch_gt_instances)})')
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs
        per_image = [
            self._get_targets_single(torch.cat(anchor_list[i]), torch.cat(valid_flag_list[i]),
                                     batch_gt_instances[i], batch_img_metas[i],
                                     batch_gt_instances_ignore[i], unmap_outputs=unmap_outputs)
            for i in range(num_imgs)
        ]
        labels, label_weights, bbox_targets, bbox_weights, sampling_results = \
            map(list, zip(*per_image))
        pos_inds = [((0 <= lab) & (lab < self.num_classes)).nonzero().view(-1) for lab in labels]
        gt_inds = [result.pos_assigned_gt_inds for result in sampling_results]
        return labels, label_weights, bbox_targets, bbox_weights, pos_inds, gt_inds

    def _get_targets_single(self,
                            flat_anchors: Tensor,
                            valid_flags: Tensor,
                            gt_instances: InstanceData,
                            img_meta: dict,
                            gt_instances_ignore: Optional[InstanceData] = None,
                            unmap_outputs: bool = True) -> tuple:
        """AnchorHead's targets of one image (PAA's assigner is a plain IoU assigner, not
        ATSS's per-level one); returns its labels, label_weights, bbox_targets, bbox_weights
        and SamplingResult, all over the N anchors."""
        if not unmap_outputs:
            raise ATSSHeadError('PAAHead needs targets for all anchors: unmap_outputs must be '
                                'True')
        # AnchorHead's by name: ATSSHead's (next in PAAHead's bases) passes the per-level
        # anchor counts that only ATSSAssigner takes.
        return AnchorHead._get_targets_single(self, flat_anchors, valid_flags, gt_instances,
                                              img_meta, gt_instances_ignore)

    def get_pos_loss(self, anchors: List[Tensor], cls_score: Tensor, bbox_pred: Tensor,
                     label: Tensor, label_weight: Tensor, bbox_target: Tensor,
                     bbox_weight: Tensor, pos_inds: Tensor) -> Tuple[Tensor]:
        """Loss of each candidate positive of one image, the score the mixture is fitted on.

        Args:
            anchors (list[Tensor]): Per level anchors [N_l, 4].
            cls_score (Tensor): Class logits [N, C] of all anchors.
            bbox_pred (Tensor): Deltas [N, 4].
            label (Tensor): Labels [N] from the first assignment.
            label_weight (Tensor): [N].
            bbox_target (Tensor): Regression targets [N, 4] (gt boxes).
            bbox_weight (Tensor): [N, 4].
            pos_inds (Tensor): Indices [P] of the candidates among the N anchors.

        Returns:
            tuple[Tensor]: A 1-tuple (as mmdetection's, made for its ``multi_apply``) holding
            the candidates' losses [P]: focal loss summed over the classes plus GIoU loss,
            each with its loss weight, no normalisation.
        """
        if not len(pos_inds):
            return cls_score.new_zeros(0),
        pos_anchors = torch.cat(anchors)[pos_inds]
        pos_decoded = get_box_tensor(self.bbox_coder.decode(pos_anchors, bbox_pred[pos_inds]))
        loss_cls = self.loss_cls(cls_score[pos_inds], label[pos_inds], label_weight[pos_inds],
                                 avg_factor=1.0, reduction_override='none')  # [P, C]
        loss_bbox = self.loss_bbox(pos_decoded, bbox_target[pos_inds], bbox_weight[pos_inds],
                                   avg_factor=1.0, reduction_override='none')  # [P]
        return loss_bbox + loss_cls.sum(-1),

    def paa_reassign(self, pos_losses: Tensor, label: Tensor, label_weight: Tensor,
                     bbox_weight: Tensor, pos_inds: Tensor, pos_gt_inds: Tensor,
                     anchors: List[Tensor]) -> tuple:
        """Keep as positives the candidates a two-Gaussian fit of their losses calls positive.

        For every gt: its ``topk`` lowest-loss candidates of each level are sorted by loss
        and fitted with :class:`GaussianMixture1D` (started at the lowest and highest loss);
        :meth:`gmm_separation_scheme` picks the positives. A gt with fewer than two such
        candidates keeps none. Every other candidate becomes background (label
        ``num_classes``, box weight 0; its class weight stays 1).

        Args:
            pos_losses (Tensor): Candidates' losses [P] (from :meth:`get_pos_loss`).
            label (Tensor): Labels [N] of all anchors of the image.
            label_weight (Tensor): [N].
            bbox_weight (Tensor): [N, 4].
            pos_inds (Tensor): Candidates' indices [P] among the N anchors, ascending.
            pos_gt_inds (Tensor): Index of each candidate's gt [P].
            anchors (list[Tensor]): Per level anchors [N_l, 4] (only their counts are used).

        Returns:
            tuple: new ``label`` [N], ``label_weight`` [N], ``bbox_weight`` [N, 4] (copies)
            and ``num_pos`` (int), the positives kept.
        """
        if not len(pos_inds):
            return label, label_weight, bbox_weight, 0
        label, label_weight, bbox_weight = label.clone(), label_weight.clone(), bbox_weight.clone()
        level_ends = torch.tensor([a.size(0) for a in anchors], device=pos_inds.device).cumsum(0)
        pos_levels = torch.searchsorted(level_ends, pos_inds, right=True)  # [P]

        kept_pos, kept_ignore = [label.new_zeros(0)], [label.new_zeros(0)]
        for gt in range(int(pos_gt_inds.max()) + 1):
            cand_inds, cand_losses = [], []
            for level in range(len(anchors)):
                mask = (pos_gt_inds == gt) & (pos_levels == level)
                losses, order = pos_losses[mask].topk(min(int(mask.sum()), self.topk),
                                                      largest=False)
                cand_inds.append(pos_inds[mask][order])
                cand_losses.append(losses)
            cand_inds, cand_losses = torch.cat(cand_inds), torch.cat(cand_losses)
            if len(cand_inds) < 2:  # a mixture of two needs two samples
                continue
            cand_losses, order = cand_losses.sort()
            cand_inds = cand_inds[order]
            assignment, scores = self._fit_loss_mixture(cand_losses)
            pos_temp, ignore_temp = self.gmm_separation_scheme(assignment, scores, cand_inds)
            kept_pos.append(pos_temp)
            kept_ignore.append(ignore_temp)

        kept_pos, kept_ignore = torch.cat(kept_pos), torch.cat(kept_ignore)
        demoted = pos_inds[~torch.isin(pos_inds, kept_pos)]
        label[demoted] = self.num_classes
        label_weight[kept_ignore] = 0
        bbox_weight[demoted] = 0
        return label, label_weight, bbox_weight, len(kept_pos)

    def _fit_loss_mixture(self, sorted_losses: Tensor) -> Tuple[Tensor, Tensor]:
        """Fit two Gaussians to one gt's candidate losses, as mmdetection configures
        scikit-learn: equal weights, means at the lowest and highest loss, precisions 1.

        Args:
            sorted_losses (Tensor): Losses [M] in ascending order, M >= 2.

        Returns:
            tuple: component of each loss [M] (int64, 0 = the low-loss one) and the log of
            the mixture density at each loss [M] (float64).
        """
        losses = sorted_losses.cpu().numpy()
        precisions = [1.0] if self.covariance_type == 'tied' else [1.0, 1.0]
        gmm = GaussianMixture1D(weights_init=[0.5, 0.5],
                                means_init=[losses.min(), losses.max()],
                                precisions_init=precisions,
                                covariance_type=self.covariance_type).fit(losses)
        device = sorted_losses.device
        return (torch.from_numpy(gmm.predict(losses)).to(device),
                torch.from_numpy(gmm.score_samples(losses)).to(device))

    def gmm_separation_scheme(self, gmm_assignment: Tensor, scores: Tensor,
                              pos_inds_gmm: Tensor) -> Tuple[Tensor, Tensor]:
        """Split one gt's fitted candidates into positives and ignored ones.

        The candidates come sorted by loss. Positives are the low-loss component's
        candidates up to (and including) the one with the highest mixture density; the
        rest are negatives and none is ignored. This is scheme (c) of the paper's Fig. 3,
        as in mmdetection and the official code; override this method for another scheme.

        Args:
            gmm_assignment (Tensor): Component of each candidate [M] (0 = low loss).
            scores (Tensor): Log mixture density at each candidate [M].
            pos_inds_gmm (Tensor): Anchor index of each candidate [M], by ascending loss.

        Returns:
            tuple[Tensor, Tensor]: Anchor indices of the positives and of the ignored.
        """
        fgs = gmm_assignment == 0
        pos_inds = pos_inds_gmm.new_zeros(0)
        ignore_inds = pos_inds_gmm.new_zeros(0)
        if fgs.any():
            _, peak = scores[fgs].topk(1)
            pos_inds = pos_inds_gmm[fgs][:peak + 1]
        return pos_inds, ignore_inds
