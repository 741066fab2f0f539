"""Box conversions and geometric transforms on plain (x1, y1, x2, y2) box arrays.

Boxes are torch tensors or numpy arrays of shape [..., 4]; the box-type helpers (get_box_tensor,
empty_box_as, get_box_wh, scale_boxes, cat_boxes, stack_boxes) also take box objects. The
geometric functions (flip, scale, project) accept tensors and arrays and return the input's
type. The public functions are those of
mmdetection 3.x's ``mmdet/structures/bbox/transforms.py`` that mmdet_lite supports.
"""
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .base_boxes import BaseBoxes

BoxArray = Union[Tensor, np.ndarray]

_FLIP_DIRECTIONS = ('horizontal', 'vertical', 'diagonal')


def _check_last_dim(boxes: BoxArray, name: str, sizes: Tuple[int, ...] = (4, )) -> None:
    if not isinstance(boxes, (Tensor, np.ndarray)):
        raise TypeError(f'{name} must be a torch.Tensor or np.ndarray, '
                        f'but got {type(boxes).__name__}')
    if boxes.ndim == 0 or boxes.shape[-1] not in sizes:
        expected = ' or '.join(f'[..., {s}]' for s in sizes)
        raise ValueError(f'{name} must have shape {expected}, but got {tuple(boxes.shape)}')


def get_box_tensor(boxes: Union[Tensor, BaseBoxes]) -> Tensor:
    """Return the raw tensor of ``boxes``.

    Args:
        boxes (Tensor | BaseBoxes): Boxes of shape [..., box_dim].

    Returns:
        Tensor: ``boxes.tensor`` for a box object (or any object carrying a ``.tensor``),
        otherwise ``boxes`` itself.
    """
    if isinstance(boxes, BaseBoxes):
        return boxes.tensor
    if isinstance(getattr(boxes, 'tensor', None), Tensor):
        return boxes.tensor
    if not isinstance(boxes, (Tensor, np.ndarray)):
        # Fail here rather than deep inside a head with an unrelated indexing error.
        raise TypeError(f'boxes must be a Tensor or BaseBoxes, but got {type(boxes).__name__}')
    return boxes


def empty_box_as(boxes: Union[Tensor, BaseBoxes]) -> Union[Tensor, BaseBoxes]:
    """Return empty boxes of the kind, dtype and device of ``boxes``.

    Args:
        boxes (Tensor | BaseBoxes): Template boxes.

    Returns:
        Tensor | BaseBoxes: An empty box object of the same class (shape [0, box_dim]) for a
        box object, otherwise an empty [0, 4] tensor.
    """
    if isinstance(boxes, BaseBoxes):
        return boxes.empty_boxes()
    return boxes.new_zeros(0, 4)


def get_box_wh(boxes: Union[Tensor, BaseBoxes]) -> Tuple[Tensor, Tensor]:
    """Return widths and heights, each of shape [...], of boxes of shape [..., 4].

    Args:
        boxes (Tensor | BaseBoxes): Box objects use their ``widths``/``heights``; tensors are
            read as (x1, y1, x2, y2).

    Returns:
        tuple[Tensor, Tensor]: Widths and heights.
    """
    if isinstance(boxes, BaseBoxes):
        return boxes.widths, boxes.heights
    _check_last_dim(boxes, 'boxes')
    return boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]


def cat_boxes(data_list: List[Union[Tensor, BaseBoxes]],
              dim: int = 0) -> Union[Tensor, BaseBoxes]:
    """Concatenate tensors or box objects (of one class) along ``dim``.

    Args:
        data_list (list[Tensor | BaseBoxes]): Items of one kind.
        dim (int): Dimension to concatenate along. Defaults to 0.

    Returns:
        Tensor | BaseBoxes: A box object if the items are box objects, else a tensor.
    """
    if data_list and isinstance(data_list[0], BaseBoxes):
        return data_list[0].cat(data_list, dim=dim)
    return torch.cat(data_list, dim=dim)


def stack_boxes(data_list: List[Union[Tensor, BaseBoxes]],
                dim: int = 0) -> Union[Tensor, BaseBoxes]:
    """Stack tensors or box objects (of one class) along a new dimension ``dim``.

    Args:
        data_list (list[Tensor | BaseBoxes]): Items of one kind and shape.
        dim (int): Position of the new dimension. Defaults to 0.

    Returns:
        Tensor | BaseBoxes: A box object if the items are box objects, else a tensor.
    """
    if data_list and isinstance(data_list[0], BaseBoxes):
        return data_list[0].stack(data_list, dim=dim)
    return torch.stack(data_list, dim=dim)


def bbox_xyxy_to_cxcywh(bbox: Tensor) -> Tensor:
    """Convert boxes from (x1, y1, x2, y2) to (cx, cy, w, h).

    Args:
        bbox (Tensor): Boxes of shape [..., 4].

    Returns:
        Tensor: Boxes of shape [..., 4] as (cx, cy, w, h).
    """
    _check_last_dim(bbox, 'bbox')
    x1, y1, x2, y2 = bbox.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def bbox_cxcywh_to_xyxy(bbox: Tensor) -> Tensor:
    """Convert boxes from (cx, cy, w, h) to (x1, y1, x2, y2).

    Args:
        bbox (Tensor): Boxes of shape [..., 4] as (cx, cy, w, h).

    Returns:
        Tensor: Boxes of shape [..., 4] as (x1, y1, x2, y2).
    """
    _check_last_dim(bbox, 'bbox')
    cx, cy, w, h = bbox.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def bbox_flip(bboxes: BoxArray, img_shape: Sequence[int],
              direction: str = 'horizontal') -> BoxArray:
    """Flip boxes inside an image, with mmdet's convention ``x1' = w - x2``.

    Args:
        bboxes (Tensor | np.ndarray): Boxes of shape [..., 4*k] (k >= 1 boxes per row).
        img_shape (Sequence[int]): Image shape (h, w, ...).
        direction (str): ``'horizontal'``, ``'vertical'`` or ``'diagonal'`` (both).

    Returns:
        Tensor | np.ndarray: Flipped boxes, same type and shape as ``bboxes``.
    """
    if direction not in _FLIP_DIRECTIONS:
        raise ValueError(f'bbox_flip direction must be one of {_FLIP_DIRECTIONS}, '
                         f'but got {direction!r}')
    if not isinstance(bboxes, (Tensor, np.ndarray)):
        raise TypeError(f'bboxes must be a torch.Tensor or np.ndarray, '
                        f'but got {type(bboxes).__name__}')
    if bboxes.ndim == 0 or bboxes.shape[-1] % 4 != 0:
        raise ValueError(f'bboxes must have shape [..., 4*k], but got {tuple(bboxes.shape)}')
    h, w = img_shape[:2]
    flipped = bboxes.clone() if isinstance(bboxes, Tensor) else bboxes.copy()
    if direction in ('horizontal', 'diagonal'):
        flipped[..., 0::4] = w - bboxes[..., 2::4]
        flipped[..., 2::4] = w - bboxes[..., 0::4]
    if direction in ('vertical', 'diagonal'):
        flipped[..., 1::4] = h - bboxes[..., 3::4]
        flipped[..., 3::4] = h - bboxes[..., 1::4]
    return flipped


def bbox_rescale(bboxes: Tensor, scale_factor: float = 1.0) -> Tensor:
    """Scale boxes (or rois) about their centres, e.g. to enlarge mask-head rois.

    Args:
        bboxes (Tensor): Boxes [N, 4] or rois [N, 5] (batch_idx, x1, y1, x2, y2).
        scale_factor (float): Factor applied to widths and heights.

    Returns:
        Tensor: Rescaled boxes with the same shape; rois keep their batch index.
    """
    _check_last_dim(bboxes, 'bboxes', sizes=(4, 5))
    is_roi = bboxes.shape[-1] == 5
    boxes = bboxes[..., 1:] if is_roi else bboxes
    cxcywh = bbox_xyxy_to_cxcywh(boxes)
    cxcywh = torch.cat([cxcywh[..., :2], cxcywh[..., 2:] * scale_factor], dim=-1)
    scaled = bbox_cxcywh_to_xyxy(cxcywh)
    return torch.cat([bboxes[..., :1], scaled], dim=-1) if is_roi else scaled


def scale_boxes(boxes: Union[BoxArray, BaseBoxes],
                scale_factor: Sequence[float]) -> Union[BoxArray, BaseBoxes]:
    """Multiply x coordinates by ``w_scale`` and y coordinates by ``h_scale``.

    Args:
        boxes (Tensor | np.ndarray | BaseBoxes): Boxes of shape [..., 4]. A box object is
            rescaled in place (``rescale_``) and returned, as mmdetection does.
        scale_factor (Sequence[float]): ``(w_scale, h_scale)``.

    Returns:
        Tensor | np.ndarray | BaseBoxes: Scaled boxes, same type and shape as ``boxes``.
    """
    if isinstance(boxes, BaseBoxes):
        boxes.rescale_(scale_factor)
        return boxes
    _check_last_dim(boxes, 'boxes')
    if len(scale_factor) != 2:
        raise ValueError(f'scale_factor must be (w_scale, h_scale), but got {scale_factor}')
    w_scale, h_scale = float(scale_factor[0]), float(scale_factor[1])
    factors = [w_scale, h_scale, w_scale, h_scale]
    if isinstance(boxes, Tensor):
        return boxes * boxes.new_tensor(factors)
    return (boxes * np.array(factors, dtype=boxes.dtype)).astype(boxes.dtype)


def _clip_to_image(boxes: BoxArray, img_shape: Sequence[int]) -> BoxArray:
    """Clip boxes [..., 4] (tensor or array) to [0, w] x [0, h] of ``img_shape`` (h, w, ...)."""
    h, w = img_shape[:2]
    if isinstance(boxes, Tensor):
        clipped = boxes.clone()
        clipped[..., 0::2] = clipped[..., 0::2].clamp(0, w)
        clipped[..., 1::2] = clipped[..., 1::2].clamp(0, h)
        return clipped
    clipped = boxes.copy()
    clipped[..., 0::2] = clipped[..., 0::2].clip(0, w)
    clipped[..., 1::2] = clipped[..., 1::2].clip(0, h)
    return clipped


def bbox_project(boxes: BoxArray, homography_matrix: BoxArray,
                 img_shape: Union[Sequence[int], None] = None) -> BoxArray:
    """Warp boxes by a 3x3 homography and take the axis-aligned hull of the 4 corners.

    Args:
        boxes (Tensor | np.ndarray): Boxes of shape [N, 4].
        homography_matrix (Tensor | np.ndarray): Matrix of shape [3, 3].
        img_shape (Sequence[int], optional): If given, clip the result to (h, w).

    Returns:
        Tensor | np.ndarray: Projected boxes [N, 4], same type as ``boxes``.
    """
    _check_last_dim(boxes, 'boxes')
    is_numpy = isinstance(boxes, np.ndarray)
    t = torch.from_numpy(boxes) if is_numpy else boxes
    mat = torch.as_tensor(homography_matrix, dtype=t.dtype, device=t.device)
    if mat.shape != (3, 3):
        raise ValueError(f'homography_matrix must have shape (3, 3), but got {tuple(mat.shape)}')
    x1, y1, x2, y2 = t.unbind(-1)
    corners = torch.stack([x1, y1, x2, y1, x1, y2, x2, y2], dim=-1).reshape(-1, 4, 2)
    corners = torch.cat([corners, corners.new_ones(corners.shape[:-1] + (1, ))], dim=-1)
    warped = corners @ mat.T  # [N, 4, 3]
    warped = warped[..., :2] / warped[..., 2:3]
    projected = torch.cat([warped.min(dim=1).values, warped.max(dim=1).values], dim=-1)
    if img_shape is not None:
        projected = _clip_to_image(projected, img_shape)
    return projected.numpy().astype(boxes.dtype) if is_numpy else projected


def bbox_mapping_back(bboxes: Tensor, img_shape: Sequence[int],
                      scale_factor: Union[float, Sequence[float]], flip: bool,
                      flip_direction: str = 'horizontal') -> Tensor:
    """Map boxes predicted on an augmented image back to the original image.

    Args:
        bboxes (Tensor): Boxes [..., 4] on the augmented (resized, maybe flipped) image.
        img_shape (Sequence[int]): (h, w) of the augmented image.
        scale_factor (float | Sequence[float]): The resize factor: one number, the 4
            per-coordinate factors (w, h, w, h) as mmdetection takes them, or (w, h).
        flip (bool): Whether the image was flipped.
        flip_direction (str): Direction of that flip.

    Returns:
        Tensor: Boxes of the same shape in original-image pixels.
    """
    boxes = bbox_flip(bboxes, img_shape, flip_direction) if flip else bboxes
    factor = torch.as_tensor(scale_factor, dtype=boxes.dtype, device=boxes.device).flatten()
    if factor.numel() == 2:  # (w, h): the form img_metas['scale_factor'] has
        factor = factor.repeat(2)
    if factor.numel() not in (1, 4):
        raise ValueError(f'scale_factor must be one number, (w, h) or 4 numbers, got '
                         f'{scale_factor!r}')
    return (boxes.reshape(-1, 4) / factor).reshape(bboxes.shape)


def bbox2roi(bbox_list: List[Tensor]) -> Tensor:
    """Stack per-image boxes into rois that carry their image index.

    Args:
        bbox_list (list[Tensor]): One tensor [n_i, 4+] per image (extra columns are dropped).

    Returns:
        Tensor: Rois of shape [sum(n_i), 5] as (batch_idx, x1, y1, x2, y2).
    """
    if not isinstance(bbox_list, (list, tuple)):
        raise TypeError(f'bbox_list must be a list of tensors, but got {type(bbox_list).__name__}')
    rois_list = []
    for img_id, bboxes in enumerate(bbox_list):
        bboxes = get_box_tensor(bboxes)
        if bboxes.numel() == 0:
            bboxes = bboxes.reshape(0, 4)
        idx = bboxes.new_full((bboxes.size(0), 1), img_id)
        rois_list.append(torch.cat([idx, bboxes[:, :4]], dim=-1))
    if not rois_list:
        return torch.zeros(0, 5)
    return torch.cat(rois_list, dim=0)


def roi2bbox(rois: Tensor) -> List[Tensor]:
    """Split rois back into per-image box tensors.

    Args:
        rois (Tensor): Rois of shape [K, 5] as (batch_idx, x1, y1, x2, y2).

    Returns:
        list[Tensor]: Boxes [n_i, 4], one entry per batch index present in ``rois``, in
        increasing order (as mmdetection: an image without rois has no entry).
    """
    _check_last_dim(rois, 'rois', sizes=(5, ))
    img_ids = torch.unique(rois[:, 0].detach().cpu(), sorted=True)
    return [rois[rois[:, 0] == img_id.item(), 1:] for img_id in img_ids]


def distance2bbox(points: Tensor, distance: Tensor,
                  max_shape: Union[Sequence[int], Sequence[Sequence[int]], Tensor,
                                   None] = None) -> Tensor:
    """Decode (left, top, right, bottom) distances from points into boxes.

    Args:
        points (Tensor): Points [N, 2] or [B, N, 2] as (x, y).
        distance (Tensor): Distances [N, 4] or [B, N, 4] from each point to the 4 sides.
        max_shape (optional): Clip the boxes to (h, w) (more entries, e.g. (h, w, c), are
            ignored); for batched points also one (h, w) per image, as a [B, 2] tensor or
            a list of B shapes.

    Returns:
        Tensor: Boxes [N, 4] or [B, N, 4].
    """
    x, y = points[..., 0], points[..., 1]
    boxes = torch.stack([x - distance[..., 0], y - distance[..., 1],
                         x + distance[..., 2], y + distance[..., 3]], dim=-1)
    if max_shape is None:
        return boxes
    shape = torch.as_tensor(max_shape, dtype=boxes.dtype, device=boxes.device)[..., :2]
    if shape.dim() == 2:  # one (h, w) per image of a batch
        if boxes.dim() != 3 or shape.size(0) != boxes.size(0):
            raise ValueError(f'distance2bbox: {shape.size(0)} image shapes for boxes of '
                             f'shape {tuple(boxes.shape)}; expected [B, N, 4] with B equal')
    max_wh = shape.flip(-1)  # [(B,) 2] as (w, h)
    max_xyxy = torch.cat([max_wh, max_wh], dim=-1).unsqueeze(-2)  # [(B,) 1, 4]
    return torch.minimum(boxes.clamp(min=0), max_xyxy)


def bbox2distance(points: Tensor, bbox: Tensor, max_dis: Union[float, None] = None,
                  eps: float = 0.1) -> Tensor:
    """Encode boxes as (left, top, right, bottom) distances from points.

    Args:
        points (Tensor): Points [N, 2] as (x, y).
        bbox (Tensor): Boxes [N, 4].
        max_dis (float, optional): Clamp distances to ``max_dis - eps``.
        eps (float): Margin kept below ``max_dis``.

    Returns:
        Tensor: Distances [N, 4].
    """
    dist = torch.stack([points[..., 0] - bbox[..., 0], points[..., 1] - bbox[..., 1],
                        bbox[..., 2] - points[..., 0], bbox[..., 3] - points[..., 1]], dim=-1)
    if max_dis is not None:
        dist = dist.clamp(min=0, max=max_dis - eps)
    return dist
