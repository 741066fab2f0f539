"""Pack pipeline results into the (inputs, data_samples) pair a detector consumes."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform, to_tensor
from mmengine.structures import InstanceData, PixelData

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.bbox import BaseBoxes
from mmdet_lite.structures.mask import BaseInstanceMasks


@TRANSFORMS.register_module()
class PackDetInputs(BaseTransform):
    """Pack ``results`` into ``dict(inputs=..., data_samples=DetDataSample)``.

    - ``inputs``: the image as a tensor [C, H, W], same dtype and channel order as
      ``results['img']`` (uint8 BGR from ``LoadImageFromFile``).
    - ``data_samples.gt_instances``: instances whose ``gt_ignore_flags`` is False, with
      ``bboxes`` (a box object such as ``HorizontalBoxes`` stays one; a float32 array
      becomes a tensor [N, 4]), ``labels`` (int64 tensor [N]) and ``masks`` (kept as
      BitmapMasks/PolygonMasks); ``ignored_instances`` holds the others. Without
      ``gt_ignore_flags`` every instance is a gt instance and ``ignored_instances`` is
      empty. The results keys and their fields are in :attr:`mapping_table`.
    - ``data_samples.gt_sem_seg``: PixelData ``sem_seg`` [1, H, W] from ``gt_seg_map``,
      with metainfo ``ignore_index`` when present.
    - ``data_samples.proposals``: ``bboxes`` (and ``scores`` from ``proposals_scores``)
      when ``proposals`` is present (see ``LoadProposals``).
    - metainfo: ``results[k]`` for each ``k`` in ``meta_keys`` that is present.

    Args:
        meta_keys (Sequence[str]): Keys copied into the metainfo. Defaults to
            ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
            'flip_direction').
    """

    # results key -> InstanceData field.
    mapping_table = {'gt_bboxes': 'bboxes', 'gt_bboxes_labels': 'labels', 'gt_masks': 'masks'}

    def __init__(self,
                 meta_keys: Sequence[str] = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                                             'scale_factor', 'flip', 'flip_direction')
                 ) -> None:
        self.meta_keys = meta_keys

    def transform(self, results: dict) -> dict:
        """Pack ``results``.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict: ``inputs`` (tensor [C, H, W], if ``img`` present) and ``data_samples``.
        """
        packed = {}
        if 'img' in results:
            packed['inputs'] = _image_to_tensor(results['img'])

        data_sample = DetDataSample()
        if 'gt_ignore_flags' in results:
            ignored = np.asarray(results['gt_ignore_flags'], dtype=bool)
            kept_idx, ignored_idx = np.nonzero(~ignored)[0], np.nonzero(ignored)[0]
        else:
            kept_idx = ignored_idx = None
        gt_instances, ignored_instances = InstanceData(), InstanceData()
        for key, field in self.mapping_table.items():
            if key not in results:
                continue
            values = results[key]
            if kept_idx is None:
                gt_instances[field] = _to_field(values)
            else:
                gt_instances[field] = _to_field(values[kept_idx])
                ignored_instances[field] = _to_field(values[ignored_idx])
        data_sample.gt_instances = gt_instances
        data_sample.ignored_instances = ignored_instances

        if 'proposals' in results:
            proposals = InstanceData(bboxes=_to_field(results['proposals']))
            if 'proposals_scores' in results:
                proposals.scores = to_tensor(results['proposals_scores'])
            data_sample.proposals = proposals
        if 'gt_seg_map' in results:
            sem_seg = PixelData(sem_seg=to_tensor(results['gt_seg_map'][None, ...].copy()))
            if 'ignore_index' in results:
                sem_seg.set_metainfo(dict(ignore_index=results['ignore_index']))
            data_sample.gt_sem_seg = sem_seg

        data_sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        packed['data_samples'] = data_sample
        return packed

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'


def _image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """[H, W, C] (or [H, W]) array -> contiguous [C, H, W] tensor."""
    if img.ndim < 3:
        img = img[..., None]
    if img.flags.c_contiguous:
        # Permuting the tensor is faster than transposing a contiguous array.
        return torch.from_numpy(img).permute(2, 0, 1).contiguous()
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _to_field(values):
    """Box objects and mask structures stay as they are; anything else becomes a tensor."""
    if isinstance(values, (BaseBoxes, BaseInstanceMasks)):
        return values
    return to_tensor(values)
