"""Dense heads: predict scores and boxes at every position of every feature level."""
from .anchor_head import AnchorHead
from .base_dense_head import BaseDenseHead
from .retina_head import RetinaHead
from .rpn_head import RPNHead

__all__ = ['BaseDenseHead', 'AnchorHead', 'RPNHead', 'RetinaHead']

# DETR head.
from .detr_head import DETRHead  # noqa: E402

__all__ += ['DETRHead']

# Deformable DETR head.
from .deformable_detr_head import DeformableDETRHead  # noqa: E402

__all__ += ['DeformableDETRHead']

# DINO head.
from .dino_head import DINOHead  # noqa: E402

__all__ += ['DINOHead']

# Conditional DETR and DAB-DETR heads.
from .conditional_detr_head import ConditionalDETRHead  # noqa: E402
from .dab_detr_head import DABDETRHead  # noqa: E402

__all__ += ['ConditionalDETRHead', 'DABDETRHead']
