"""mask_target on bitmap and polygon gt masks, plus the mask conversion helpers."""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from mmdet_lite.structures.mask import (BitmapMasks, PolygonMasks, bitmap_to_polygon,
                                        encode_mask_results, mask2bbox, mask_target,
                                        polygon_to_bitmap, segmentation_to_bitmap)

H, W = 10, 12


def _bitmaps() -> BitmapMasks:
    arr = np.zeros((2, H, W), np.uint8)
    arr[0] = 1  # whole image
    arr[1, :, :6] = 1  # left half
    return BitmapMasks(arr, H, W)


def _polygons() -> PolygonMasks:
    return PolygonMasks([[np.array([1., 2., 6., 2., 6., 6., 1., 6.])]], H, W)


def test_mask_target_concatenates_images_with_expected_values():
    proposals = [torch.tensor([[2., 2., 8., 8.], [3., 0., 9., 10.]]),
                 torch.tensor([[1., 2., 11., 6.]])]  # the 5 px square fills the left half
    gt_inds = [torch.tensor([0, 1]), torch.tensor([0])]
    targets = mask_target(proposals, gt_inds, [_bitmaps(), _polygons()], dict(mask_size=28))
    assert targets.shape == (3, 28, 28) and targets.dtype == torch.float32
    assert targets[0].eq(1).all()  # box inside the full mask
    for half in (targets[1], targets[2]):  # left half foreground in both mask types
        assert half[:, :14].eq(1).all() and half[:, 14:].eq(0).all()


def test_mask_target_clips_proposals_to_the_image():
    # without clipping, the part left of x=0 would sample background and shrink the target
    targets = mask_target([torch.tensor([[-6., 0., 12., 10.]])], [torch.tensor([0])],
                          [_bitmaps()], dict(mask_size=14))
    assert targets.shape == (1, 14, 14) and targets.eq(1).all()


def test_mask_target_rect_size_soft_targets_and_empty():
    proposals = [torch.tensor([[3., 0., 9., 10.]])]
    rect = mask_target(proposals, [torch.tensor([1])], [_bitmaps()], dict(mask_size=(14, 7)))
    assert rect.shape == (1, 14, 7)
    soft = mask_target(proposals, [torch.tensor([1])], [_bitmaps()],
                       dict(mask_size=28, soft_mask_target=True))
    assert ((soft > 0) & (soft < 1)).any()  # the edge column keeps a fractional value
    empty = mask_target([torch.zeros(0, 4), torch.zeros(0, 4)],
                        [torch.zeros(0, dtype=torch.long)] * 2, [_bitmaps(), _polygons()],
                        dict(mask_size=28))
    assert empty.shape == (0, 28, 28)
    with pytest.raises(KeyError, match='mask_size'):
        mask_target(proposals, [torch.tensor([1])], [_bitmaps()], dict())
    with pytest.raises(ValueError, match='one entry per image'):
        mask_target(proposals, [], [_bitmaps()], dict(mask_size=28))


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # pycocotools vs numpy 2 copy kwarg
def test_encode_mask_results_round_trips_through_pycocotools():
    masks = _bitmaps().masks.astype(bool)
    rles = encode_mask_results(masks)
    assert len(rles) == 2
    assert isinstance(rles[0]['counts'], str) and rles[0]['size'] == [H, W]
    for rle, mask in zip(rles, masks):
        np.testing.assert_array_equal(mask_util.decode(rle).astype(bool), mask)
    from_tensor = encode_mask_results(torch.from_numpy(masks))
    assert [r['counts'] for r in from_tensor] == [r['counts'] for r in rles]
    with pytest.raises(ValueError, match='mask_results'):
        encode_mask_results([np.zeros(5)])


def test_segmentation_to_bitmap_decodes_polygons_and_both_rle_kinds():
    mask = np.zeros((H, W), np.uint8)
    mask[2:6, 3:8] = 1
    polygon = [[3., 2., 8., 2., 8., 6., 3., 6.]]
    np.testing.assert_array_equal(segmentation_to_bitmap(polygon, H, W), mask.astype(bool))
    compressed = encode_mask_results([mask])[0]
    np.testing.assert_array_equal(segmentation_to_bitmap(compressed, H, W), mask.astype(bool))
    # uncompressed RLE: column-major run lengths starting with background
    counts = [2 + 3 * H] + [4, 6] * 4 + [4, H * W - (2 + 3 * H) - 5 * 4 - 4 * 6]
    uncompressed = dict(size=[H, W], counts=counts)
    np.testing.assert_array_equal(segmentation_to_bitmap(uncompressed, H, W), mask.astype(bool))
    from_segms = BitmapMasks.from_segmentations([polygon, compressed], H, W)
    assert from_segms.areas.tolist() == [20, 20]
    with pytest.raises(TypeError, match='segmentation'):
        segmentation_to_bitmap(dict(size=[H, W]), H, W)


def test_bitmap_polygon_round_trip_on_a_disk():
    yy, xx = np.mgrid[:40, :40]
    disk = ((xx - 20) ** 2 + (yy - 20) ** 2 <= 12 ** 2)
    contours, with_hole = bitmap_to_polygon(disk)
    assert not with_hole and len(contours) == 1 and contours[0].shape[1] == 2
    polys = [c.ravel().astype(np.float64) for c in contours]
    # contours run through boundary pixel centres, so the polygon loses about half a pixel
    # all round: the areas agree within 10%
    back = polygon_to_bitmap(polys, 40, 40)
    assert abs(int(back.sum()) - int(disk.sum())) / disk.sum() < 0.1
    assert abs(PolygonMasks([polys], 40, 40).areas[0] - disk.sum()) / disk.sum() < 0.1
    np.testing.assert_array_equal(
        BitmapMasks.from_polygons([polys], 40, 40).masks[0], back.astype(np.uint8))


def test_bitmap_to_polygon_reports_holes_and_empty_masks():
    ring = np.zeros((12, 12), np.uint8)
    ring[2:10, 2:10] = 1
    ring[5:7, 5:7] = 0
    contours, with_hole = bitmap_to_polygon(ring)
    assert with_hole and len(contours) == 2
    assert bitmap_to_polygon(np.zeros((4, 4))) == ([], False)
    with pytest.raises(ValueError, match='bitmap'):
        bitmap_to_polygon(np.zeros((2, 4, 4)))


def test_mask2bbox():
    masks = torch.from_numpy(_bitmaps().masks.astype(bool))
    masks = torch.cat([masks, torch.zeros(1, H, W, dtype=torch.bool)])
    torch.testing.assert_close(
        mask2bbox(masks), torch.tensor([[0., 0., 12., 10.], [0., 0., 6., 10.], [0., 0., 0., 0.]]))
