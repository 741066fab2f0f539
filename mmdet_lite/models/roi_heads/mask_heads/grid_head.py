"""GridHead: Grid R-CNN's grid-point heatmaps, fused between neighbouring points."""
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.config import ConfigDict
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType, InstanceList, MultiConfig, OptConfigType


class GridHeadArgumentError(ValueError, AssertionError):
    """A GridHead argument or input that mmdetection asserts on."""


@MODELS.register_module()
class GridHead(BaseModule):
    """Locate a ``g x g`` grid of points on each object (Grid R-CNN / Grid R-CNN Plus).

    Point ``k`` is grid column ``k // g`` and row ``k % g`` of the object box (for 9 points:
    0-2 on the left edge, 6-8 on the right edge, 0/3/6 on the top edge, 2/5/8 on the
    bottom). A heatmap covers the RoI expanded to twice its width and height about its
    centre, at ``4 * roi_feat_size`` pixels (56 for 14x14 features); each point only
    predicts the half-size window of it where that point can lie (``sub_regions``, Grid
    R-CNN Plus), so the head outputs ``[K, g*g, 28, 28]``. ::

        RoI feats [K, in, 14, 14] -> convs (first stride 2) -> [K, g*g*C, 7, 7]
          -> split per point [K, C, 7, 7] x g*g
          -> first-order fusion:  f_k  = x_k + sum_{n in N(k)} T1_kn(x_n)
          -> second-order fusion: s_k  = x_k + sum_{n in N(k)} T2_kn(f_n)
          -> deconv1 (x2, grouped per point) + GN + ReLU -> deconv2 (x2) -> [K, g*g, 28, 28]

    ``N(k)`` are the 4-neighbours of point ``k`` on the grid; each transition ``T`` is a
    5x5 depth-wise conv followed by a 1x1 conv. In training the unfused features ``x`` also
    go through the deconvs, giving a second heatmap that is supervised as well.

    Args:
        grid_points (int): Number of grid points, a square >= 4. Defaults to 9.
        num_convs (int): Convs before the fusion. Defaults to 8.
        roi_feat_size (int): Side of the (square) RoI features. Defaults to 14.
        in_channels (int): Channels of the RoI features. Defaults to 256.
        conv_kernel_size (int): Kernel of the convs. Defaults to 3.
        point_feat_channels (int): Channels per grid point. Defaults to 64.
        deconv_kernel_size (int): Kernel of the two stride-2 deconvs. Defaults to 4.
        class_agnostic (bool): Stored only; the heatmaps are always class-agnostic (as in
            mmdetection). Defaults to False.
        loss_grid (dict): Loss on the heatmap logits. Defaults to sigmoid
            ``CrossEntropyLoss`` with weight 15.
        conv_cfg (dict, optional): Conv layer config of the convs.
        norm_cfg (dict): Norm of the convs. Defaults to GN with 36 groups.
        init_cfg (dict | list[dict]): Kaiming for convs / linears, Normal(0.001) for the
            deconvs, and ``deconv2``'s bias at -log(99) (a prior probability of 0.01).
    """

    def __init__(
        self,
        grid_points: int = 9,
        num_convs: int = 8,
        roi_feat_size: int = 14,
        in_channels: int = 256,
        conv_kernel_size: int = 3,
        point_feat_channels: int = 64,
        deconv_kernel_size: int = 4,
        class_agnostic: bool = False,
        loss_grid: ConfigType = dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=15),
        conv_cfg: OptConfigType = None,
        norm_cfg: ConfigType = dict(type='GN', num_groups=36),
        init_cfg: MultiConfig = [
            dict(type='Kaiming', layer=['Conv2d', 'Linear']),
            dict(
                type='Normal',
                layer='ConvTranspose2d',
                std=0.001,
                override=dict(
                    type='Normal',
                    name='deconv2',
                    std=0.001,
                    bias=-np.log(0.99 / 0.01)))
        ]
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.grid_points = grid_points
        self.num_convs = num_convs
        self.roi_feat_size = roi_feat_size
        self.in_channels = in_channels
        self.conv_kernel_size = conv_kernel_size
        self.point_feat_channels = point_feat_channels
        self.conv_out_channels = point_feat_channels * grid_points
        self.class_agnostic = class_agnostic
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        if isinstance(norm_cfg, dict) and norm_cfg['type'] == 'GN' and \
                self.conv_out_channels % norm_cfg['num_groups'] != 0:
            raise GridHeadArgumentError(
                f'GN num_groups={norm_cfg["num_groups"]} must divide point_feat_channels * '
                f'grid_points = {self.conv_out_channels}')
        if grid_points < 4:
            raise GridHeadArgumentError(f'grid_points must be >= 4, got {grid_points}')
        self.grid_size = int(np.sqrt(grid_points))
        if self.grid_size * self.grid_size != grid_points:
            raise ValueError('grid_points must be a square number')
        if not isinstance(roi_feat_size, int):
            raise ValueError('Only square RoIs are supporeted in Grid R-CNN')
        # the full heatmap (over the 2x expanded RoI); the head predicts half of it per point
        self.whole_map_size = roi_feat_size * 4
        self.sub_regions = self.calc_sub_regions()

        padding = (conv_kernel_size - 1) // 2
        self.convs = nn.Sequential(*[
            ConvModule(in_channels if i == 0 else self.conv_out_channels,
                       self.conv_out_channels, conv_kernel_size, stride=2 if i == 0 else 1,
                       padding=padding, conv_cfg=conv_cfg, norm_cfg=norm_cfg, bias=True)
            for i in range(num_convs)
        ])
        # grouped per point: each point's heatmap only sees its own (fused) features
        deconv_padding = (deconv_kernel_size - 2) // 2
        self.deconv1 = nn.ConvTranspose2d(self.conv_out_channels, self.conv_out_channels,
                                          kernel_size=deconv_kernel_size, stride=2,
                                          padding=deconv_padding, groups=grid_points)
        self.norm1 = nn.GroupNorm(grid_points, self.conv_out_channels)
        self.deconv2 = nn.ConvTranspose2d(self.conv_out_channels, grid_points,
                                          kernel_size=deconv_kernel_size, stride=2,
                                          padding=deconv_padding, groups=grid_points)

        self.neighbor_points = self._grid_neighbours(self.grid_size)
        self.num_edges = sum(len(n) for n in self.neighbor_points)
        # one transition per directed edge (k <- n); first- and second-order apart
        self.forder_trans = nn.ModuleList(
            nn.ModuleList(self._transition() for _ in neighbours)
            for neighbours in self.neighbor_points)
        self.sorder_trans = nn.ModuleList(
            nn.ModuleList(self._transition() for _ in neighbours)
            for neighbours in self.neighbor_points)

        self.loss_grid = MODELS.build(loss_grid)

    @staticmethod
    def _grid_neighbours(grid_size: int) -> List[Tuple[int, ...]]:
        """The 4-neighbours of each point, ordered left, up, down, right.

        The order fixes which ``forder_trans[k][j]`` / ``sorder_trans[k][j]`` belongs to
        which edge, so it must stay mmdetection's for checkpoints to load.
        """
        neighbours = []
        for col in range(grid_size):
            for row in range(grid_size):
                around = []
                if col > 0:
                    around.append((col - 1) * grid_size + row)
                if row > 0:
                    around.append(col * grid_size + row - 1)
                if row < grid_size - 1:
                    around.append(col * grid_size + row + 1)
                if col < grid_size - 1:
                    around.append((col + 1) * grid_size + row)
                neighbours.append(tuple(around))
        return neighbours

    def _transition(self) -> nn.Sequential:
        """A 5x5 depth-wise conv then a 1x1 conv, on one point's features."""
        c = self.point_feat_channels
        return nn.Sequential(nn.Conv2d(c, c, 5, stride=1, padding=2, groups=c),
                             nn.Conv2d(c, c, 1))

    def calc_sub_regions(self) -> List[Tuple[int, int, int, int]]:
        """Each point's window ``(x1, y1, x2, y2)`` in the whole heatmap (Grid R-CNN Plus).

        A window is half the heatmap's side: edge points take the half on their side,
        inner points a window starting a quarter map before their nominal position.
        """
        # half the side, rounded down to an even size (28 for 56)
        half = self.whole_map_size // 4 * 2

        def start(idx: int) -> int:
            if idx == 0:
                return 0
            if idx == self.grid_size - 1:
                return half
            return max(int((idx / (self.grid_size - 1) - 0.25) * self.whole_map_size), 0)

        regions = []
        for k in range(self.grid_points):
            x1, y1 = start(k // self.grid_size), start(k % self.grid_size)
            regions.append((x1, y1, x1 + half, y1 + half))
        return regions

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """Heatmap logits of each grid point.

        Args:
            x (Tensor): RoI features [K, in_channels, S, S], S = ``roi_feat_size``.

        Returns:
            dict: ``fused`` [K, grid_points, 2S, 2S] from the fused features and
            ``unfused`` of the same shape from the plain features in training (the
            ``fused`` tensor itself in eval mode).
        """
        if not x.shape[-1] == x.shape[-2] == self.roi_feat_size:
            raise GridHeadArgumentError(
                f'GridHead expects RoI features of {self.roi_feat_size}x'
                f'{self.roi_feat_size}, got {tuple(x.shape[-2:])}')
        x = self.convs(x)  # [K, P*C, S/2, S/2]
        points = x.split(self.point_feat_channels, dim=1)  # P x [K, C, S/2, S/2]

        def fuse(own: Tuple[Tensor, ...], sources: Tuple[Tensor, ...],
                 transitions: nn.ModuleList) -> List[Tensor]:
            # each point's features plus the transformed features of its neighbours
            return [
                sum((trans(sources[n]) for n, trans in zip(neighbours, transitions[k])),
                    own[k]) for k, neighbours in enumerate(self.neighbor_points)
            ]

        first_order = fuse(points, points, self.forder_trans)
        second_order = fuse(points, first_order, self.sorder_trans)
        heatmap = self._heatmap(torch.cat(second_order, dim=1))  # [K, P, 2S, 2S]
        # the plain features get their own supervision in training only
        heatmap_unfused = self._heatmap(x) if self.training else heatmap
        return dict(fused=heatmap, unfused=heatmap_unfused)

    def _heatmap(self, feats: Tensor) -> Tensor:
        """[K, P*C, S/2, S/2] point features -> [K, P, 2S, 2S] logits."""
        feats = F.relu(self.norm1(self.deconv1(feats)), inplace=True)  # [K, P*C, S, S]
        return self.deconv2(feats)

    # ------------------------------------------------------------------ training
    def get_targets(self, sampling_results: List, rcnn_train_cfg: ConfigDict) -> Tensor:
        """Binary heatmaps of the GT grid points of every positive RoI of the batch.

        Each GT grid point is mapped into the whole heatmap of its (2x expanded) RoI,
        truncated to an integer pixel like ``int()``; pixels within ``pos_radius`` of it
        are 1. RoIs whose expanded width or height is at most ``grid_size`` pixels get no
        positive pixel. Only each point's ``sub_regions`` window is kept.

        Args:
            sampling_results (list[SamplingResult]): ``pos_priors`` and ``pos_gt_bboxes``.
            rcnn_train_cfg (dict): ``pos_radius`` (int).

        Returns:
            Tensor: [N, grid_points, half, half] float targets, N = positives of the batch.
        """
        priors = torch.cat([res.pos_priors for res in sampling_results])  # [N, 4]
        gts = torch.cat([get_box_tensor(res.pos_gt_bboxes) for res in sampling_results])
        if priors.shape != gts.shape:
            raise GridHeadArgumentError(f'pos_priors {tuple(priors.shape)} and pos_gt_bboxes '
                                        f'{tuple(gts.shape)} differ in shape')
        # the heatmap spans the RoI expanded to twice its size about its centre
        x1 = priors[:, 0] - (priors[:, 2] - priors[:, 0]) / 2
        y1 = priors[:, 1] - (priors[:, 3] - priors[:, 1]) / 2
        x2 = priors[:, 2] + (priors[:, 2] - priors[:, 0]) / 2
        y2 = priors[:, 3] + (priors[:, 3] - priors[:, 1]) / 2
        widths, heights = (x2 - x1)[:, None], (y2 - y1)[:, None]  # [N, 1]

        # point k lies at fx * gt_x1 + (1 - fx) * gt_x2 (and the same in y)
        # (the factors are formed in double precision first, as mmdetection's are)
        g = self.grid_size
        fx = [1 - (k // g) / (g - 1) for k in range(self.grid_points)]
        fy = [1 - (k % g) / (g - 1) for k in range(self.grid_points)]
        point_x = gts.new_tensor(fx) * gts[:, 0:1] + \
            gts.new_tensor([1 - f for f in fx]) * gts[:, 2:3]  # [N, P]
        point_y = gts.new_tensor(fy) * gts[:, 1:2] + \
            gts.new_tensor([1 - f for f in fy]) * gts[:, 3:4]
        map_size = self.whole_map_size
        cx = ((point_x - x1[:, None]) / widths * map_size).trunc().long()  # [N, P]
        cy = ((point_y - y1[:, None]) / heights * map_size).trunc().long()

        # pixel coordinates (in the whole map) of each point's window
        half = self.sub_regions[0][2] - self.sub_regions[0][0]
        steps = torch.arange(half, device=gts.device)
        win_x = torch.stack([steps + r[0] for r in self.sub_regions])  # [P, half]
        win_y = torch.stack([steps + r[1] for r in self.sub_regions])
        dx2 = (win_x[None] - cx[..., None])**2  # [N, P, half]
        dy2 = (win_y[None] - cy[..., None])**2
        radius = rcnn_train_cfg['pos_radius']
        inside = dy2[..., :, None] + dx2[..., None, :] <= radius**2  # [N, P, half, half]
        large = (widths > g) & (heights > g)  # [N, 1]: tiny RoIs have no positives
        return (inside & large[..., None, None]).float()

    def loss(self, grid_pred: Dict[str, Tensor], sample_idx: Tensor, sampling_results: List,
             rcnn_train_cfg: ConfigDict) -> Dict[str, Tensor]:
        """``loss_grid``: the loss of the fused plus that of the unfused heatmaps.

        Args:
            grid_pred (dict): ``forward`` output for the selected positives.
            sample_idx (Tensor): [M] indices of those positives among all of the batch's.
            sampling_results (list[SamplingResult]): Per-image sampling results.
            rcnn_train_cfg (dict): ``pos_radius``.

        Returns:
            dict: ``loss_grid``.
        """
        targets = self.get_targets(sampling_results, rcnn_train_cfg)[sample_idx]
        loss_fused = self.loss_grid(grid_pred['fused'], targets)
        loss_unfused = self.loss_grid(grid_pred['unfused'], targets)
        return dict(loss_grid=loss_fused + loss_unfused)

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self, grid_preds: Dict[str, Tensor], results_list: InstanceList,
                        batch_img_metas: List[dict], rescale: bool = False) -> InstanceList:
        """Replace each detection's box by the one its grid points vote for.

        Args:
            grid_preds (dict): ``forward`` output; ``fused`` [N, P, half, half] for all
                detections of the batch, in ``results_list`` order.
            results_list (list[InstanceData]): Detections (``bboxes`` in the input frame).
            batch_img_metas (list[dict]): ``scale_factor`` for ``rescale``.
            rescale (bool): Map the refined boxes to the original image.

        Returns:
            list[InstanceData]: The same objects with ``bboxes`` refined.
        """
        num_per_img = tuple(len(res.bboxes) for res in results_list)
        fused = grid_preds['fused'].split(num_per_img, 0)
        for results, heatmaps, img_meta in zip(results_list, fused, batch_img_metas):
            if len(results) != 0:
                results.bboxes = self._predict_by_feat_single(heatmaps, results.bboxes,
                                                              img_meta, rescale)
        return results_list

    def _predict_by_feat_single(self, grid_pred: Tensor, bboxes: Tensor, img_meta: dict,
                                rescale: bool = False) -> Tensor:
        """Refined boxes of one image.

        Each point's peak is taken as its location (the centre of the peak pixel, mapped
        from the whole heatmap back onto the expanded box); each box side is the average
        of the locations of the points on it, weighted by their peak probabilities.

        Args:
            grid_pred (Tensor): [R, P, half, half] heatmap logits.
            bboxes (Tensor): [R, 4] boxes the heatmaps were predicted on.
            img_meta (dict): ``scale_factor`` when ``rescale``.
            rescale (bool): Divide the boxes by ``scale_factor``.

        Returns:
            Tensor: [R, 4] refined boxes.
        """
        if bboxes.size(0) != grid_pred.size(0):
            raise GridHeadArgumentError(f'{bboxes.size(0)} boxes but {grid_pred.size(0)} '
                                        'heatmaps')
        num_rois, num_points, h, w = grid_pred.shape
        half = self.whole_map_size // 4 * 2
        if not (h == w == half and num_points == self.grid_points):
            raise GridHeadArgumentError(
                f'grid heatmaps should be [R, {self.grid_points}, {half}, {half}], got '
                f'{tuple(grid_pred.shape)}')
        probs = grid_pred.sigmoid().flatten(2)  # [R, P, h*w]
        scores, peaks = probs.max(dim=2)  # [R, P]
        # window pixel -> whole-heatmap pixel
        offset_x = peaks.new_tensor([r[0] for r in self.sub_regions])
        offset_y = peaks.new_tensor([r[1] for r in self.sub_regions])
        xs = peaks % w + offset_x  # [R, P]
        ys = peaks // w + offset_y

        # the whole map (2 * half pixels) spans twice the box: one pixel = box side / half
        widths = (bboxes[:, 2] - bboxes[:, 0])[:, None]  # [R, 1]
        heights = (bboxes[:, 3] - bboxes[:, 1])[:, None]
        x1 = bboxes[:, 0, None] - widths / 2
        y1 = bboxes[:, 1, None] - heights / 2
        abs_xs = (xs.float() + 0.5) / w * widths + x1  # [R, P]
        abs_ys = (ys.float() + 0.5) / h * heights + y1

        g = self.grid_size
        left = list(range(g))
        top = [k * g for k in range(g)]
        right = [self.grid_points - g + k for k in range(g)]
        bottom = [(k + 1) * g - 1 for k in range(g)]

        def vote(coords: Tensor, idx: List[int]) -> Tensor:
            return (coords[:, idx] * scores[:, idx]).sum(dim=1, keepdim=True) / \
                scores[:, idx].sum(dim=1, keepdim=True)

        bboxes = torch.cat([vote(abs_xs, left), vote(abs_ys, top), vote(abs_xs, right),
                            vote(abs_ys, bottom)], dim=1)  # [R, 4]
        # mmdetection means to clip the boxes to the image here, but clamps a copy made by
        # advanced indexing, so its boxes stay unclipped; kept unclipped to match.
        if rescale:
            if img_meta.get('scale_factor') is None:
                raise GridHeadArgumentError("rescale=True needs 'scale_factor' in the image "
                                            'meta')
            bboxes = bboxes / bboxes.new_tensor(img_meta['scale_factor']).repeat((1, 2))
        return bboxes
