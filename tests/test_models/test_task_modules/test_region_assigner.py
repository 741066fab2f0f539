"""RegionAssigner (Cascade RPN): center region positive, ignore region and adjacent levels."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules.assigners.region_assigner import calc_region
from mmdet_lite.registry import TASK_UTILS

STRIDES = [8, 16]
FEATMAP_SIZES = [(4, 4), (2, 2)]


def _anchors(stride, size, featmap):
    """Anchors of side ``size`` centered on the cell corners (x = stride * i), row-major."""
    h, w = featmap
    ys, xs = torch.meshgrid(torch.arange(h) * stride, torch.arange(w) * stride, indexing='ij')
    centers = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float()
    return torch.cat([centers - size / 2, centers + size / 2], dim=1)


ANCHORS = torch.cat([_anchors(8, 8, (4, 4)), _anchors(16, 16, (2, 2))])
META = dict(img_shape=(32, 32))


def _assign(gts, labels, valid=None, allowed_border=-1, ignore=None):
    valid = torch.ones(len(ANCHORS), dtype=torch.bool) if valid is None else valid
    assigner = TASK_UTILS.build(dict(type='RegionAssigner', center_ratio=0.2,
                                     ignore_ratio=0.5))
    gt = InstanceData(bboxes=torch.tensor(gts), labels=torch.tensor(labels))
    return assigner.assign(InstanceData(priors=ANCHORS, valid_flags=valid), gt, META,
                           FEATMAP_SIZES, [16, 4], anchor_scale=4, anchor_strides=STRIDES,
                           gt_instances_ignore=ignore, allowed_border=allowed_border)


def test_calc_region_by_hand():
    # [0, 32] at stride 8 is [0, 4] cells; cutting 0.4 from each side: round(1.6), round(2.4).
    region = calc_region(torch.tensor([0., 0., 32., 32.]), 0.4, 8, (4, 4))
    assert [v.item() for v in region] == [2., 2., 2., 2.]
    assert [v.item() for v in calc_region(torch.tensor([0., 0., 32., 32.]), 0.25, 8)] == \
        [1., 1., 3., 3.]


def test_center_positive_ignore_ring_and_adjacent_level():
    # sqrt(area) 32 = anchor_scale * stride 8 -> level 0. Center region: cell (2, 2); ignore
    # region: cells 1..3; the whole of level 1 is inside its ignore region.
    result = _assign([[0., 0., 32., 32.]], [5])
    level0 = [[0, 0, 0, 0],
              [0, -1, -1, -1],
              [0, -1, 1, -1],
              [0, -1, -1, -1]]
    expected = [v for row in level0 for v in row] + [-1, -1, -1, -1]
    assert result.gt_inds.tolist() == expected
    labels = [0] * 20
    labels[10] = 5  # labels are 0, not -1, off the positives (as mmdetection)
    assert result.labels.tolist() == labels
    assert result.max_overlaps is None


def test_anchors_outside_the_image_or_invalid_are_ignored():
    valid = torch.ones(len(ANCHORS), dtype=torch.bool)
    valid[15] = False
    result = _assign([[0., 0., 32., 32.]], [5], valid=valid, allowed_border=0)
    level0 = torch.tensor(result.gt_inds[:16].tolist()).view(4, 4)
    # Row 0 and column 0 stick out by 4 px (x1 or y1 = -4); anchor 15 is invalid.
    assert (level0[0] == -1).all() and (level0[:, 0] == -1).all()
    assert level0[2, 2] == 1 and level0[3, 3] == -1


def test_empty_and_ignore_not_supported():
    result = _assign(torch.zeros(0, 4).tolist(), [])
    assert result.gt_inds.tolist() == [0] * 20 and result.labels.tolist() == [-1] * 20
    with pytest.raises(NotImplementedError):
        _assign([[0., 0., 32., 32.]], [5], ignore=InstanceData(bboxes=torch.zeros(0, 4)))
