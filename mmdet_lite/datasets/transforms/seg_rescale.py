"""SegRescale: rescale only the semantic map (for heads predicting at a lower resolution)."""
import mmcv
from mmcv.transforms import BaseTransform

from mmdet_lite.registry import TRANSFORMS


@TRANSFORMS.register_module()
class SegRescale(BaseTransform):
    """Rescale ``results['gt_seg_map']`` by ``scale_factor`` with nearest interpolation.

    The image and instance annotations are left alone; with ``scale_factor == 1`` nothing
    happens. The output size is ``mmcv.imrescale``'s: each side times the factor, rounded.

    Required keys: ``gt_seg_map``. Modified keys: ``gt_seg_map``.

    Args:
        scale_factor (float): Factor applied to both sides. Defaults to 1.
        backend (str): ``'cv2'`` or ``'pillow'``. Defaults to 'cv2'.
    """

    def __init__(self, scale_factor: float = 1, backend: str = 'cv2') -> None:
        self.scale_factor = scale_factor
        self.backend = backend

    def transform(self, results: dict) -> dict:
        """Rescale the semantic map.

        Args:
            results (dict): Pipeline results with ``gt_seg_map`` [H, W].

        Returns:
            dict: ``results`` with ``gt_seg_map`` [round(H * f), round(W * f)].
        """
        if self.scale_factor != 1:
            results['gt_seg_map'] = mmcv.imrescale(
                results['gt_seg_map'], self.scale_factor, interpolation='nearest',
                backend=self.backend)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale_factor={self.scale_factor}, '
                f'backend={self.backend})')
