"""DetTTAModel: merge a detector's predictions on flipped / rescaled views of each image.

``tools/test.py --tta`` wraps the detector in this model and feeds it the config's
``tta_pipeline``, whose ``TestTimeAug`` turns every image into several views. mmengine's
``BaseTTAModel.test_step`` runs the detector on each view (every view's predictions are
already rescaled to the original image); :meth:`DetTTAModel.merge_preds` then undoes the
flips, pools the boxes of all views and keeps the best with NMS.
"""
from typing import List, Optional, Tuple, Union

import torch
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.bbox import bbox_flip
from mmdet_lite.utils import OptConfigType
from ..utils import batched_nms


class TTAUnsupportedError(NotImplementedError, AssertionError):
    """Predictions DetTTAModel cannot merge (mmdetection asserts): instance masks."""


@MODELS.register_module()
class DetTTAModel(BaseTTAModel):
    """Test-time augmentation of a detector: flip-back, concatenation and NMS of the boxes.

    Only boxes, scores and labels are merged (flips and multi-scale resizing); instance
    masks are not supported. Example config (the one mmdetection documents)::

        tta_model = dict(type='DetTTAModel',
                         tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                                      max_per_img=100))
        tta_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='TestTimeAug', transforms=[
                [dict(type='Resize', scale=(1333, 800), keep_ratio=True)],
                [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                [dict(type='PackDetInputs',
                      meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                 'scale_factor', 'flip', 'flip_direction'))]])]

    The views' meta must carry ``flip`` and ``flip_direction`` (as above).

    Args:
        tta_cfg (dict, optional): ``nms`` (the config of the per-class NMS over the pooled
            boxes of all views) and ``max_per_img`` (detections kept per image). Stored
            as given; read when predictions are merged.
        **kwargs: ``module`` (the detector or its config) and ``data_preprocessor``, for
            mmengine's ``BaseTTAModel``.
    """

    def __init__(self, tta_cfg: OptConfigType = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tta_cfg = tta_cfg

    def merge_aug_bboxes(self, aug_bboxes: List[Tensor], aug_scores: Optional[List[Tensor]],
                         img_metas: List[dict]) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """Undo each view's flip and concatenate the views' boxes (and scores).

        The detector already rescaled every view's boxes to the original image, so a
        flip is undone within ``ori_shape``; nothing is rescaled here.

        Args:
            aug_bboxes (list[Tensor]): One tensor [n_i, 4] per view, (x1, y1, x2, y2) in
                original-image pixels of that view's (maybe flipped) image.
            aug_scores (list[Tensor], optional): One tensor [n_i] per view, or None.
            img_metas (list[dict]): Each view's meta: ``ori_shape``, ``flip``,
                ``flip_direction``.

        Returns:
            Tensor | tuple[Tensor, Tensor]: Boxes [sum n_i, 4] on the unflipped original
            image, and the scores [sum n_i] unless ``aug_scores`` is None.
        """
        recovered = []
        for bboxes, img_meta in zip(aug_bboxes, img_metas):
            missing = [key for key in ('ori_shape', 'flip', 'flip_direction')
                       if key not in img_meta]
            if missing:
                raise KeyError(f'DetTTAModel: a view\'s meta lacks {missing}; add '
                               "'flip' and 'flip_direction' to PackDetInputs' meta_keys in "
                               'the tta_pipeline')
            if img_meta['flip']:
                bboxes = bbox_flip(bboxes, img_meta['ori_shape'], img_meta['flip_direction'])
            recovered.append(bboxes)
        bboxes = torch.cat(recovered, dim=0)
        if aug_scores is None:
            return bboxes
        return bboxes, torch.cat(aug_scores, dim=0)

    def merge_preds(self, data_samples_list: List[List[DetDataSample]]) -> List[DetDataSample]:
        """Merge the views of every image of the batch.

        Args:
            data_samples_list (list[list[DetDataSample]]): Outer list: images; inner: that
                image's views, each with ``pred_instances`` and its meta.

        Returns:
            list[DetDataSample]: One merged prediction per image.
        """
        return [self._merge_single_sample(views) for views in data_samples_list]

    def _merge_single_sample(self, data_samples: List[DetDataSample]) -> DetDataSample:
        """Merge the views of one image into one prediction.

        Args:
            data_samples (list[DetDataSample]): The image's views.

        Returns:
            DetDataSample: The first view's sample (its meta kept, as in mmdetection), its
            ``pred_instances`` replaced by the merged ``bboxes`` [K, 4], ``scores`` [K] and
            ``labels`` [K], highest score first, ``K <= max_per_img``. When no view
            predicted anything, the first view's sample unchanged.

        Raises:
            TTAUnsupportedError: The predictions have instance masks.
        """
        if data_samples[0].pred_instances.get('masks', None) is not None:
            raise TTAUnsupportedError('DetTTAModel merges boxes only: test-time '
                                      'augmentation of instance masks is not supported')
        preds = [sample.pred_instances for sample in data_samples]
        bboxes, scores = self.merge_aug_bboxes([p.bboxes for p in preds],
                                               [p.scores for p in preds],
                                               [sample.metainfo for sample in data_samples])
        labels = torch.cat([p.labels for p in preds], dim=0)  # [N]
        if bboxes.numel() == 0:
            return data_samples[0]

        # per-class NMS over the pooled views: duplicates of one object across views merge
        dets, keep = batched_nms(bboxes, scores, labels, self.tta_cfg['nms'])  # [K, 5], [K]
        max_per_img = self.tta_cfg['max_per_img']
        dets, keep = dets[:max_per_img], keep[:max_per_img]

        merged = InstanceData()
        merged.bboxes = dets[:, :-1]
        merged.scores = dets[:, -1]
        merged.labels = labels[keep]
        result = data_samples[0]
        result.pred_instances = merged
        return result
