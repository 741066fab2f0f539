"""Reading an mmcv-style NMS config (``dict(type='nms', iou_threshold=0.5, ...)``).

On the ground floor so that the detectors' ``batched_nms`` (models) and the sliced-inference
merge (``utils.large_image``) read it the same way.
"""
from typing import Tuple


def parse_nms_cfg(nms_cfg: dict, class_agnostic: bool = False) -> Tuple[float, bool, int]:
    """Check an NMS config and read its settings.

    Args:
        nms_cfg (dict): ``type`` ('nms', the default; mmcv's compiled ``soft_nms`` and
            others are not available), ``iou_threshold`` (required), optionally
            ``class_agnostic``, ``max_num``, ``offset`` (must be 0) and ``split_thr``
            (ignored: torchvision picks its own strategy for many boxes).
        class_agnostic (bool): The default when the config does not say.

    Returns:
        tuple: ``iou_threshold`` (float), ``class_agnostic`` (bool) and ``max_num`` (int,
        <= 0: keep all).

    Raises:
        ValueError: Another NMS type, or a non-zero offset.
        KeyError: No ``iou_threshold``.
    """
    nms_type = nms_cfg.get('type', 'nms')
    if nms_type != 'nms':
        raise ValueError(f"nms_cfg type {nms_type!r} is not supported; only 'nms' is "
                         '(mmcv compiled ops such as soft_nms are not available)')
    if 'iou_threshold' not in nms_cfg:
        raise KeyError("nms_cfg needs 'iou_threshold', got keys "
                       f"{sorted(k for k in nms_cfg if k != 'type')}")
    if nms_cfg.get('offset', 0) != 0:
        raise ValueError(f"nms_cfg offset must be 0, got {nms_cfg['offset']}")
    return (float(nms_cfg['iou_threshold']),
            bool(nms_cfg.get('class_agnostic', class_agnostic)),
            int(nms_cfg.get('max_num', -1)))


__all__ = ['parse_nms_cfg']
