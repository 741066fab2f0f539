"""CenterNet / CornerNet crop-and-pad around a (random or fixed) centre."""
from typing import Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type
from .transform_arg_errors import check_arg

_TEST_PAD_MODES = ('logical_or', 'size_divisor')
_TRIES_PER_SCALE = 50


@TRANSFORMS.register_module()
class RandomCenterCropPad(BaseTransform):
    """Cut a window centred on a chosen point and paste it on a ``mean``-filled canvas.

    The canvas (output) has the window's size; the part of the window inside the image is
    copied so that the chosen point lands on the canvas centre (size // 2), the rest stays
    ``mean``.

    Train mode (``test_mode=False``): the canvas is int(crop_w * s) x int(crop_h * s) for a
    scale s drawn from ``ratios``; the centre is drawn uniformly with at least a border
    (``border`` shrunk by a power of two until it fits the image side) from the image edges.
    A centre is accepted when some box's centre lies strictly inside the copied area (any
    centre when there are no boxes); those boxes are moved onto the canvas, clipped when
    ``bbox_clip_border``, and kept when they still overlap it, with labels and ignore flags.
    After 50 rejected centres a new scale is drawn. Instance masks and semantic maps are
    not supported (NotImplementedError, as in mmdetection).

    Test mode: the canvas is the image size rounded up by ``test_pad_mode`` -
    ``('logical_or', v)`` gives (side | v) + test_pad_add_pix, ``('size_divisor', d)`` the next
    multiple of d - centred on (h // 2, w // 2); ``results['border']`` records the image's
    [top, bottom, left, right] edges on the canvas. Boxes are left alone.

    Required keys: ``img`` (float32, one ``mean`` value per channel); in train mode
    ``gt_bboxes``, optional ``gt_bboxes_labels``, ``gt_ignore_flags``.
    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags``. Added keys (test mode): ``border``.

    Args:
        crop_size (tuple, optional): (width, height) of the canvas before scaling; required
            in train mode, None in test mode.
        ratios (tuple, optional): Scales to draw from; None in test mode.
            Defaults to (0.9, 1.0, 1.1).
        border (int, optional): Initial distance of the centre from the image edges; None in
            test mode. Defaults to 128.
        mean (Sequence, optional): Canvas fill per channel (RGB order when ``to_rgb``).
            Required.
        std (Sequence, optional): Kept for the repr and parity with Normalize. Required.
        to_rgb (bool, optional): Reverse ``mean`` / ``std`` to BGR. Required.
        test_mode (bool): Use the deterministic test behaviour. Defaults to False.
        test_pad_mode (tuple, optional): (mode, value), mode in ('logical_or',
            'size_divisor'); None in train mode. Defaults to ('logical_or', 127).
        test_pad_add_pix (int): Extra pixels added by 'logical_or'. Defaults to 0.
        bbox_clip_border (bool): Clip boxes to the canvas. Defaults to True.
    """

    def __init__(self,
                 crop_size: Optional[tuple] = None,
                 ratios: Optional[tuple] = (0.9, 1.0, 1.1),
                 border: Optional[int] = 128,
                 mean: Optional[Sequence] = None,
                 std: Optional[Sequence] = None,
                 to_rgb: Optional[bool] = None,
                 test_mode: bool = False,
                 test_pad_mode: Optional[tuple] = ('logical_or', 127),
                 test_pad_add_pix: int = 0,
                 bbox_clip_border: bool = True) -> None:
        name = 'RandomCenterCropPad'
        if test_mode:
            check_arg(crop_size is None, f'{name}: crop_size must be None in test mode, '
                      f'got {crop_size!r}.')
            check_arg(ratios is None, f'{name}: ratios must be None in test mode, got {ratios!r}.')
            check_arg(border is None, f'{name}: border must be None in test mode, got {border!r}.')
            check_arg(isinstance(test_pad_mode, (list, tuple)),
                      f'{name}: test_pad_mode must be a (mode, value) pair in test mode, '
                      f'got {test_pad_mode!r}.')
            check_arg(test_pad_mode[0] in _TEST_PAD_MODES,
                      f'{name}: test_pad_mode[0] must be one of {_TEST_PAD_MODES}, '
                      f'got {test_pad_mode[0]!r}.')
        else:
            check_arg(isinstance(crop_size, (list, tuple)),
                      f'{name}: crop_size must be a (width, height) pair in train mode, '
                      f'got {crop_size!r}.')
            check_arg(crop_size[0] > 0 and crop_size[1] > 0,
                      f'{name}: crop_size must be > 0 in train mode, got {crop_size!r}.')
            check_arg(isinstance(ratios, (list, tuple)),
                      f'{name}: ratios must be a list or tuple in train mode, got {ratios!r}.')
            check_arg(test_pad_mode is None,
                      f'{name}: test_pad_mode must be None in train mode, got {test_pad_mode!r}.')
        check_arg(mean is not None and std is not None and to_rgb is not None,
                  f'{name}: mean, std and to_rgb must be given (use the values of Normalize), '
                  f'got mean={mean!r}, std={std!r}, to_rgb={to_rgb!r}.')
        self.crop_size = crop_size
        self.ratios = ratios
        self.border = border
        self.to_rgb = to_rgb
        self.input_mean = mean
        self.input_std = std
        self.mean = mean[::-1] if to_rgb else mean
        self.std = std[::-1] if to_rgb else std
        self.test_mode = test_mode
        self.test_pad_mode = test_pad_mode
        self.test_pad_add_pix = test_pad_add_pix
        self.bbox_clip_border = bbox_clip_border

    @staticmethod
    def _get_border(border: int, size: int) -> float:
        """Shrink ``border`` by the smallest power of two that leaves a centre range.

        With k = 2 * border / size, the divisor is 2 ** ceil(log2(ceil(k))), doubled once
        more when k is a whole number (the range would otherwise be empty).
        """
        k = 2 * border / size
        divisor = pow(2, np.ceil(np.log2(np.ceil(k))) + (k == int(k)))
        return border // divisor

    @staticmethod
    def _filter_boxes(patch: Sequence[int], boxes) -> np.ndarray:
        """Bool [N]: box centre strictly inside ``patch`` = [left, top, right, bottom]."""
        center = boxes.centers.numpy()
        return ((center[:, 0] > patch[0]) & (center[:, 1] > patch[1]) &
                (center[:, 0] < patch[2]) & (center[:, 1] < patch[3]))

    def _crop_image_and_paste(self, image: np.ndarray, center: Sequence[int],
                              size: Sequence[int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copy the ``size`` window around ``center`` onto a ``mean`` canvas.

        Args:
            image (np.ndarray): Image (H, W, C).
            center (Sequence[int]): (y, x) of the point that goes to the canvas centre.
            size (Sequence[int]): Canvas (height, width).

        Returns:
            tuple: the canvas (height, width, C); the image's float32 [top, bottom, left,
            right] edges on the canvas; the copied area [x0, y0, x1, y1] in the image.
        """
        center_y, center_x = center
        target_h, target_w = size
        img_h, img_w, channels = image.shape

        x0, x1 = max(0, center_x - target_w // 2), min(center_x + target_w // 2, img_w)
        y0, y1 = max(0, center_y - target_h // 2), min(center_y + target_h // 2, img_h)
        patch = np.array((int(x0), int(y0), int(x1), int(y1)))

        left, right = center_x - x0, x1 - center_x
        top, bottom = center_y - y0, y1 - center_y
        mid_y, mid_x = target_h // 2, target_w // 2
        canvas = np.zeros((target_h, target_w, channels), dtype=image.dtype)
        canvas[...] = np.asarray(self.mean[:channels], dtype=image.dtype)
        canvas[mid_y - top:mid_y + bottom, mid_x - left:mid_x + right] = image[y0:y1, x0:x1]
        border = np.array([mid_y - top, mid_y + bottom, mid_x - left, mid_x + right],
                          dtype=np.float32)
        return canvas, border, patch

    def _random_scale(self) -> float:
        """A scale drawn uniformly from ``ratios`` (redrawn after 50 failed centres)."""
        return np.random.choice(self.ratios)

    def _random_center(self, h_border: float, w_border: float, h: int, w: int) -> Tuple[int, int]:
        """(center_y, center_x), x from [w_border, w - w_border), y likewise."""
        center_x = np.random.randint(low=w_border, high=w - w_border)
        center_y = np.random.randint(low=h_border, high=h - h_border)
        return center_y, center_x

    def _train_aug(self, results: dict) -> dict:
        """Random scale and centre, retried until some box centre is in the copied area."""
        img = results['img']
        h, w = img.shape[:2]
        gt_bboxes = results['gt_bboxes']
        while True:
            scale = self._random_scale()
            new_h, new_w = int(self.crop_size[1] * scale), int(self.crop_size[0] * scale)
            h_border = self._get_border(self.border, h)
            w_border = self._get_border(self.border, w)
            for _ in range(_TRIES_PER_SCALE):
                center_y, center_x = self._random_center(h_border, w_border, h, w)
                canvas, _, patch = self._crop_image_and_paste(img, [center_y, center_x],
                                                              [new_h, new_w])
                if len(gt_bboxes) == 0:
                    results['img'] = canvas
                    results['img_shape'] = canvas.shape[:2]
                    return results
                inside = self._filter_boxes(patch, gt_bboxes)
                if not inside.any():
                    continue
                if 'gt_masks' in results or 'gt_seg_map' in results:
                    raise NotImplementedError('RandomCenterCropPad only supports bbox; '
                                              'results have gt_masks or gt_seg_map.')
                results['img'] = canvas
                results['img_shape'] = canvas.shape[:2]
                self._move_instances(results, inside, (new_w // 2 - center_x,
                                                       new_h // 2 - center_y), (new_h, new_w))
                return results

    def _move_instances(self, results: dict, inside: np.ndarray, shift: Tuple[int, int],
                        canvas_shape: Tuple[int, int]) -> None:
        """Keep the ``inside`` instances, shift their boxes onto the canvas, drop the lost."""
        boxes = results['gt_bboxes'][inside]
        boxes.translate_(shift)
        if self.bbox_clip_border:
            boxes.clip_(canvas_shape)
        keep = boxes.is_inside(canvas_shape).numpy()
        results['gt_bboxes'] = boxes[keep]
        for key in ('gt_ignore_flags', 'gt_bboxes_labels'):
            if results.get(key) is not None:
                results[key] = results[key][inside][keep]

    def _test_aug(self, results: dict) -> dict:
        """Pad around the whole image, centred, to the size given by ``test_pad_mode``."""
        img = results['img']
        h, w = img.shape[:2]
        mode, value = self.test_pad_mode[0], self.test_pad_mode[1]
        if mode == 'logical_or':
            target_h = (h | value) + self.test_pad_add_pix
            target_w = (w | value) + self.test_pad_add_pix
        elif mode == 'size_divisor':
            target_h = int(np.ceil(h / value)) * value
            target_w = int(np.ceil(w / value)) * value
        else:
            raise NotImplementedError('RandomCenterCropPad supports the test pad modes '
                                      f'{_TEST_PAD_MODES}, got {mode!r}.')
        canvas, border, _ = self._crop_image_and_paste(img, [h // 2, w // 2],
                                                       [target_h, target_w])
        results['img'] = canvas
        results['img_shape'] = canvas.shape[:2]
        results['border'] = border
        return results

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Crop and pad ``results`` in place.

        Args:
            results (dict): Pipeline results with a float32 ``img``.

        Returns:
            dict: The same dict.
        """
        img = results['img']
        check_arg(img.dtype == np.float32,
                  'RandomCenterCropPad needs a float32 image, got '
                  f'{img.dtype}; set to_float32=True in LoadImageFromFile.')
        check_arg(img.ndim == 3 and img.shape[2] == len(self.mean),
                  f'RandomCenterCropPad: the image has shape {img.shape} but mean has '
                  f'{len(self.mean)} values; they need one per channel.')
        if self.test_mode:
            return self._test_aug(results)
        return self._train_aug(results)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(crop_size={self.crop_size}, '
                f'ratios={self.ratios}, border={self.border}, mean={self.input_mean}, '
                f'std={self.input_std}, to_rgb={self.to_rgb}, test_mode={self.test_mode}, '
                f'test_pad_mode={self.test_pad_mode}, '
                f'bbox_clip_border={self.bbox_clip_border})')
