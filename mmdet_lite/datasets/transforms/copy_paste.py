"""Simple Copy-Paste: paste objects of another image, by their masks, onto the sample."""
import warnings

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type
from mmdet_lite.structures.mask import BitmapMasks

from .transform_arg_errors import check_arg, require_key


@TRANSFORMS.register_module()
class CopyPaste(BaseTransform):
    """Paste objects of a same-sized image (``results['mix_results'][0]``) onto the sample.

    Simple Copy-Paste (Ghiasi et al., 2021). Both images are expected already resized,
    cropped and padded to the same size. A random subset of the source objects is chosen
    (``selected``: a count n ~ randint(0, min(N + 1, max_num_pasted)), then n distinct
    objects), or all of them. Their masks, merged, are pasted: the sample's pixels under
    them are replaced, and the sample's masks lose those pixels. Each sample object's box
    is recomputed from its remaining mask; the object is kept if every side of that box
    moved by at most ``bbox_occluded_thr`` pixels, or if more than ``mask_occluded_thr``
    mask pixels remain; otherwise it is dropped as occluded. The output instances are the
    kept sample objects (with their recomputed boxes) followed by the pasted ones.

    With ``paste_by_box`` images without masks use their boxes' filled rectangles as
    masks (a warning is given, and the masks used, when masks are present). The image
    keeps its dtype (mmdetection's is int64 after the paste); polygon masks are
    rasterized, and the output masks are :class:`BitmapMasks`.

    Required keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``,
    ``gt_masks`` (unless ``paste_by_box``), ``mix_results`` (one dict, same keys).
    Modified keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``,
    ``gt_masks``.

    Args:
        max_num_pasted (int): Most objects pasted. Defaults to 100.
        bbox_occluded_thr (int): Largest move of a box side, in pixels, for a partly
            covered object to be kept. Defaults to 10.
        mask_occluded_thr (int): An object with more visible mask pixels than this is
            kept. Defaults to 300.
        selected (bool): Paste a random subset of the source objects instead of all.
            Defaults to True.
        paste_by_box (bool): Use boxes as masks when there are no masks.
            Defaults to False.
    """

    def __init__(self,
                 max_num_pasted: int = 100,
                 bbox_occluded_thr: int = 10,
                 mask_occluded_thr: int = 300,
                 selected: bool = True,
                 paste_by_box: bool = False) -> None:
        self.max_num_pasted = max_num_pasted
        self.bbox_occluded_thr = bbox_occluded_thr
        self.mask_occluded_thr = mask_occluded_thr
        self.selected = selected
        self.paste_by_box = paste_by_box

    @cache_randomness
    def get_indexes(self, dataset) -> int:
        """A random index of ``dataset`` for the source image.

        Args:
            dataset (Sized): The dataset the wrapper loads from.

        Returns:
            int: An index in [0, len(dataset)).
        """
        return np.random.randint(0, len(dataset))

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Paste objects of ``results['mix_results'][0]`` onto ``results``.

        Args:
            results (dict): Pipeline results with ``mix_results``.

        Returns:
            dict: The same dict, updated.
        """
        require_key(results, 'mix_results', 'CopyPaste')
        num_images = len(results['mix_results'])
        check_arg(num_images == 1, 'CopyPaste mixes 2 images: mix_results must hold 1 '
                  f'dict, got {num_images}.')
        source = results['mix_results'][0]
        if self.selected:
            source = self._select_object(source)
        return self._copy_paste(results, source)

    @cache_randomness
    def _get_selected_inds(self, num_bboxes: int) -> np.ndarray:
        """Indices of a random number of distinct source objects."""
        max_num_pasted = min(num_bboxes + 1, self.max_num_pasted)
        num_pasted = np.random.randint(0, max_num_pasted)
        return np.random.choice(num_bboxes, size=num_pasted, replace=False)

    def get_gt_masks(self, results: dict):
        """The masks of ``results``, or its boxes' rectangles with ``paste_by_box``.

        Args:
            results (dict): Pipeline results.

        Returns:
            BitmapMasks | PolygonMasks: One mask per box.
        """
        if results.get('gt_masks') is not None:
            if self.paste_by_box:
                warnings.warn('gt_masks is already contained in results, so paste_by_box '
                              'is disabled.')
            return results['gt_masks']
        if not self.paste_by_box:
            raise RuntimeError('results does not contain masks: CopyPaste needs gt_masks, '
                               'or paste_by_box=True to paste boxes.')
        return results['gt_bboxes'].create_masks(results['img'].shape[:2])

    def _select_object(self, results: dict) -> dict:
        """Keep a random subset of the objects of ``results`` (edited in place)."""
        masks = self.get_gt_masks(results)
        inds = self._get_selected_inds(results['gt_bboxes'].shape[0])
        results['gt_bboxes'] = results['gt_bboxes'][inds]
        results['gt_bboxes_labels'] = results['gt_bboxes_labels'][inds]
        results['gt_masks'] = masks[inds]
        results['gt_ignore_flags'] = results['gt_ignore_flags'][inds]
        return results

    def _copy_paste(self, dst_results: dict, src_results: dict) -> dict:
        """Paste all objects of ``src_results`` onto ``dst_results`` (edited in place).

        Args:
            dst_results (dict): The sample.
            src_results (dict): The source, same image size.

        Returns:
            dict: ``dst_results``.
        """
        dst_bboxes = dst_results['gt_bboxes']
        dst_masks = _bitmap_array(self.get_gt_masks(dst_results))
        src_bboxes = src_results['gt_bboxes']
        if len(src_bboxes) == 0:
            return dst_results
        # _select_object has already put the box masks in (no second paste_by_box warning).
        src_masks = src_results.get('gt_masks')
        src_masks = _bitmap_array(self.get_gt_masks(src_results) if src_masks is None
                                  else src_masks)
        check_arg(dst_masks.shape[-2:] == src_masks.shape[-2:],
                  'CopyPaste: the source and destination masks must have the same size, '
                  f'got {src_masks.shape[-2:]} and {dst_masks.shape[-2:]}.')

        pasted = src_masks.any(axis=0)  # [H, W]: where the source objects cover
        visible = BitmapMasks(np.where(pasted, 0, dst_masks).astype(dst_masks.dtype),
                              *pasted.shape)
        visible_bboxes = visible.get_bboxes(type(dst_bboxes))
        moved = (visible_bboxes.tensor - dst_bboxes.tensor).abs()
        keep_by_box = (moved <= self.bbox_occluded_thr).all(dim=-1).numpy()
        keep_by_mask = visible.masks.sum(axis=(1, 2)) > self.mask_occluded_thr
        keep = keep_by_box | keep_by_mask

        dst_img = dst_results['img']
        covered = pasted.reshape(pasted.shape + (1, ) * (dst_img.ndim - 2))
        dst_results['img'] = np.where(covered, src_results['img'], dst_img).astype(
            dst_img.dtype)
        dst_results['gt_bboxes'] = src_bboxes.cat([visible_bboxes[keep], src_bboxes])
        dst_results['gt_bboxes_labels'] = np.concatenate(
            [dst_results['gt_bboxes_labels'][keep], src_results['gt_bboxes_labels']])
        masks = np.concatenate([visible.masks[keep], src_masks.astype(dst_masks.dtype)])
        dst_results['gt_masks'] = BitmapMasks(masks, masks.shape[1], masks.shape[2])
        dst_results['gt_ignore_flags'] = np.concatenate(
            [dst_results['gt_ignore_flags'][keep], src_results['gt_ignore_flags']])
        return dst_results

    def __repr__(self) -> str:
        # mmdetection's format, its stray parenthesis after `selected` included.
        return (f'{self.__class__.__name__}(max_num_pasted={self.max_num_pasted}, '
                f'bbox_occluded_thr={self.bbox_occluded_thr}, '
                f'mask_occluded_thr={self.mask_occluded_thr}, '
                f'selected={self.selected}), paste_by_box={self.paste_by_box})')


def _bitmap_array(masks) -> np.ndarray:
    """[N, H, W] array of bitmap or polygon masks."""
    return masks.masks if isinstance(masks, BitmapMasks) else masks.to_ndarray()
