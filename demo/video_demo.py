"""Detect objects in every frame of a video; write and/or show the drawn frames.

Usage::

    python demo/video_demo.py VIDEO CONFIG [CHECKPOINT] (--out OUT.mp4 | --show)
        [--device cuda:0] [--score-thr 0.3] [--wait-time 1] [--trust-checkpoint CKPT]

Each frame goes through the config's test pipeline (from the array), the detections
scoring above ``--score-thr`` are drawn on it, and the frame is written to ``--out`` (an
mp4 with the 'mp4v' codec, the input's frame rate and size) and/or shown in a window for
``--wait-time`` seconds (0 waits for a key). At the end the frames per second achieved
(reading, detection and drawing together) are printed.
"""
import argparse
import os
import os.path as osp
import sys
import time

from mmdet_lite.apis.cli import exit_on_user_error

EXAMPLE = """example:
  python demo/video_demo.py demo/demo.mp4 configs/shapes/faster-rcnn_r18_fpn_shapes.py \\
      work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth --device cpu --out result.mp4
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Detect objects in a video', epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('video', help='video file')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file (random weights when omitted)')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling (can run code) of this checkpoint file, '
                        'one you trust that holds objects beyond the weights-only allow-list')
    parser.add_argument('--device', default=None,
                        help="e.g. 'cpu' or 'cuda:0' (default: cuda:0 if available, else cpu)")
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw only detections scoring above this')
    parser.add_argument('--out', type=str, help='output video file (.mp4)')
    parser.add_argument('--show', action='store_true', help='show the frames in a window')
    parser.add_argument('--wait-time', type=float, default=1,
                        help='seconds each shown frame stays up; 0 waits for a key')
    return parser.parse_args(argv)


def open_video(path: str):
    """The video at ``path`` as an ``mmcv.VideoReader`` (frames are BGR [H, W, 3])."""
    import cv2
    import mmcv
    if not osp.isfile(path):
        raise FileNotFoundError(f'video not found: {path}')
    capture = cv2.VideoCapture(path)
    opened = capture.isOpened()
    capture.release()
    if not opened:  # VideoReader would fail with a bare assertion
        raise ValueError(f'could not open video {path} (not a video, or a codec OpenCV '
                         'cannot read)')
    return mmcv.VideoReader(path)


def open_writer(path: str, fps: float, width: int, height: int):
    """A ``cv2.VideoWriter`` for mp4 ('mp4v') at ``path``, its folder created."""
    import cv2
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # a stream without a frame rate in its header reports 0; a writer needs one
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps if fps > 0 else 25,
                             (width, height))
    if not writer.isOpened():
        raise ValueError(f'--out: cannot write a video to {path} (use a .mp4 file name in '
                         'a writable folder)')
    return writer


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    if not (args.out or args.show):
        # an AssertionError in mmdetection; a one-line user error here
        raise ValueError('nothing to do: give --out FILE to save the video and/or --show '
                         'to display it')
    reader = open_video(args.video)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')

    import cv2
    import mmcv
    import torch
    from mmengine.dataset import Compose
    from mmengine.utils import track_iter_progress

    from mmdet_lite.apis import (get_test_pipeline_cfg, inference_detector, init_detector,
                                 init_visualizer)
    from mmdet_lite.engine import allow_unsafe_checkpoint
    from mmdet_lite.registry import TRANSFORMS

    if args.checkpoint is None:
        print('warning: no checkpoint given, the model has random weights', file=sys.stderr)
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    with allow_unsafe_checkpoint(*args.trust_checkpoint):
        model = init_detector(args.config, args.checkpoint, device=device)
    # built once for all frames: the config's test pipeline, loading from the array
    pipeline = Compose([TRANSFORMS.build(step) for step in
                        get_test_pipeline_cfg(model.cfg, from_ndarray=True)])
    visualizer = init_visualizer(model.cfg, model.dataset_meta)

    writer = open_writer(args.out, reader.fps, reader.width, reader.height) \
        if args.out else None
    num_frames = 0
    start = time.perf_counter()
    try:
        for frame in track_iter_progress((reader, len(reader))):  # BGR [H, W, 3]
            result = inference_detector(model, frame, test_pipeline=pipeline)
            # mmdetection draws on the BGR frame, swapping the palette's red and blue;
            # the drawing is made in RGB here and turned back to BGR for OpenCV
            visualizer.add_datasample('video', mmcv.bgr2rgb(frame), data_sample=result.cpu(),
                                      draw_gt=False, show=False,
                                      pred_score_thr=args.score_thr)
            drawn = mmcv.rgb2bgr(visualizer.get_image())
            if args.show:
                cv2.namedWindow('video', cv2.WINDOW_NORMAL)
                cv2.imshow('video', drawn)
                cv2.waitKey(int(args.wait_time * 1000))  # 0 waits for a key
            if writer is not None:
                writer.write(drawn)
            num_frames += 1
    finally:
        if writer is not None:
            writer.release()
        if args.show:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - start
    fps = num_frames / seconds if seconds > 0 else float('inf')
    print(f'\n{num_frames} frames in {seconds:.2f} s: {fps:.2f} FPS')
    if args.out:
        print(f'video saved to {args.out}')


if __name__ == '__main__':
    main()
