"""Double-Head R-CNN's RoI head: regression features from enlarged RoIs."""
from typing import Dict, Tuple

from torch import Tensor

from mmdet_lite.registry import MODELS
from .standard_roi_head import StandardRoIHead


@MODELS.register_module()
class DoubleHeadRoIHead(StandardRoIHead):
    """StandardRoIHead whose box head gets two RoI features per proposal.

    The classification features are pooled from the RoIs as they are; the regression
    features from the RoIs enlarged ``reg_roi_scale_factor`` times around their centres
    (the level of each RoI is still chosen from its original size), giving the box
    regressor some context. Both go to a two-input box head (``DoubleConvFCBBoxHead``).

    Args:
        reg_roi_scale_factor (float): Enlargement of the regression RoIs, e.g. 1.3.
        **kwargs: :class:`StandardRoIHead` arguments.
    """

    def __init__(self, reg_roi_scale_factor: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.reg_roi_scale_factor = reg_roi_scale_factor

    def _bbox_forward(self, x: Tuple[Tensor, ...], rois: Tensor) -> Dict[str, Tensor]:
        """Box head outputs of ``rois`` [K, 5].

        Returns:
            dict: ``cls_score`` [K, C+1], ``bbox_pred`` [K, C*4] and ``bbox_feats`` (the
            classification RoI features, e.g. [K, 256, 7, 7]).
        """
        feats = x[:self.bbox_roi_extractor.num_inputs]
        cls_feats = self.bbox_roi_extractor(feats, rois)  # [K, 256, 7, 7]
        reg_feats = self.bbox_roi_extractor(feats, rois,
                                            roi_scale_factor=self.reg_roi_scale_factor)
        if self.with_shared_head:
            cls_feats = self.shared_head(cls_feats)
            reg_feats = self.shared_head(reg_feats)
        cls_score, bbox_pred = self.bbox_head(cls_feats, reg_feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=cls_feats)
