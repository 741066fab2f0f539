"""One image's predictions as JSON-ready lists: what ``DetInferencer`` writes to preds/."""
from typing import Dict

from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.mask import encode_mask_results, mask2bbox


def predictions_to_json(data_sample: DetDataSample) -> Dict:
    """The predicted instances of one image as lists (mmdetection's ``pred2dict`` keys).

    Args:
        data_sample (DetDataSample): Predictions of one image.

    Returns:
        dict: ``labels`` [N], ``scores`` [N], ``bboxes`` [N, 4] (x1, y1, x2, y2 in
        original-image pixels; the boxes around the masks for mask-only models such as
        SOLO) and, for instance segmentation, ``masks``: COCO RLE dicts with ``size``
        [H, W] and str ``counts``. Empty without ``pred_instances``.
    """
    result = {}
    if 'pred_instances' in data_sample:
        masks = data_sample.pred_instances.get('masks')
        pred_instances = data_sample.pred_instances.numpy()
        result = {'labels': pred_instances.labels.tolist(),
                  'scores': pred_instances.scores.tolist()}
        if 'bboxes' in pred_instances:
            result['bboxes'] = pred_instances.bboxes.tolist()
        if masks is not None:
            if 'bboxes' not in pred_instances or pred_instances.bboxes.sum() == 0:
                # mask-only models (SOLO) give no boxes or all-zero ones
                result['bboxes'] = mask2bbox(masks.cpu()).numpy().tolist()
            result['masks'] = encode_mask_results(pred_instances.masks)  # str counts
    # mmdetection also writes pred_panoptic_seg, which no mmdet_lite model predicts
    return result


__all__ = ['predictions_to_json']
