"""torchvision counterparts of our detectors, for ``tools/analysis_tools/benchmark.py``.

Each :class:`Baseline` builds a torchvision detector whose settings (classes, proposal and
sample counts, thresholds, image size) are read from our model config, so that both
detectors do the same work, and can copy our weights into it: random weights of two
differently initialised models would send different numbers of boxes through NMS, RoI
pooling and mask pasting. To benchmark a new pair, add one entry to
:data:`TORCHVISION_BASELINES`. torchvision is imported only when a builder runs.
"""
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.config import ConfigDict
from torch import Tensor, nn


def _resnet50_fpn(returned_layers: Optional[List[int]] = None, extra_blocks=None) -> nn.Module:
    """ResNet-50 + FPN as torchvision builds it around a pretrained backbone.

    ``FrozenBatchNorm2d`` and a frozen stem + layer1 (3 trainable layers) are what
    torchvision uses whenever backbone weights are loaded; they match our configs'
    ``norm_eval=True, frozen_stages=1`` (except that our BN affine parameters of layers 2-4
    still get gradients). With ``weights_backbone=None`` torchvision's builders would train
    every BN layer instead, which no real fine-tuning run does.
    """
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d
    resnet = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    return _resnet_fpn_extractor(resnet, 3, returned_layers=returned_layers,
                                 extra_blocks=extra_blocks)


def _size_kwargs(img_shape: Tuple[int, int]) -> dict:
    # min_size/max_size equal to the input sides make torchvision's resize a scale of 1.
    return dict(min_size=min(img_shape), max_size=max(img_shape))


def rcnn_kwargs(model_cfg: ConfigDict, img_shape: Tuple[int, int]) -> dict:
    """torchvision Faster/Mask R-CNN arguments equal to our two-stage config's settings.

    Args:
        model_cfg (ConfigDict): Our ``cfg.model`` (``roi_head``, ``train_cfg``,
            ``test_cfg``).
        img_shape (tuple[int, int]): (H, W) of the benchmark images.

    Returns:
        dict: Keyword arguments of ``torchvision.models.detection.FasterRCNN``.
    """
    train, test = model_cfg.train_cfg, model_cfg.test_cfg
    return dict(
        num_classes=model_cfg.roi_head.bbox_head.num_classes + 1,  # + background
        rpn_pre_nms_top_n_train=train.rpn_proposal.nms_pre,
        rpn_post_nms_top_n_train=train.rpn_proposal.max_per_img,  # torchvision: 2000
        rpn_pre_nms_top_n_test=test.rpn.nms_pre,
        rpn_post_nms_top_n_test=test.rpn.max_per_img,
        rpn_nms_thresh=test.rpn.nms.iou_threshold,
        rpn_batch_size_per_image=train.rpn.sampler.num,
        rpn_positive_fraction=train.rpn.sampler.pos_fraction,
        box_score_thresh=test.rcnn.score_thr,
        box_nms_thresh=test.rcnn.nms.iou_threshold,
        box_detections_per_img=test.rcnn.max_per_img,
        box_batch_size_per_image=train.rcnn.sampler.num,
        box_positive_fraction=train.rcnn.sampler.pos_fraction,
        **_size_kwargs(img_shape))


def build_faster_rcnn(model_cfg: ConfigDict, img_shape: Tuple[int, int]) -> nn.Module:
    from torchvision.models.detection import FasterRCNN
    return FasterRCNN(_resnet50_fpn(), **rcnn_kwargs(model_cfg, img_shape))


def build_mask_rcnn(model_cfg: ConfigDict, img_shape: Tuple[int, int]) -> nn.Module:
    from torchvision.models.detection import MaskRCNN
    return MaskRCNN(_resnet50_fpn(), **rcnn_kwargs(model_cfg, img_shape))


def build_retinanet(model_cfg: ConfigDict, img_shape: Tuple[int, int]) -> nn.Module:
    from torchvision.models.detection import RetinaNet
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    test = model_cfg.test_cfg
    backbone = _resnet50_fpn([2, 3, 4], LastLevelP6P7(256, 256))
    return RetinaNet(backbone, num_classes=model_cfg.bbox_head.num_classes,
                     score_thresh=test.score_thr, nms_thresh=test.nms.iou_threshold,
                     detections_per_img=test.max_per_img, topk_candidates=test.nms_pre,
                     **_size_kwargs(img_shape))


# torchvision key pattern -> our key. Our class-dependent layers put the background last
# (or have no background row); torchvision puts it first: see _to_torchvision_classes.
_RCNN_KEY_MAP = [
    (r'backbone\.body\.', 'backbone.'),
    (r'backbone\.fpn\.inner_blocks\.(\d+)\.0\.', r'neck.lateral_convs.\1.conv.'),
    (r'backbone\.fpn\.layer_blocks\.(\d+)\.0\.', r'neck.fpn_convs.\1.conv.'),
    (r'rpn\.head\.conv\.0\.0\.', 'rpn_head.rpn_conv.'),
    (r'rpn\.head\.cls_logits\.', 'rpn_head.rpn_cls.'),
    (r'rpn\.head\.bbox_pred\.', 'rpn_head.rpn_reg.'),
    (r'roi_heads\.box_head\.fc6\.', 'roi_head.bbox_head.shared_fcs.0.'),
    (r'roi_heads\.box_head\.fc7\.', 'roi_head.bbox_head.shared_fcs.1.'),
    (r'roi_heads\.box_predictor\.cls_score\.', 'roi_head.bbox_head.fc_cls.'),
    (r'roi_heads\.box_predictor\.bbox_pred\.', 'roi_head.bbox_head.fc_reg.'),
    (r'roi_heads\.mask_head\.(\d+)\.0\.', r'roi_head.mask_head.convs.\1.conv.'),
    (r'roi_heads\.mask_predictor\.conv5_mask\.', 'roi_head.mask_head.upsample.'),
    (r'roi_heads\.mask_predictor\.mask_fcn_logits\.', 'roi_head.mask_head.conv_logits.'),
]


def _to_torchvision_classes(tv_key: str, value: Tensor, tv_shape: torch.Size) -> Tensor:
    """Reorder a class-dependent tensor of ours to torchvision's background-first layout."""
    if 'cls_score' in tv_key:  # ours [C + 1 (bg last), ...] -> [bg, C, ...]
        return torch.cat([value[-1:], value[:-1]])
    if 'box_predictor.bbox_pred' in tv_key or 'mask_fcn_logits' in tv_key:
        # ours [C * 4] or [C] rows -> a zero background block first (never used by either)
        background = value.new_zeros((tv_shape[0] - value.shape[0], *value.shape[1:]))
        return torch.cat([background, value])
    return value


def copy_rcnn_weights(ours: nn.Module, tv_model: nn.Module) -> Optional[str]:
    """Copy our Faster/Mask R-CNN weights into the torchvision model.

    Args:
        ours (nn.Module): Our detector (mmdetection key layout).
        tv_model (nn.Module): torchvision's FasterRCNN or MaskRCNN.

    Returns:
        str or None: None once copied; otherwise why not (e.g. a ResNet-18 config
        against torchvision's ResNet-50), and nothing is copied.
    """
    our_state = ours.state_dict()
    new_state = {}
    for tv_key, tv_value in tv_model.state_dict().items():
        our_key = tv_key
        for pattern, repl in _RCNN_KEY_MAP:
            our_key, hits = re.subn('^' + pattern, repl, tv_key)
            if hits:
                break
        else:
            return f'no counterpart of torchvision key {tv_key!r}'
        if our_key not in our_state:
            return f'torchvision key {tv_key!r}: our model has no {our_key!r}'
        value = _to_torchvision_classes(tv_key, our_state[our_key], tv_value.shape)
        if value.shape != tv_value.shape:
            return (f'{our_key} has shape {tuple(value.shape)}, torchvision\'s {tv_key} '
                    f'{tuple(tv_value.shape)}')
        new_state[tv_key] = value
    tv_model.load_state_dict(new_state)
    return None


@dataclass
class Baseline:
    """A torchvision counterpart of one of our detectors.

    Args:
        build (callable): ``(our model config, (H, W)) -> torchvision model``.
        detector (str): Our registered type it stands for (what ``auto`` picks).
        copy_weights (callable, optional): ``(ours, torchvision model) -> None or the reason
            it cannot``; None leaves each model its own random initialisation.
        label_offset (int): Added to our labels: 1 where torchvision reserves 0 for the
            background (R-CNNs), 0 for sigmoid classifiers (RetinaNet).
        with_masks (bool): Whether its training targets need instance masks.
    """
    build: Callable[[ConfigDict, Tuple[int, int]], nn.Module]
    detector: str
    copy_weights: Optional[Callable[[nn.Module, nn.Module], Optional[str]]] = None
    label_offset: int = 1
    with_masks: bool = False


TORCHVISION_BASELINES: Dict[str, Baseline] = {
    'fasterrcnn': Baseline(build_faster_rcnn, 'FasterRCNN', copy_rcnn_weights),
    'maskrcnn': Baseline(build_mask_rcnn, 'MaskRCNN', copy_rcnn_weights, with_masks=True),
    'retinanet': Baseline(build_retinanet, 'RetinaNet', label_offset=0),
}
