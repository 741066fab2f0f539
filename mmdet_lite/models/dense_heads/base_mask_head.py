"""Base of the mask heads of single-stage instance segmentors (SOLO, SOLOv2, ...).

A mask head turns neck features into instance masks directly, without RoIs::

    loss:    forward(x[, positive_infos]) -> loss_by_feat(*outs, gt masks padded to the batch)
    predict: forward(x[, results_list])   -> predict_by_feat(*outs) -> InstanceData per image

``positive_infos`` / ``results_list`` come from a box head when the detector has one (YOLACT,
CondInst); SOLO-style heads assign their own targets and get None.
"""
from abc import ABCMeta, abstractmethod
from typing import List, Tuple, Union

from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.structures import SampleList
from mmdet_lite.utils import InstanceList, OptInstanceList, OptMultiConfig
from ..utils import unpack_gt_instances


class MaskHeadOutputError(TypeError, AssertionError):
    """A mask head's forward did not return a tuple (an AssertionError in mmdetection)."""


class BaseMaskHead(BaseModule, metaclass=ABCMeta):
    """Mask head interface: subclasses implement ``forward``, ``loss_by_feat`` and
    ``predict_by_feat``.

    Args:
        init_cfg (dict | list[dict], optional): Initialization config.
    """

    def __init__(self, init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)

    @abstractmethod
    def loss_by_feat(self, *args, **kwargs):
        """Losses from the outputs of ``forward`` and the ground truth."""

    @abstractmethod
    def predict_by_feat(self, *args, **kwargs):
        """Per-image mask results from the outputs of ``forward``."""

    def loss(self,
             x: Union[List[Tensor], Tuple[Tensor]],
             batch_data_samples: SampleList,
             positive_infos: OptInstanceList = None,
             **kwargs) -> dict:
        """Forward, then losses against the ground truth of ``batch_data_samples``.

        Args:
            x (list[Tensor] | tuple[Tensor]): Neck features, each [B, C, H_l, W_l].
            batch_data_samples (list[DetDataSample]): ``gt_instances`` (``bboxes``,
                ``labels``, ``masks`` as BitmapMasks/PolygonMasks) and metas.
            positive_infos (list[InstanceData], optional): Positive samples chosen by a box
                head; None when the mask head assigns its own targets (SOLO, SOLOv2).

        Returns:
            dict[str, Tensor]: Loss components.
        """
        outs = self(x) if positive_infos is None else self(x, positive_infos)
        if not isinstance(outs, tuple):
            raise MaskHeadOutputError(
                f'{type(self).__name__}.forward must return a tuple (even of one item), got '
                f'{type(outs).__name__}')

        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = \
            unpack_gt_instances(batch_data_samples)
        # The heads sample gt masks on the padded input's grid. As mmdetection, the padded
        # masks replace those of the data samples' gt_instances.
        for gt_instances, img_meta in zip(batch_gt_instances, batch_img_metas):
            gt_instances.masks = gt_instances.masks.pad(img_meta['batch_input_shape'])

        return self.loss_by_feat(
            *outs,
            batch_gt_instances=batch_gt_instances,
            batch_img_metas=batch_img_metas,
            positive_infos=positive_infos,
            batch_gt_instances_ignore=batch_gt_instances_ignore,
            **kwargs)

    def predict(self,
                x: Tuple[Tensor],
                batch_data_samples: SampleList,
                rescale: bool = False,
                results_list: OptInstanceList = None,
                **kwargs) -> InstanceList:
        """Forward, then per-image mask results.

        Args:
            x (tuple[Tensor]): Neck features, each [B, C, H_l, W_l].
            batch_data_samples (list[DetDataSample]): Metas (``img_shape``, ``ori_shape``,
                ...).
            rescale (bool): Return results in original-image pixels. Defaults to False.
            results_list (list[InstanceData], optional): A box head's detections, for heads
                that segment given boxes (YOLACT, CondInst).

        Returns:
            list[InstanceData]: Per image ``scores`` [K], ``labels`` [K], ``masks`` [K, H, W]
            (and whatever else the head adds).
        """
        batch_img_metas = [data_samples.metainfo for data_samples in batch_data_samples]
        outs = self(x) if results_list is None else self(x, results_list)
        return self.predict_by_feat(
            *outs,
            batch_img_metas=batch_img_metas,
            rescale=rescale,
            results_list=results_list,
            **kwargs)
