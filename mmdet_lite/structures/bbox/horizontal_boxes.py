"""``HorizontalBoxes``: axis-aligned boxes stored as (x1, y1, x2, y2), registered as ``'hbox'``."""
import math
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import BoolTensor, Tensor

from ..mask import BitmapMasks, PolygonMasks
from .base_boxes import BaseBoxes, BoxValueError, DeviceType
from .bbox_overlaps import bbox_overlaps
from .box_type import register_box

MaskType = Union[BitmapMasks, PolygonMasks]

_IN_MODES = ('xyxy', 'cxcywh')
_FLIP_DIRECTIONS = ('horizontal', 'vertical', 'diagonal')


def _check_pair(value, name: str) -> None:
    if len(value) != 2:
        raise BoxValueError(f'{name} must have 2 values, but got {value!r}')


@register_box(name='hbox')
class HorizontalBoxes(BaseBoxes):
    """Horizontal (axis-aligned) boxes, stored as (x1, y1, x2, y2).

    Args:
        data (Tensor | np.ndarray | Sequence): Boxes of shape [..., 4].
        dtype (torch.dtype, optional): Cast to this dtype. Defaults to None.
        device (str | torch.device, optional): Move to this device. Defaults to None.
        clone (bool): Copy the data. Defaults to True.
        in_mode (str, optional): Layout of ``data``: ``'xyxy'`` (stored as is) or ``'cxcywh'``
            (center x, center y, width, height; converted to xyxy). None means ``'xyxy'``.

    Example:
        >>> HorizontalBoxes([[5., 5., 4., 2.]], in_mode='cxcywh').tensor
        tensor([[3., 4., 7., 6.]])
    """

    box_dim: int = 4

    def __init__(self,
                 data: Union[Tensor, np.ndarray],
                 dtype: Optional[torch.dtype] = None,
                 device: Optional[DeviceType] = None,
                 clone: bool = True,
                 in_mode: Optional[str] = None) -> None:
        super().__init__(data=data, dtype=dtype, device=device, clone=clone)
        if isinstance(in_mode, str):
            if in_mode not in _IN_MODES:
                raise ValueError(f'Get invalid mode {in_mode}.')
            if in_mode == 'cxcywh':
                self.tensor = self.cxcywh_to_xyxy(self.tensor)

    # ------------------------------------------------------------------ layouts
    @staticmethod
    def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
        """Convert [..., 4] boxes from (cx, cy, w, h) to (x1, y1, x2, y2)."""
        ctr, wh = boxes.split((2, 2), dim=-1)
        return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=-1)

    @staticmethod
    def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
        """Convert [..., 4] boxes from (x1, y1, x2, y2) to (cx, cy, w, h)."""
        xy1, xy2 = boxes.split((2, 2), dim=-1)
        return torch.cat([(xy1 + xy2) / 2, xy2 - xy1], dim=-1)

    @property
    def cxcywh(self) -> Tensor:
        """Tensor: The boxes as (cx, cy, w, h), shape [..., 4]."""
        return self.xyxy_to_cxcywh(self.tensor)

    @property
    def xyxy(self) -> Tensor:
        """Tensor: The boxes as (x1, y1, x2, y2), shape [..., 4] (the stored tensor)."""
        return self.tensor

    @staticmethod
    def hbox2corner(boxes: Tensor) -> Tensor:
        """Return the corners (x1,y1), (x2,y1), (x1,y2), (x2,y2) of [..., 4] boxes: [..., 4, 2]."""
        x1, y1, x2, y2 = boxes.unbind(-1)
        corners = torch.stack([x1, y1, x2, y1, x1, y2, x2, y2], dim=-1)
        return corners.reshape(*corners.shape[:-1], 4, 2)

    @staticmethod
    def corner2hbox(corners: Tensor) -> Tensor:
        """Return the axis-aligned hull [..., 4] of corner points [..., K, 2]."""
        if corners.numel() == 0:
            return corners.new_zeros((0, 4))
        return torch.cat([corners.min(dim=-2).values, corners.max(dim=-2).values], dim=-1)

    # ------------------------------------------------------------------ measures
    @property
    def centers(self) -> Tensor:
        """Tensor: Centers (cx, cy), shape [..., 2]."""
        return (self.tensor[..., :2] + self.tensor[..., 2:]) / 2

    @property
    def areas(self) -> Tensor:
        """Tensor: Areas w * h, shape [...]."""
        return self.widths * self.heights

    @property
    def widths(self) -> Tensor:
        """Tensor: Widths x2 - x1, shape [...]."""
        return self.tensor[..., 2] - self.tensor[..., 0]

    @property
    def heights(self) -> Tensor:
        """Tensor: Heights y2 - y1, shape [...]."""
        return self.tensor[..., 3] - self.tensor[..., 1]

    # ------------------------------------------------------------------ in-place geometry
    def flip_(self, img_shape: Tuple[int, int], direction: str = 'horizontal') -> None:
        """Flip in place inside an image (mmdet convention: ``x1' = w - x2``).

        Args:
            img_shape (tuple[int, int]): Image (height, width).
            direction (str): ``'horizontal'``, ``'vertical'`` or ``'diagonal'`` (both).
        """
        if direction not in _FLIP_DIRECTIONS:
            raise BoxValueError(f'flip direction must be one of {_FLIP_DIRECTIONS}, '
                                f'but got {direction!r}')
        boxes = self.tensor
        original = boxes.clone()
        img_h, img_w = img_shape[0], img_shape[1]
        if direction in ('horizontal', 'diagonal'):
            boxes[..., 0] = img_w - original[..., 2]
            boxes[..., 2] = img_w - original[..., 0]
        if direction in ('vertical', 'diagonal'):
            boxes[..., 1] = img_h - original[..., 3]
            boxes[..., 3] = img_h - original[..., 1]

    def translate_(self, distances: Tuple[float, float]) -> None:
        """Shift in place by ``distances`` = (dx, dy)."""
        _check_pair(distances, 'distances')
        self.tensor = self.tensor + self.tensor.new_tensor(distances).repeat(2)

    def clip_(self, img_shape: Tuple[int, int]) -> None:
        """Clip in place: x to [0, width], y to [0, height] of ``img_shape`` (h, w)."""
        boxes = self.tensor
        boxes[..., 0::2] = boxes[..., 0::2].clamp(0, img_shape[1])
        boxes[..., 1::2] = boxes[..., 1::2].clamp(0, img_shape[0])

    def rotate_(self, center: Tuple[float, float], angle: float) -> None:
        """Rotate the corners about ``center`` and keep their axis-aligned hull, in place.

        Args:
            center (tuple[float, float]): Rotation center (x, y).
            angle (float): Degrees; positive values rotate clockwise on screen (y down).
        """
        theta = math.radians(angle)
        cos, sin = math.cos(theta), math.sin(theta)
        cx, cy = center
        # Clockwise on screen with y pointing down:
        # x' = cx + cos*(x-cx) - sin*(y-cy), y' = cy + sin*(x-cx) + cos*(y-cy).
        affine = self.tensor.new_tensor([[cos, -sin, cx - cos * cx + sin * cy],
                                         [sin, cos, cy - sin * cx - cos * cy], [0., 0., 1.]])
        self.tensor = self._transform_corners(affine)

    def project_(self, homography_matrix: Union[Tensor, np.ndarray]) -> None:
        """Warp the corners by a 3x3 homography and keep their axis-aligned hull, in place."""
        matrix = self.tensor.new_tensor(homography_matrix) \
            if isinstance(homography_matrix, np.ndarray) else homography_matrix
        self.tensor = self._transform_corners(matrix)

    def _transform_corners(self, matrix: Tensor) -> Tensor:
        """Apply a 3x3 matrix to the homogeneous corners; return the hull boxes [..., 4]."""
        corners = self.hbox2corner(self.tensor)  # [..., 4, 2]
        ones = corners.new_ones(*corners.shape[:-1], 1)
        homo = torch.cat([corners, ones], dim=-1) @ matrix.to(corners).transpose(-1, -2)
        return self.corner2hbox(homo[..., :2] / homo[..., 2:3])

    def rescale_(self, scale_factor: Tuple[float, float]) -> None:
        """Multiply x by ``scale_factor[0]`` and y by ``scale_factor[1]`` in place."""
        _check_pair(scale_factor, 'scale_factor')
        self.tensor = self.tensor * self.tensor.new_tensor(scale_factor).repeat(2)

    def resize_(self, scale_factor: Tuple[float, float]) -> None:
        """Scale widths and heights by (w_scale, h_scale) about the fixed centers, in place."""
        _check_pair(scale_factor, 'scale_factor')
        ctr = self.centers
        half_wh = (self.tensor[..., 2:] - self.tensor[..., :2]) \
            * self.tensor.new_tensor(scale_factor) / 2
        self.tensor = torch.cat([ctr - half_wh, ctr + half_wh], dim=-1)

    # ------------------------------------------------------------------ queries
    def is_inside(self,
                  img_shape: Tuple[int, int],
                  all_inside: bool = False,
                  allowed_border: int = 0) -> BoolTensor:
        """Return which boxes are inside the image.

        Args:
            img_shape (tuple[int, int]): Image (height, width).
            all_inside (bool): Require the whole box inside (``x2 < w + border``); otherwise
                any overlap with the image (expanded by the border) counts. Defaults to False.
            allowed_border (int): Margin around the image still counted as inside.

        Returns:
            BoolTensor: Shape [...] of the boxes without the last dim.
        """
        img_h, img_w = img_shape
        boxes = self.tensor
        x1, y1, x2, y2 = boxes.unbind(-1)
        if all_inside:
            return (x1 >= -allowed_border) & (y1 >= -allowed_border) & \
                (x2 < img_w + allowed_border) & (y2 < img_h + allowed_border)
        return (x1 < img_w + allowed_border) & (y1 < img_h + allowed_border) & \
            (x2 > -allowed_border) & (y2 > -allowed_border)

    def find_inside_points(self, points: Tensor, is_aligned: bool = False) -> BoolTensor:
        """Return which points lie inside (or on the border of) which boxes.

        Args:
            points (Tensor): Points [M, 2] as (x, y).
            is_aligned (bool): Test point i against box i only (M must equal N).

        Returns:
            BoolTensor: [M, N], or [M] when ``is_aligned``.
        """
        boxes = self.tensor
        if boxes.dim() != 2:
            raise BoxValueError(f'boxes dimension must be 2, but got shape {tuple(boxes.shape)}')
        if is_aligned:
            if boxes.size(0) != points.size(0):
                raise BoxValueError(f'is_aligned needs as many points as boxes, but got '
                                    f'{points.size(0)} points and {boxes.size(0)} boxes')
        else:
            boxes = boxes[None, :, :]
            points = points[:, None, :]
        x1, y1, x2, y2 = boxes.unbind(-1)
        px, py = points[..., 0], points[..., 1]
        return (px >= x1) & (px <= x2) & (py >= y1) & (py <= y2)

    @staticmethod
    def overlaps(boxes1: BaseBoxes,
                 boxes2: BaseBoxes,
                 mode: str = 'iou',
                 is_aligned: bool = False,
                 eps: float = 1e-6) -> Tensor:
        """Overlaps of two box sets after converting both to ``HorizontalBoxes``.

        Args:
            boxes1 (BaseBoxes): Boxes [M, box_dim] (or empty).
            boxes2 (BaseBoxes): Boxes [N, box_dim] (or empty).
            mode (str): ``'iou'``, ``'iof'`` or ``'giou'``. Defaults to ``'iou'``.
            is_aligned (bool): Pair box i with box i (M == N). Defaults to False.
            eps (float): Lower bound of the denominators.

        Returns:
            Tensor: [M, N], or [M] when ``is_aligned``.
        """
        boxes1 = boxes1.convert_to('hbox')
        boxes2 = boxes2.convert_to('hbox')
        return bbox_overlaps(boxes1.tensor, boxes2.tensor, mode=mode, is_aligned=is_aligned,
                             eps=eps)

    @staticmethod
    def from_instance_masks(masks: MaskType) -> 'HorizontalBoxes':
        """Return the tight boxes [N, 4] (float32) around N instance masks.

        A bitmap box covers whole pixels (``x2 = last column + 1``); an empty bitmap gives
        (0, 0, 0, 0). A polygon box is the min/max of its vertices.

        Args:
            masks (BitmapMasks | PolygonMasks): N instance masks.

        Returns:
            HorizontalBoxes: Boxes of shape [N, 4].
        """
        boxes = np.zeros((len(masks), 4), dtype=np.float32)
        if isinstance(masks, BitmapMasks):
            cols_any = masks.masks.any(axis=1)  # [N, W]
            rows_any = masks.masks.any(axis=2)  # [N, H]
            for i in range(len(masks)):
                xs = np.flatnonzero(cols_any[i])
                ys = np.flatnonzero(rows_any[i])
                if xs.size and ys.size:
                    boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
        elif isinstance(masks, PolygonMasks):
            for i, polys in enumerate(masks.masks):
                # Start beyond any coordinate so that min/max take the vertices' values;
                # an object without polygons keeps mmdetection's (2w, 2h, 0, 0).
                xy_min = np.array([masks.width * 2, masks.height * 2], dtype=np.float32)
                xy_max = np.zeros(2, dtype=np.float32)
                for poly in polys:
                    xy = np.asarray(poly, dtype=np.float32).reshape(-1, 2)
                    xy_min = np.minimum(xy_min, xy.min(axis=0))
                    xy_max = np.maximum(xy_max, xy.max(axis=0))
                boxes[i, :2] = xy_min
                boxes[i, 2:] = xy_max
        else:
            raise TypeError('`masks` must be `BitmapMasks`  or `PolygonMasks`, '
                            f'but got {type(masks)}.')
        return HorizontalBoxes(boxes)

    def create_masks(self, img_shape: Tuple[int, int]) -> BitmapMasks:
        """Return filled-rectangle masks of the boxes, for objects that have no mask.

        Corners are truncated to integers, so a box covers rows [y1, y2) and columns
        [x1, x2) (CopyPaste with ``paste_by_box=True`` pastes these).

        Args:
            img_shape (tuple[int, int]): (h, w) of the masks.

        Returns:
            BitmapMasks: N uint8 masks of shape [N, h, w].
        """
        height, width = int(img_shape[0]), int(img_shape[1])
        masks = np.zeros((len(self), height, width), dtype=np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(self.tensor.reshape(-1, 4).tolist()):
            masks[i, int(y1):int(y2), int(x1):int(x2)] = 1
        return BitmapMasks(masks, height, width)
