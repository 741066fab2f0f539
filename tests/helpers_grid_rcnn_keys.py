"""Expected ``state_dict`` entries of Grid R-CNN (mmdetection 3.3's
grid-rcnn_r50_fpn_gn-head_2x_coco.py model), written from mmdetection's module definitions,
not dumped from our own modules.

- ResNet-50, FPN and ``RPNHead`` as in Faster R-CNN.
- ``Shared2FCBBoxHead`` with ``with_reg=False``: ``shared_fcs.0/1`` and ``fc_cls`` only.
- ``GridHead``: ``convs`` (mmcv ConvModules with ``bias=True`` and a GN layer named ``gn``,
  ``point_feat_channels * grid_points`` channels; the first takes ``in_channels``);
  ``deconv1`` (ConvTranspose2d grouped per point: weight [in, out / groups, k, k]), ``norm1``
  (GroupNorm), ``deconv2`` (to one map per point); per grid point one first-order and one
  second-order transition per 4-neighbour (``forder_trans.k.n`` / ``sorder_trans.k.n``),
  each ``Sequential(depth-wise 5x5 conv, 1x1 conv)`` with biases.
"""
from typing import List, Tuple

from helpers_common_keys import fpn
from helpers_detr_keys import resnet50
from helpers_state_dict import Shapes
from helpers_two_stage_extra_keys import conv, rpn_head, shared2fc_bbox_head


def grid_neighbours(grid_size: int = 3) -> List[Tuple[int, ...]]:
    """4-neighbours of point ``col * grid_size + row``, ordered left, up, down, right."""
    out = []
    for col in range(grid_size):
        for row in range(grid_size):
            around = [(col - 1) * grid_size + row] if col > 0 else []
            around += [col * grid_size + row - 1] if row > 0 else []
            around += [col * grid_size + row + 1] if row < grid_size - 1 else []
            around += [(col + 1) * grid_size + row] if col < grid_size - 1 else []
            out.append(tuple(around))
    return out


def group_norm(prefix: str, channels: int) -> Shapes:
    return {f'{prefix}.weight': (channels, ), f'{prefix}.bias': (channels, )}


def grid_head(prefix: str, grid_points: int = 9, num_convs: int = 8, in_c: int = 256,
              point_c: int = 64, k: int = 3, deconv_k: int = 4) -> Shapes:
    width = grid_points * point_c
    keys = {}
    for i in range(num_convs):
        keys.update(conv(f'{prefix}.convs.{i}.conv', width, in_c if i == 0 else width, k))
        keys.update(group_norm(f'{prefix}.convs.{i}.gn', width))
    # ConvTranspose2d weights are [in, out // groups, k, k]
    keys[f'{prefix}.deconv1.weight'] = (width, width // grid_points, deconv_k, deconv_k)
    keys[f'{prefix}.deconv1.bias'] = (width, )
    keys.update(group_norm(f'{prefix}.norm1', width))
    keys[f'{prefix}.deconv2.weight'] = (width, 1, deconv_k, deconv_k)
    keys[f'{prefix}.deconv2.bias'] = (grid_points, )
    neighbours = grid_neighbours(int(round(grid_points**0.5)))
    for order in ('forder_trans', 'sorder_trans'):
        for point, around in enumerate(neighbours):
            for j in range(len(around)):
                p = f'{prefix}.{order}.{point}.{j}'
                keys[f'{p}.0.weight'] = (point_c, 1, 5, 5)  # depth-wise
                keys[f'{p}.0.bias'] = (point_c, )
                keys.update(conv(f'{p}.1', point_c, point_c, 1))
    return keys


def grid_rcnn_r50_fpn_keys() -> Shapes:
    return {**resnet50('backbone'), **fpn(), **rpn_head('rpn_head'),
            **shared2fc_bbox_head('roi_head.bbox_head', with_reg=False),
            **grid_head('roi_head.grid_head')}


def tiny_grid_rcnn_cfg() -> dict:
    """``helpers.tiny_two_stage_cfg`` turned into Grid R-CNN: a classification-only box head,
    a 14x14 grid extractor and a GridHead with 2 convs and 4 channels per point."""
    from helpers import tiny_two_stage_cfg
    cfg = tiny_two_stage_cfg()
    cfg['type'] = 'GridRCNN'
    roi_head = cfg['roi_head']
    roi_head['type'] = 'GridRoIHead'
    roi_head['bbox_head']['with_reg'] = False
    roi_head['grid_roi_extractor'] = dict(
        type='SingleRoIExtractor',
        roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
        out_channels=16, featmap_strides=[4, 8, 16, 32])
    roi_head['grid_head'] = dict(type='GridHead', grid_points=9, num_convs=2, in_channels=16,
                                 point_feat_channels=4, norm_cfg=dict(type='GN', num_groups=36))
    cfg['train_cfg']['rcnn'].update(pos_radius=1, max_num_grid=192)
    return cfg
