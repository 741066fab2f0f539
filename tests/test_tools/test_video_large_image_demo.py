"""demo/large_image_demo.py and demo/video_demo.py on the tiny shapes Faster R-CNN.

The model has random weights saved by the test and ``score_thr=0``, so that every patch
and frame has detections to merge and draw. The demos run in-process through
``main([...])``; one subprocess run checks the real script end to end.
"""
import re

import cv2
import numpy as np
import pytest
import torch
from helpers_tools import TINY_CONFIG, load_script, run_tool
from torchvision.ops import batched_nms

from mmdet_lite.apis import inference_detector, init_detector
from mmdet_lite.utils import get_slice_bboxes

LARGE_DEMO = 'demo/large_image_demo.py'
VIDEO_DEMO = 'demo/video_demo.py'
CLASSES = ('circle', 'rectangle', 'triangle')
large_demo = load_script(LARGE_DEMO)
video_demo = load_script(VIDEO_DEMO)


def _shapes_image(height: int, width: int, seed: int, noise: int = 60) -> np.ndarray:
    """A noisy background with a circle, a rectangle and a triangle (BGR uint8)."""
    rng = np.random.RandomState(seed)
    img = rng.randint(0, noise + 1, (height, width, 3)).astype(np.uint8)
    cv2.circle(img, (width // 5, height // 3), min(height, width) // 8, (40, 200, 230), -1)
    cv2.rectangle(img, (width // 2, height // 5), (width // 2 + width // 6, height // 2),
                  (220, 90, 30), -1)
    triangle = np.array([[width // 3, height - 10], [width // 2, height // 2 + 10],
                         [2 * width // 3, height - 10]], dtype=np.int32)
    cv2.fillPoly(img, [triangle], (60, 220, 60))
    return img


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Configs (score_thr 0; one with TTA), random weights, a 300x200 image, a video."""
    root = tmp_path_factory.mktemp('large_video_demo')
    config = root / 'tiny_thr0.py'
    config.write_text(f'_base_ = {TINY_CONFIG!r}\n'
                      'model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))\n')
    tta_config = root / 'tiny_thr0_tta.py'
    tta_config.write_text(
        "_base_ = './tiny_thr0.py'\n"
        "tta_model = dict(type='DetTTAModel', tta_cfg=dict(\n"
        "    nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))\n"
        "tta_pipeline = [\n"
        "    dict(type='LoadImageFromFile'),\n"
        "    dict(type='TestTimeAug', transforms=[\n"
        "        [dict(type='Resize', scale=(96, 96), keep_ratio=True)],\n"
        "        [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],\n"
        "        [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',\n"
        "              'img_shape', 'scale_factor', 'flip', 'flip_direction'))]])]\n")
    torch.manual_seed(0)
    model = init_detector(str(config))
    ckpt = root / 'tiny.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(classes=CLASSES)),
                    state_dict=model.state_dict()), ckpt)
    image = root / 'large.png'  # png: lossless, so the file and the array agree
    cv2.imwrite(str(image), _shapes_image(200, 300, seed=0))

    video = root / 'clip.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 5, (64, 48))
    for i in range(5):  # no noise: little for the codec to blur
        writer.write(np.roll(_shapes_image(48, 64, seed=i, noise=0), 3 * i, axis=1))
    writer.release()
    return dict(root=root, config=str(config), tta_config=str(tta_config), ckpt=str(ckpt),
                image=str(image), video=str(video))


@pytest.fixture(scope='module')
def model(setup):
    return init_detector(setup['config'], setup['ckpt'])


def _same_predictions(actual, expected) -> None:
    assert actual.labels.tolist() == expected.labels.tolist()
    torch.testing.assert_close(actual.scores, expected.scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(actual.bboxes, expected.bboxes, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------- large image

def test_one_patch_covering_the_image_equals_plain_inference(setup, model):
    img = cv2.imread(setup['image'])
    plain = inference_detector(model, setup['image']).pred_instances
    assert len(plain) > 0
    # IoU threshold 1 suppresses nothing: exactly the detector's own output
    merged, slices, _ = large_demo.detect_large_image(
        model, img, patch_size=300, overlap_ratio=0.25,
        nms_cfg=dict(type='nms', iou_threshold=1.0))
    assert slices == [[0, 0, 300, 200]]
    assert merged.ori_shape == (200, 300)
    _same_predictions(merged.pred_instances, plain)

    # at the demo's default 0.25, the plain output after torchvision's class-wise NMS
    merged, _, _ = large_demo.detect_large_image(
        model, img, patch_size=512, overlap_ratio=0.25,
        nms_cfg=dict(type='nms', iou_threshold=0.25))
    keep = batched_nms(plain.bboxes, plain.scores, plain.labels, 0.25)
    assert 0 < len(keep) < len(plain)
    _same_predictions(merged.pred_instances, plain[keep])


def test_sliced_inference_equals_patches_detected_shifted_and_merged_by_hand(setup, model):
    img = cv2.imread(setup['image'])
    merged, slices, patch_results = large_demo.detect_large_image(
        model, img, patch_size=96, overlap_ratio=0.25,
        nms_cfg=dict(type='nms', iou_threshold=0.25), batch_size=4)
    assert slices == get_slice_bboxes(200, 300, 96, 96, 0.25, 0.25)
    assert len(patch_results) == len(slices) == 3 * 4  # rows 0, 72, 104; cols 0,72,144,204

    boxes, scores, labels = [], [], []
    for x1, y1, x2, y2 in slices:
        preds = inference_detector(model, np.ascontiguousarray(img[y1:y2, x1:x2])).pred_instances
        boxes.append(preds.bboxes + torch.tensor([x1, y1, x1, y1], dtype=torch.float32))
        scores.append(preds.scores)
        labels.append(preds.labels)
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = batched_nms(boxes, scores, labels, 0.25)
    assert len(merged.pred_instances) == len(keep) > 0
    torch.testing.assert_close(merged.pred_instances.bboxes, boxes[keep], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(merged.pred_instances.scores, scores[keep], rtol=1e-4,
                               atol=1e-5)
    # every merged box lies in the full image
    bboxes = merged.pred_instances.bboxes
    assert (bboxes[:, 0::2] >= 0).all() and (bboxes[:, 0::2] <= 300).all()
    assert (bboxes[:, 1::2] >= 0).all() and (bboxes[:, 1::2] <= 200).all()


@pytest.mark.slow
def test_large_image_demo_writes_full_size_drawings(setup, tmp_path, capsys):
    out_dir = tmp_path / 'out'
    large_demo.main([setup['image'], setup['config'], setup['ckpt'], '--out-dir',
                     str(out_dir), '--device', 'cpu', '--patch-size', '96',
                     '--score-thr', '0', '--batch-size', '3', '--debug', '--save-patch'])
    assert 'Results have been saved at' in capsys.readouterr().out
    original = cv2.imread(setup['image'])
    for name in ('large.png', 'large_debug.png'):
        drawn = cv2.imread(str(out_dir / name))
        assert drawn.shape == (200, 300, 3)
        # detections (and for debug the patch grid) were drawn over the image
        changed = np.abs(drawn.astype(int) - original.astype(int)).max(axis=2) > 30
        assert changed.mean() > 0.01, name
    patches = sorted((out_dir / 'large_patch').iterdir())
    slices = get_slice_bboxes(200, 300, 96, 96, 0.25, 0.25)
    assert [p.name for p in patches] == sorted(f'large.png_slice_{i}_result.jpg'
                                               for i in range(len(slices)))
    assert all(cv2.imread(str(p)).shape == (96, 96, 3) for p in patches)


@pytest.mark.slow
def test_large_image_demo_on_a_folder_names_outputs_by_relative_path(setup, tmp_path):
    images = tmp_path / 'images'
    (images / 'site_a').mkdir(parents=True)
    cv2.imwrite(str(images / 'site_a' / 'tile.png'), _shapes_image(120, 150, seed=3))
    cv2.imwrite(str(images / 'top.jpg'), _shapes_image(90, 100, seed=4))
    (images / 'readme.txt').write_text('not an image')
    out_dir = tmp_path / 'out'
    large_demo.main([str(images), setup['config'], setup['ckpt'], '--out-dir', str(out_dir),
                     '--device', 'cpu', '--patch-size', '64'])
    assert sorted(p.name for p in out_dir.iterdir()) == ['site_a_tile.png', 'top.jpg']
    assert cv2.imread(str(out_dir / 'site_a_tile.png')).shape == (120, 150, 3)
    assert cv2.imread(str(out_dir / 'top.jpg')).shape == (90, 100, 3)


@pytest.mark.slow
def test_large_image_demo_with_tta_gives_one_result_per_patch(setup, tmp_path):
    model, pipeline = large_demo.build_model(setup['tta_config'], setup['ckpt'], 'cpu',
                                             tta=True)
    assert type(model).__name__ == 'DetTTAModel'
    img = cv2.imread(setup['image'])
    merged, slices, patch_results = large_demo.detect_large_image(
        model, img, 128, 0.25, dict(type='nms', iou_threshold=0.25), batch_size=2,
        pipeline=pipeline, tta=True)
    # each patch's flipped and unflipped views merged into one result
    assert len(patch_results) == len(slices) == 2 * 3
    assert all(r.ori_shape == (128, 128) for r in patch_results)
    assert len(merged.pred_instances) > 0

    out_dir = tmp_path / 'out'
    large_demo.main([setup['image'], setup['tta_config'], setup['ckpt'], '--tta',
                     '--out-dir', str(out_dir), '--device', 'cpu', '--patch-size', '128'])
    assert cv2.imread(str(out_dir / 'large.png')).shape == (200, 300, 3)


@pytest.mark.parametrize('case, message', [
    ('missing_image', 'error: input image not found: .*nope.png'),
    ('missing_checkpoint', 'error: checkpoint not found: .*nope.pth'),
    ('tta_without_tta_model', 'error: .*--tta: the config has no `tta_model`'),
])
def test_large_image_demo_bad_input_is_a_one_line_error(setup, tmp_path, capsys, monkeypatch,
                                                        case, message):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)
    image = str(tmp_path / 'nope.png') if case == 'missing_image' else setup['image']
    ckpt = str(tmp_path / 'nope.pth') if case == 'missing_checkpoint' else setup['ckpt']
    extra = ['--tta'] if case == 'tta_without_tta_model' else []
    with pytest.raises(SystemExit) as exit_info:
        large_demo.main([image, setup['config'], ckpt, '--out-dir', str(tmp_path / 'out'),
                         '--device', 'cpu', *extra])
    assert exit_info.value.code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err_lines) == 1 and re.search(message, err_lines[0]), err_lines


@pytest.mark.slow
def test_large_image_demo_script_without_checkpoint_uses_random_weights(setup, tmp_path):
    out_dir = tmp_path / 'out'
    proc = run_tool(LARGE_DEMO, [setup['image'], setup['config'], '--out-dir', out_dir,
                                 '--device', 'cpu', '--patch-size', '128'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'no checkpoint given, the model has random weights' in proc.stderr
    assert cv2.imread(str(out_dir / 'large.png')).shape == (200, 300, 3)
    help_text = run_tool(LARGE_DEMO, ['--help']).stdout
    assert 'example:' in help_text and '--patch-overlap-ratio' in help_text


# ----------------------------------------------------------------------------- video

@pytest.mark.slow
def test_video_demo_writes_every_frame_and_prints_fps(setup, tmp_path, capsys):
    out = tmp_path / 'videos' / 'result.mp4'  # its folder is created
    video_demo.main([setup['video'], setup['config'], setup['ckpt'], '--out', str(out),
                     '--device', 'cpu', '--score-thr', '0'])
    printed = capsys.readouterr().out
    match = re.search(r'(\d+) frames in [\d.]+ s: ([\d.]+) FPS', printed)
    assert match, printed
    assert int(match.group(1)) == 5 and float(match.group(2)) > 0

    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    assert len(frames) == 5
    assert all(frame.shape == (48, 64, 3) for frame in frames)
    assert fps == pytest.approx(5)
    # the input read back the same way, to see that detections were drawn on the frames
    source = cv2.VideoCapture(setup['video'])
    originals = [source.read()[1] for _ in range(5)]
    source.release()
    diffs = [np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 40
             for a, b in zip(frames, originals)]
    assert all(diff.mean() > 0.01 for diff in diffs)


@pytest.mark.parametrize('case, message', [
    ('no_output', 'error: nothing to do: give --out FILE .* --show'),
    ('missing_video', 'error: video not found: .*nope.mp4'),
    ('not_a_video', 'error: could not open video .*notes.mp4'),
])
def test_video_demo_bad_input_is_a_one_line_error(setup, tmp_path, capsys, monkeypatch,
                                                  case, message):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)
    (tmp_path / 'notes.mp4').write_text('not a video')
    video = {'missing_video': str(tmp_path / 'nope.mp4'),
             'not_a_video': str(tmp_path / 'notes.mp4')}.get(case, setup['video'])
    out = [] if case == 'no_output' else ['--out', str(tmp_path / 'out.mp4')]
    with pytest.raises(SystemExit) as exit_info:
        video_demo.main([video, setup['config'], setup['ckpt'], '--device', 'cpu', *out])
    assert exit_info.value.code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err_lines) == 1 and re.search(message, err_lines[0]), err_lines
