"""Small helpers shared by the dense heads, RoI heads and detectors.

Each has at least two callers (or one caller per head family), which is why it lives here
rather than inside a head.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import get_box_tensor, get_box_type
from mmdet_lite.utils import ConfigType, OptInstanceList
from mmdet_lite.utils.nms_config import parse_nms_cfg

from .cpu_ops import batched_nms as cpu_batched_nms
from .cpu_ops import topk as cpu_topk


def unpack_gt_instances(batch_data_samples: SampleList) -> Tuple[list, list, list]:
    """Split data samples into ground truth, ignored ground truth and image metas.

    Args:
        batch_data_samples (list[DetDataSample]): One sample per image, each with
            ``gt_instances`` and optionally ``ignored_instances``.

    Returns:
        tuple:

        - batch_gt_instances (list[InstanceData]): ``bboxes`` [N, 4] and ``labels`` [N].
        - batch_gt_instances_ignore (list[InstanceData | None]): ``bboxes`` [M, 4] to ignore,
          ``None`` for images without an ``ignored_instances`` field.
        - batch_img_metas (list[dict]): ``img_shape``, ``scale_factor``, ... per image.
    """
    batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = [], [], []
    for i, data_sample in enumerate(batch_data_samples):
        if 'gt_instances' not in data_sample:
            raise KeyError(f'batch_data_samples[{i}] has no gt_instances; training needs '
                           'ground truth boxes (an empty InstanceData is fine).')
        batch_img_metas.append(data_sample.metainfo)
        batch_gt_instances.append(data_sample.gt_instances)
        batch_gt_instances_ignore.append(data_sample.ignored_instances
                                         if 'ignored_instances' in data_sample else None)
    return batch_gt_instances, batch_gt_instances_ignore, batch_img_metas


def empty_instances(batch_img_metas: List[dict],
                    device: Union[torch.device, str],
                    task_type: str,
                    instance_results: OptInstanceList = None,
                    mask_thr_binary: Union[int, float] = 0,
                    box_type: str = 'hbox',
                    use_box_type: bool = False,
                    num_classes: int = 80,
                    score_per_cls: bool = False) -> List[InstanceData]:
    """Results for images without any detection.

    Args:
        batch_img_metas (list[dict]): Meta of each image; ``ori_shape`` is read for masks.
        device (torch.device | str): Device of the empty tensors.
        task_type (str): ``'bbox'`` fills ``bboxes`` [0, 4], ``scores`` and ``labels`` [0];
            ``'mask'`` fills ``masks`` [0, H, W] at the original image size.
        instance_results (list[InstanceData], optional): Results to fill in place (one per
            image) instead of new ones, e.g. boxes that already exist when masks are empty.
        mask_thr_binary (int | float): Mask binarisation threshold; a negative value means
            soft masks, which are returned as uint8 instead of bool.
        box_type (str): Registered box type; its ``box_dim`` sizes the empty boxes.
            Defaults to ``'hbox'`` ([0, 4]).
        use_box_type (bool): Wrap the empty boxes in that box type instead of a tensor.
        num_classes (int): Number of classes, used when ``score_per_cls`` is True.
        score_per_cls (bool): Whether scores are per class, shape [0, num_classes + 1].

    Returns:
        list[InstanceData]: One empty result per image.
    """
    if task_type not in ('bbox', 'mask'):
        raise ValueError(f"task_type must be 'bbox' or 'mask', got {task_type!r}")
    if instance_results is not None and len(instance_results) != len(batch_img_metas):
        raise ValueError(f'instance_results has {len(instance_results)} items but '
                         f'batch_img_metas has {len(batch_img_metas)}; expected one per image')
    _, box_cls = get_box_type(box_type)
    results_list = []
    for img_id, img_meta in enumerate(batch_img_metas):
        results = InstanceData() if instance_results is None else instance_results[img_id]
        if task_type == 'bbox':
            bboxes = torch.zeros(0, box_cls.box_dim, device=device)
            results.bboxes = box_cls(bboxes, clone=False) if use_box_type else bboxes
            score_shape = (0, num_classes + 1) if score_per_cls else (0, )
            results.scores = torch.zeros(score_shape, device=device)
            results.labels = torch.zeros(0, device=device, dtype=torch.long)
        else:
            img_h, img_w = img_meta['ori_shape'][:2]
            mask_dtype = torch.bool if mask_thr_binary >= 0 else torch.uint8
            results.masks = torch.zeros(0, img_h, img_w, device=device, dtype=mask_dtype)
        results_list.append(results)
    return results_list


def images_to_levels(targets: List[Tensor], num_level_priors: List[int]) -> List[Tensor]:
    """Regroup per-image targets into per-level targets.

    Args:
        targets (list[Tensor]): One tensor per image, each [num_priors, ...] with the priors of
            all levels concatenated.
        num_level_priors (list[int]): Number of priors of each level (summing to num_priors).

    Returns:
        list[Tensor]: One tensor per level, each [num_images, num_level_priors[l], ...].
    """
    stacked = torch.stack(targets, 0)  # [B, num_priors, ...]
    return list(stacked.split(list(num_level_priors), dim=1))


def levels_to_images(mlvl_tensor: List[Tensor]) -> List[Tensor]:
    """Regroup per-level head outputs into per-image rows (the inverse of
    :func:`images_to_levels` for raw maps).

    Args:
        mlvl_tensor (list[Tensor]): One map per level, each [B, C, H_l, W_l].

    Returns:
        list[Tensor]: One tensor per image, [sum_l H_l * W_l, C], levels in order and each
        level's positions row-major.
    """
    num_imgs = mlvl_tensor[0].size(0)
    flat = [t.permute(0, 2, 3, 1).reshape(num_imgs, -1, t.size(1)) for t in mlvl_tensor]
    return list(torch.cat(flat, dim=1).unbind(0))


def select_single_mlvl(mlvl_tensors: Sequence[Tensor], batch_id: int,
                       detach: bool = True) -> List[Tensor]:
    """Take one image out of every level of a batched multi-level output.

    Args:
        mlvl_tensors (list[Tensor]): One tensor per level, each [B, C, H, W].
        batch_id (int): Index of the image in the batch.
        detach (bool): Whether to cut the gradient; proposals must not back-propagate into
            the RPN through the RoI head, hence the default True.

    Returns:
        list[Tensor]: One tensor per level, each [C, H, W].
    """
    if not isinstance(mlvl_tensors, (list, tuple)):
        raise TypeError(f'mlvl_tensors must be a list or tuple of per-level tensors, '
                        f'got {type(mlvl_tensors).__name__}')
    if detach:
        return [level[batch_id].detach() for level in mlvl_tensors]
    return [level[batch_id] for level in mlvl_tensors]


def filter_scores_and_topk(scores: Tensor, score_thr: float, topk: int,
                           results: Union[Dict[str, Tensor], List[Tensor], Tensor, None] = None
                           ) -> tuple:
    """Keep the ``topk`` best (prior, class) pairs whose score exceeds ``score_thr``.

    Args:
        scores (Tensor): Scores [num_priors, num_classes].
        score_thr (float): Pairs with a score <= this are dropped.
        topk (int): Number of pairs kept at most (the highest scores); <= 0 keeps all.
        results (dict | list | Tensor, optional): Per-prior tensors [num_priors, ...] indexed
            with the kept prior indices.

    Returns:
        tuple:

        - scores (Tensor): Kept scores [K], highest first.
        - labels (Tensor): Class of each kept pair [K].
        - keep_idxs (Tensor): Prior index of each kept pair [K].
        - filtered_results: ``results`` indexed by ``keep_idxs`` (same container type), or None.
    """
    num_classes = scores.size(1)
    flat_scores = scores.flatten()  # [N * C]
    # The threshold first: on real images few of the N * C pairs pass it, and the sort
    # (or partial sort) then works on those only. A 1-D topk of all pairs took 47 ms on
    # RetinaNet's 5 levels at 640x640 (one thread), the threshold 5 ms.
    flat_idxs = None  # None: every pair passes, the index is the position
    valid_scores = flat_scores
    if flat_scores.numel() and not bool(flat_scores.min() > score_thr):
        flat_idxs = (flat_scores > score_thr).nonzero().squeeze(1)
        valid_scores = flat_scores[flat_idxs]
    if 0 < topk < valid_scores.numel():
        valid_scores, order = cpu_topk(valid_scores, topk)  # split over threads on a CPU
    else:  # all of them, highest first (ties in index order)
        valid_scores, order = valid_scores.sort(descending=True, stable=True)
    flat_idxs = order if flat_idxs is None else flat_idxs[order]
    keep_idxs = torch.div(flat_idxs, num_classes, rounding_mode='floor')  # prior index
    labels = flat_idxs % num_classes

    filtered_results = None
    if isinstance(results, dict):
        filtered_results = {k: v[keep_idxs] for k, v in results.items()}
    elif isinstance(results, list):
        filtered_results = [v[keep_idxs] for v in results]
    elif isinstance(results, Tensor):
        filtered_results = results[keep_idxs]
    elif results is not None:
        raise TypeError(f'results must be a dict, list or Tensor, got {type(results).__name__}')
    return valid_scores, labels, keep_idxs, filtered_results


def batched_nms(boxes: Tensor,
                scores: Tensor,
                idxs: Tensor,
                nms_cfg: Optional[ConfigType],
                class_agnostic: bool = False) -> Tuple[Tensor, Tensor]:
    """NMS run independently within each group (class or level), configured like mmcv.

    Args:
        boxes (Tensor | BaseBoxes): Boxes [N, 4] as (x1, y1, x2, y2).
        scores (Tensor): Scores [N].
        idxs (Tensor): Group of each box [N]; boxes of different groups never suppress each
            other.
        nms_cfg (dict, optional): ``dict(type='nms', iou_threshold=0.5)``, optionally with
            ``class_agnostic`` (overrides the argument) and ``max_num`` (keep at most that
            many). ``split_thr`` is accepted and ignored. None skips NMS and only sorts.
        class_agnostic (bool): Whether to ignore ``idxs`` and suppress across groups.

    Returns:
        tuple:

        - dets (Tensor): Kept boxes with their score, [K, 5], highest score first.
        - keep (Tensor): Indices of the kept boxes in the input [K].
    """
    boxes = get_box_tensor(boxes)  # a box object (HorizontalBoxes) is read as its tensor
    if nms_cfg is None:
        scores, keep = scores.sort(descending=True)
        return torch.cat([boxes[keep], scores[:, None]], -1), keep

    iou_threshold, class_agnostic, max_num = parse_nms_cfg(nms_cfg, class_agnostic)

    if class_agnostic:
        idxs = torch.zeros_like(idxs)
    # torchvision's batched_nms (its groups over torch's threads): highest score first
    keep = cpu_batched_nms(boxes, scores, idxs, iou_threshold)
    if max_num > 0:
        keep = keep[:max_num]
    return torch.cat([boxes[keep], scores[keep, None]], -1), keep


class _SigmoidGeometricMean(torch.autograd.Function):
    """``sqrt(sigmoid(x) * sigmoid(y))`` with a hand-written backward.

    Autograd through ``sqrt`` divides by ``z``, which underflows to 0 (inf / nan gradients)
    when both logits are very negative; ``dz/dx = z * (1 - sigmoid(x)) / 2`` stays finite.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:
        x_prob, y_prob = x.sigmoid(), y.sigmoid()
        z = (x_prob * y_prob).sqrt()
        ctx.save_for_backward(x_prob, y_prob, z)
        return z

    @staticmethod
    def backward(ctx, grad_z: Tensor) -> Tuple[Tensor, Tensor]:
        x_prob, y_prob, z = ctx.saved_tensors
        return grad_z * z * (1 - x_prob) / 2, grad_z * z * (1 - y_prob) / 2


def sigmoid_geometric_mean(x: Tensor, y: Tensor) -> Tensor:
    """Geometric mean of two sigmoids, ``sqrt(sigmoid(x) * sigmoid(y))``, elementwise.

    Args:
        x (Tensor): Logits, any shape.
        y (Tensor): Logits of the same shape as ``x``.

    Returns:
        Tensor: Probabilities, the shape of ``x``.
    """
    return _SigmoidGeometricMean.apply(x, y)


def unmap(data: Tensor, count: int, inside_flags: Tensor, fill: float = 0) -> Tensor:
    """Scatter the rows of the inside priors back among all ``count`` priors.

    Args:
        data (Tensor): Rows of the priors inside the image, [N_in, ...].
        count (int): Number of all priors.
        inside_flags (Tensor): Which priors are inside, [count] (bool or 0/1).
        fill (float): Value of the rows of the other priors. Defaults to 0.

    Returns:
        Tensor: [count, ...].
    """
    full = data.new_full((count, ) + tuple(data.shape[1:]), fill)
    full[inside_flags.bool()] = data
    return full


# ----------------------------------------------------------------------------- instance masks
# Coordinate maps, mask centroids and the integer upsampling of the SOLO and CondInst heads.


class HelperArgumentError(ValueError, AssertionError):
    """A bad argument to one of these helpers (an AssertionError in mmdetection)."""


def generate_coordinate(featmap_sizes: Sequence[int],
                        device: Union[str, torch.device] = 'cuda') -> Tensor:
    """CoordConv channels: normalized x and y, each in [-1, 1] across the map.

    Args:
        featmap_sizes (Sequence[int]): (B, C, H, W) of the map they will be concatenated to.
        device (str | torch.device): Device of the result.

    Returns:
        Tensor: [B, 2, H, W], channel 0 = x (varies along W), channel 1 = y.
    """
    batch, height, width = featmap_sizes[0], featmap_sizes[-2], featmap_sizes[-1]
    ys = torch.linspace(-1, 1, height, device=device)
    xs = torch.linspace(-1, 1, width, device=device)
    y, x = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([x, y])[None].expand(batch, 2, height, width)


def center_of_mass(mask: Tensor, esp: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """Centroid (row, column) of a binary mask [H, W]; (0, 0) for an empty mask.

    ``esp`` (mmdetection's spelling) floors the mask area so an empty mask divides by it.
    """
    height, width = mask.shape
    rows = torch.arange(height, device=mask.device)[:, None]
    cols = torch.arange(width, device=mask.device)
    normalizer = mask.sum().float().clamp(min=esp)
    return (mask * rows).sum() / normalizer, (mask * cols).sum() / normalizer


def relative_coordinate_maps(locations: Tensor, centers: Tensor, strides: Tensor,
                             size_of_interest: int, feat_sizes: Tuple[int, int]) -> Tensor:
    """Offsets from every mask-grid location to each instance's point, in units of
    ``size_of_interest`` strides of the instance's level (CondInst's relative coordinates).

    Args:
        locations (Tensor): Mask-grid points [H * W, 2] as (x, y), row ``y * W + x``.
        centers (Tensor): The instances' points [N, 2].
        strides (Tensor): The strides of their levels [N].
        size_of_interest (int): Strides per unit of the coordinates.
        feat_sizes (tuple[int, int]): (H, W) of the mask grid.

    Returns:
        Tensor: [N, 2, H, W]; channel 0 is ``(center_x - x) / (stride * size_of_interest)``,
        channel 1 the same in y.
    """
    height, width = feat_sizes
    offsets = centers.float()[:, None, :] - locations.float()[None]  # [N, H * W, 2]
    units = strides.float().reshape(-1, 1, 1) * size_of_interest  # [N, 1, 1]
    return (offsets.permute(0, 2, 1) / units).reshape(-1, 2, height, width)


def aligned_bilinear(tensor: Tensor, factor: int) -> Tensor:
    """Upsample by an integer ``factor`` so that input pixel ``i`` lands exactly on output
    pixel ``i * factor + factor // 2``, the centre of its cell (AdelaiDet's CondInst
    upsampling).

    The map is extended by one replicated row and column, resized with ``align_corners=True``
    to ``factor * size + 1`` (the input pixels then sit ``factor`` apart, from 0), shifted by
    ``factor // 2`` pixels down and right (replicating the first row and column), and
    cropped to ``factor * size``. Output pixel ``o`` thus samples the input bilinearly at
    ``max(o - factor // 2, 0) / factor``, the last row and column repeated beyond the edge.

    Args:
        tensor (Tensor): [B, C, H, W].
        factor (int): Integer upsampling factor >= 1.

    Returns:
        Tensor: [B, C, factor * H, factor * W] (the input itself when ``factor`` is 1).
    """
    if tensor.dim() != 4:
        raise HelperArgumentError(
            f'aligned_bilinear expects a [B, C, H, W] tensor, got {tensor.dim()} dims')
    if factor < 1 or int(factor) != factor:
        raise HelperArgumentError(f'factor must be an integer >= 1, got {factor}')
    if factor == 1:
        return tensor
    height, width = tensor.shape[-2:]
    tensor = F.pad(tensor, pad=(0, 1, 0, 1), mode='replicate')  # [B, C, H + 1, W + 1]
    out_h, out_w = factor * height + 1, factor * width + 1
    tensor = F.interpolate(tensor, size=(out_h, out_w), mode='bilinear', align_corners=True)
    shift = factor // 2
    tensor = F.pad(tensor, pad=(shift, 0, shift, 0), mode='replicate')
    return tensor[:, :, :out_h - 1, :out_w - 1]
