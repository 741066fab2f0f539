"""Test-time augmentation: merging the predictions of several views of an image."""
from .det_tta import DetTTAModel, TTAUnsupportedError
from .merge_augs import (MergeAugsArgumentError, merge_aug_bboxes, merge_aug_masks,
                         merge_aug_proposals, merge_aug_results, merge_aug_scores)

__all__ = [
    'merge_aug_bboxes', 'merge_aug_masks', 'merge_aug_proposals', 'merge_aug_scores',
    'merge_aug_results', 'DetTTAModel', 'TTAUnsupportedError', 'MergeAugsArgumentError'
]
