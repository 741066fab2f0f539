"""coco_error_analysis: the error-type PR curves on hand-made cases, and the tool's plots.

Each category of the hand-made set shows one kind of error, so every row of the breakdown
(C75, C50, Loc, Sim, Oth, BG, FN) has a value that can be worked out by hand: precision at
every recall threshold is 1, 0.5 (one false positive scored above the one true positive)
or 0.
"""
import json
import re

import cv2
import numpy as np
import pytest
from helpers_tools import load_script
from pycocotools import mask as mask_utils

from mmdet_lite.analysis.coco_error_analysis import (ErrorAnalysisArgumentError,
                                                     analyze_results, error_breakdown,
                                                     load_results)
from mmdet_lite.analysis.coco_error_plots import AREA_NAMES, ERROR_TYPES
from mmdet_lite.datasets.shapes_generator import generate_shapes_split

tool = load_script('tools/analysis_tools/coco_error_analysis.py')

RECALLS = np.linspace(0, 1, 101)  # COCOeval's recall thresholds
# One category per error, in id order. 'lonely' has no supercategory.
CATEGORIES = [('perfect', 'a'), ('loc', 'a'), ('sim', 'b'), ('sim_partner', 'b'),
              ('oth', 'c'), ('bg', 'd'), ('fn', 'd'), ('lonely', None)]
CAT_ID = {name: i + 1 for i, (name, _) in enumerate(CATEGORIES)}
HERE, THERE, EMPTY = (10, 10, 20, 20), (50, 50, 20, 20), (70, 10, 20, 20)  # 20x20 boxes
# the box HERE moved right by half its width: IoU 200 / 600 = 1/3, a hit only at IoU 0.1
SHIFTED = (20, 10, 20, 20)

# (image id, ground truths [(category, box)], detections [(category, box, score)])
IMAGES = [
    (1, [('perfect', HERE)], [('perfect', HERE, 0.9)]),
    (2, [('loc', HERE)], [('loc', SHIFTED, 0.9)]),
    # a 'sim' detection on a box of 'sim_partner', same supercategory, scored first
    (3, [('sim', HERE), ('sim_partner', THERE)], [('sim', HERE, 0.5), ('sim', THERE, 0.9)]),
    # an 'oth' detection on a 'sim_partner' box: another supercategory
    (4, [('oth', HERE), ('sim_partner', THERE)], [('oth', HERE, 0.5), ('oth', THERE, 0.9)]),
    # a 'bg' detection where there is nothing
    (5, [('bg', HERE)], [('bg', HERE, 0.5), ('bg', EMPTY, 0.9)]),
    # one of two 'fn' boxes found
    (6, [('fn', HERE), ('fn', THERE)], [('fn', HERE, 0.9)]),
    # 'lonely' (no supercategory) on a 'sim_partner' box: only Oth forgives it
    (7, [('lonely', HERE), ('sim_partner', THERE)],
     [('lonely', HERE, 0.5), ('lonely', THERE, 0.9)]),
]


def _write_handmade(tmp_path, names=None):
    """gt.json and results.bbox.json of :data:`IMAGES`; with ``names``, only the images
    and categories of those names."""
    names = names or [name for name, _ in CATEGORIES]
    images, annotations, detections = [], [], []
    for img_id, gts, dets in IMAGES:
        if not {name for name, _ in gts} <= set(names):
            continue
        images.append(dict(id=img_id, file_name=f'{img_id}.jpg', width=100, height=100))
        for name, box in gts:
            x, y, w, h = box
            annotations.append(dict(
                id=len(annotations) + 1, image_id=img_id, category_id=CAT_ID[name],
                bbox=list(box), area=w * h, iscrowd=0,
                segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
        for name, box, score in dets:
            detections.append(dict(image_id=img_id, category_id=CAT_ID[name],
                                   bbox=list(box), score=score))
    categories = []
    for i, (name, supercategory) in enumerate(CATEGORIES):
        if name not in names:
            continue
        category = dict(id=i + 1, name=name)
        if supercategory is not None:
            category['supercategory'] = supercategory
        categories.append(category)
    ann_file, res_file = tmp_path / 'gt.json', tmp_path / 'results.bbox.json'
    ann_file.write_text(json.dumps(dict(images=images, annotations=annotations,
                                        categories=categories)))
    res_file.write_text(json.dumps(detections))
    return str(ann_file), str(res_file)


@pytest.fixture
def handmade(tmp_path):
    return _write_handmade(tmp_path)


def _expected_rows():
    """Per category, the 7 PR rows (area 'all') worked out by hand."""
    one, half, zero = np.ones(101), np.full(101, 0.5), np.zeros(101)
    up_to_half = (RECALLS <= 0.5).astype(float)  # 1 of 2 boxes found, nothing wrong
    rows = dict(
        perfect=[one] * 7,
        loc=[zero, zero] + [one] * 5,
        sim=[half, half, half, one, one, one, one],
        sim_partner=[zero] * 6 + [one],  # 3 boxes, never detected as itself
        oth=[half] * 4 + [one, one, one],
        bg=[half] * 5 + [one, one],
        fn=[up_to_half] * 6 + [one],
        lonely=[half] * 4 + [one, one, one],  # its own supercategory: Sim == Loc
    )
    return {name: np.stack(r) for name, r in rows.items()}


def test_each_error_is_forgiven_at_its_own_row(handmade):
    ann_file, res_file = handmade
    coco_gt, coco_dt = load_results(res_file, ann_file)
    ps, _ = error_breakdown(coco_gt, coco_dt, 'bbox', areas=[1024, 9216, 1e10])
    assert ps.shape == (len(ERROR_TYPES), 101, len(CATEGORIES), len(AREA_NAMES), 1)
    assert coco_gt.getCatIds() == list(range(1, 9))
    for name, expected in _expected_rows().items():
        k = CAT_ID[name] - 1
        for row, error_type in enumerate(ERROR_TYPES):
            np.testing.assert_allclose(ps[row, :, k, 0, 0], expected[row],
                                       err_msg=f'{name}, {error_type}')
        # all boxes are 20 x 20 = 400 px: 'small' (< 32^2) holds all, 'medium' none
        np.testing.assert_allclose(ps[:, :, k, 1, 0], expected)
        np.testing.assert_allclose(ps[:6, :, k, 2, 0], 0)
        np.testing.assert_allclose(ps[6, :, k, 2, 0], 1)
    # the perfect category reaches AP 1 under the strict C75
    assert ps[0, :, CAT_ID['perfect'] - 1, 0, 0].mean() == pytest.approx(1.0)
    # and nothing runs twice with nproc > 1 in a pool: same numbers
    pooled, _ = error_breakdown(coco_gt, coco_dt, 'bbox', areas=[1024, 9216, 1e10], nproc=2)
    np.testing.assert_array_equal(pooled, ps)


def _assert_plot(path, min_colours=4):
    img = cv2.imread(str(path))
    assert img is not None, path
    assert 300 <= img.shape[0] <= 1000 and 400 <= img.shape[1] <= 1400
    assert img.std() > 10
    assert len(np.unique(img.reshape(-1, 3), axis=0)) >= min_colours


@pytest.mark.slow
def test_tool_writes_every_plot(tmp_path, capsys):
    ann_file, res_file = _write_handmade(tmp_path, names=['perfect', 'loc'])
    out_dir = tmp_path / 'out'
    tool.main([res_file, str(out_dir), '--ann', ann_file, '--extraplots'])
    assert f'saved the error analysis plots under {out_dir}' in capsys.readouterr().out
    classes = ['perfect', 'loc', 'allclass']
    expected = {f'bbox-{name}-{area}.png' for name in classes for area in AREA_NAMES}
    expected |= {f'bbox-{name}-ap bar plot.png' for name in classes}
    expected |= {'number of annotations per area group.png',
                 'gt annotation areas histogram plot.png'}
    assert {p.name for p in (out_dir / 'bbox').iterdir()} == expected
    for name in expected:
        _assert_plot(out_dir / 'bbox' / name, min_colours=3)
    # the stacked bands: the 'loc' category's figure shows the Loc band (blue-ish)
    img = cv2.imread(str(out_dir / 'bbox' / 'bbox-loc-allarea.png'))
    loc_blue = np.array([0.74, 0.51, 0.31]) * 255  # BGR of the Loc band
    assert (np.abs(img - loc_blue).sum(axis=2) < 10).mean() > 0.2


def test_score_threshold_drops_low_scoring_detections(handmade):
    ann_file, res_file = handmade
    coco_gt, coco_dt = load_results(res_file, ann_file, score_thr=0.6)
    assert len(coco_dt.dataset['annotations']) == 7  # of 12, the five at 0.5 are gone
    ps, _ = error_breakdown(coco_gt, coco_dt)
    # only the false positive remains in 'bg', the true positive is gone
    np.testing.assert_allclose(ps[:6, :, CAT_ID['bg'] - 1, 0, 0], 0)
    np.testing.assert_allclose(ps[:, :, CAT_ID['perfect'] - 1, 0, 0], 1)


def _shapes_with_exact_detections(tmp_path):
    """A shapes split (supercategory 'shape' for all) and detections equal to its ground
    truth (boxes and RLE masks), plus a circle detection on a triangle scored first."""
    ann_file = generate_shapes_split(str(tmp_path), 'val', num_images=6, image_size=96,
                                     seed=3, max_objects=3, size_range=(16, 40))
    coco = json.loads(open(ann_file).read())
    sizes = {img['id']: (img['height'], img['width']) for img in coco['images']}
    detections = []
    for ann in coco['annotations']:
        rle = mask_utils.merge(mask_utils.frPyObjects(ann['segmentation'],
                                                      *sizes[ann['image_id']]))
        rle['counts'] = rle['counts'].decode()
        detections.append(dict(image_id=ann['image_id'], category_id=ann['category_id'],
                               bbox=ann['bbox'], score=0.9, segmentation=rle))
    triangle = next(d for d in detections if d['category_id'] == 3)
    detections.append(dict(triangle, category_id=1, score=0.95))
    res_file = tmp_path / 'results.segm.json'
    res_file.write_text(json.dumps(detections))
    return ann_file, str(res_file), coco


def test_shapes_masks_and_a_confusion_inside_the_supercategory(tmp_path):
    ann_file, res_file, coco = _shapes_with_exact_detections(tmp_path)
    assert sorted({ann['category_id'] for ann in coco['annotations']}) == [1, 2, 3]
    num_circles = sum(ann['category_id'] == 1 for ann in coco['annotations'])
    coco_gt, coco_dt = load_results(res_file, ann_file)
    for iou_type in ('segm', 'bbox'):
        ps, _ = error_breakdown(coco_gt, coco_dt, iou_type)
        # rectangles and triangles are perfect
        np.testing.assert_allclose(ps[:, :, 1:, 0, 0], 1)
        # circles: the confused detection comes first, then every circle is found
        expected = num_circles / (num_circles + 1)
        np.testing.assert_allclose(ps[:3, :, 0, 0, 0], expected)
        np.testing.assert_allclose(ps[3:, :, 0, 0, 0], 1)  # Sim forgives it: all 'shape'


@pytest.mark.slow
def test_tool_on_shapes_masks(tmp_path):
    ann_file, res_file, _ = _shapes_with_exact_detections(tmp_path)
    out_dir = tmp_path / 'out'
    tool.main([res_file, str(out_dir), '--ann', ann_file, '--types', 'segm'])
    assert len(list((out_dir / 'segm').iterdir())) == 4 * 4
    for name in ('circle', 'rectangle', 'triangle', 'allclass'):
        _assert_plot(out_dir / 'segm' / f'segm-{name}-allarea.png')


def test_bad_inputs_give_one_line_errors(handmade, tmp_path, capsys):
    ann_file, res_file = handmade
    wrong_images = tmp_path / 'wrong.json'
    wrong_images.write_text(json.dumps([dict(image_id=99, category_id=1, bbox=[0, 0, 5, 5],
                                             score=0.5)]))
    empty = tmp_path / 'empty.json'
    empty.write_text('[]')
    for argv, message in (
            ([str(wrong_images), 'out', '--ann', ann_file],
             'has detections on image ids that .*gt.json does not have \\(e.g. \\[99\\]\\)'),
            ([str(empty), 'out', '--ann', ann_file], 'empty.json holds no detections'),
            ([res_file, 'out', '--ann', str(tmp_path / 'nope.json')],
             'annotation file not found: .*nope.json'),
            ([res_file, 'out', '--ann', ann_file, '--areas', '1024', '9216'],
             'areas needs 3 numbers'),
            ([res_file, 'out', '--ann', ann_file, '--score-thr', '-1'],
             'score_thr must be >= 0')):
        with pytest.raises(SystemExit) as exit_info:
            tool.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert re.search(message, err), err
    with pytest.raises(AssertionError):  # an AssertionError as in mmdetection, too
        analyze_results(res_file, ann_file, ['keypoints'], str(tmp_path))
    with pytest.raises(ErrorAnalysisArgumentError):
        analyze_results(res_file, ann_file, ['bbox'], str(tmp_path), areas=[1, 2])


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        tool.main(['--help'])
    out = capsys.readouterr().out
    assert 'example:' in out and 'coco_error_analysis.py work_dirs/results.bbox.json' in out
