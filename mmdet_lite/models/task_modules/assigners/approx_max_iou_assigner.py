"""MaxIoU assignment of groups of approximate anchors (Guided Anchoring)."""
from typing import Optional, Union

from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .max_iou_assigner import MaxIoUAssigner


@TASK_UTILS.register_module()
class ApproxMaxIoUAssigner(MaxIoUAssigner):
    """``MaxIoUAssigner`` where each prior (square) stands for a group of approx anchors.

    The IoU of a square with a gt is the best IoU of any of its approxs with that gt; the
    rest (negative range, positives, low-quality matches, ignore regions measured on the
    squares) is ``MaxIoUAssigner.assign_wrt_overlaps``.

    Args:
        pos_iou_thr (float): IoU threshold for positives.
        neg_iou_thr (float | tuple[float, float]): Negative threshold or ``[lo, hi)`` range.
        min_pos_iou (float): Minimum IoU for a low-quality match. Defaults to 0.
        gt_max_assign_all (bool): A gt claims all priors tied at its maximum IoU.
            Defaults to True.
        ignore_iof_thr (float): IoF above which a square is ignored; negative disables.
            Defaults to -1.
        ignore_wrt_candidates (bool): IoF relative to the square (True) or to the ignored
            box. Defaults to True.
        match_low_quality (bool): Allow low-quality matches. Defaults to True.
        gpu_assign_thr (int): Assign on the CPU above this many gts (if positive).
            Defaults to -1.
        iou_calculator (dict): Config of the overlap calculator.
            Defaults to ``dict(type='BboxOverlaps2D')``.
    """

    def __init__(self,
                 pos_iou_thr: float,
                 neg_iou_thr: Union[float, tuple],
                 min_pos_iou: float = .0,
                 gt_max_assign_all: bool = True,
                 ignore_iof_thr: float = -1,
                 ignore_wrt_candidates: bool = True,
                 match_low_quality: bool = True,
                 gpu_assign_thr: int = -1,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D')) -> None:
        super().__init__(
            pos_iou_thr=pos_iou_thr,
            neg_iou_thr=neg_iou_thr,
            min_pos_iou=min_pos_iou,
            gt_max_assign_all=gt_max_assign_all,
            ignore_iof_thr=ignore_iof_thr,
            ignore_wrt_candidates=ignore_wrt_candidates,
            match_low_quality=match_low_quality,
            gpu_assign_thr=gpu_assign_thr,
            iou_calculator=iou_calculator)

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign gts to squares through their approxs.

        Args:
            pred_instances (InstanceData): ``priors`` (squares) [N, 4] and ``approxs``
                [N, A, 4], the A approx anchors of each square.
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            gt_instances_ignore (InstanceData, optional): ``bboxes`` [K, 4] to ignore.

        Returns:
            AssignResult: As ``MaxIoUAssigner``, one entry per square.
        """
        squares = pred_instances.priors
        approxs = pred_instances.approxs
        gt_bboxes = gt_instances.bboxes
        gt_labels = gt_instances.labels
        gt_bboxes_ignore = (None if gt_instances_ignore is None else
                            gt_instances_ignore.get('bboxes', None))
        num_approxs = approxs.size(1)
        num_squares, num_gts = squares.size(0), len(gt_bboxes)

        if num_squares == 0 or num_gts == 0:
            return self.assign_wrt_overlaps(approxs.new_zeros((num_gts, num_squares)),
                                            gt_labels)

        # [A * N, 4], approx-major, so that a view [A, N, G] groups each square's approxs.
        flat_approxs = approxs.transpose(0, 1).reshape(-1, 4)
        assign_on_cpu = self.gpu_assign_thr > 0 and num_gts > self.gpu_assign_thr
        device = flat_approxs.device
        if assign_on_cpu:
            flat_approxs, gt_bboxes = flat_approxs.cpu(), gt_bboxes.cpu()
            if gt_bboxes_ignore is not None:
                gt_bboxes_ignore = gt_bboxes_ignore.cpu()
            if gt_labels is not None:
                gt_labels = gt_labels.cpu()
        all_overlaps = self.iou_calculator(flat_approxs, gt_bboxes)  # [A * N, G]
        overlaps = all_overlaps.view(num_approxs, num_squares, num_gts).max(dim=0).values
        overlaps = overlaps.t()  # [G, N]
        # Ignore regions are measured on the squares, not on the approxs.
        if gt_bboxes_ignore is not None:
            gt_bboxes_ignore = gt_bboxes_ignore.to(overlaps.device)
        self._ignore_overlapping(overlaps, squares.to(overlaps.device), gt_bboxes_ignore)
        result = self.assign_wrt_overlaps(overlaps, gt_labels)
        if assign_on_cpu:
            result.gt_inds = result.gt_inds.to(device)
            result.max_overlaps = result.max_overlaps.to(device)
            if result.labels is not None:
                result.labels = result.labels.to(device)
        return result
