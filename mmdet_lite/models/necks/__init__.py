"""Necks: turn backbone feature maps into the multi-level features the heads read."""
from .channel_mapper import ChannelMapper
from .fpn import FPN

__all__ = ['FPN', 'ChannelMapper']

# Necks of the YOLOX / RTMDet / YOLOF / DyHead / CenterNet / SSH families.
from .cspnext_pafpn import CSPNeXtPAFPN  # noqa: E402
from .ct_resnet_neck import CTResNetNeck  # noqa: E402
from .dilated_encoder import DilatedEncoder  # noqa: E402
from .dyhead import DyHead  # noqa: E402
from .ssh import SSH  # noqa: E402
from .yolox_pafpn import YOLOXPAFPN  # noqa: E402

__all__ += ['YOLOXPAFPN', 'CSPNeXtPAFPN', 'DilatedEncoder', 'DyHead', 'CTResNetNeck', 'SSH']

# FPN variants (PANet, NAS-FPN, NAS-FCOS, CARAFE, Libra, HRNet, DetectoRS) and SSD/YOLOv3 necks.
from .bfp import BFP  # noqa: E402
from .fpn_carafe import FPN_CARAFE  # noqa: E402
from .hrfpn import HRFPN  # noqa: E402
from .nas_fpn import NASFPN  # noqa: E402
from .nasfcos_fpn import NASFCOS_FPN  # noqa: E402
from .pafpn import PAFPN  # noqa: E402
from .rfp import RFP  # noqa: E402
from .ssd_neck import SSDNeck  # noqa: E402
from .yolo_neck import YOLOV3Neck  # noqa: E402

__all__ += [
    'PAFPN', 'NASFPN', 'NASFCOS_FPN', 'FPN_CARAFE', 'BFP', 'HRFPN', 'RFP', 'SSDNeck',
    'YOLOV3Neck'
]
