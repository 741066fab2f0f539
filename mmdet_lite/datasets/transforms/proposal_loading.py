"""LoadProposals: take precomputed proposals (e.g. from an RPN dump) into the pipeline."""
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement

from mmdet_lite.registry import TRANSFORMS


class ProposalFormatError(ValueError, AssertionError):
    """``results['proposals']`` is not in the expected format (mmdetection asserts this)."""


@TRANSFORMS.register_module()
class LoadProposals(BaseTransform):
    """Turn ``results['proposals']`` into float32 boxes and scores.

    The proposals are a dict or an ``InstanceData`` with ``bboxes`` (np.ndarray [N, 4],
    x1, y1, x2, y2) and optionally ``scores`` ([N]; zeros when missing). They are
    expected sorted by score, so ``num_max_proposals`` keeps the first ones.

    Required keys: ``proposals``. Modified keys: ``proposals`` (np.float32 [N, 4]).
    Added keys: ``proposals_scores`` (np.float32 [N]).

    Args:
        num_max_proposals (int, optional): Keep at most this many. Defaults to None (all).
    """

    def __init__(self, num_max_proposals: Optional[int] = None) -> None:
        self.num_max_proposals = num_max_proposals

    def transform(self, results: dict) -> dict:
        """Load the proposals.

        Args:
            results (dict): With ``proposals``.

        Returns:
            dict: ``results`` with ``proposals`` [N, 4] and ``proposals_scores`` [N].
        """
        proposals = results['proposals']
        if not isinstance(proposals, (dict, BaseDataElement)):
            raise ProposalFormatError("results['proposals'] must be a dict or an "
                                      f'InstanceData, got {type(proposals).__name__}.')
        bboxes = np.asarray(proposals['bboxes']).astype(np.float32)
        if bboxes.size == 0:
            bboxes = bboxes.reshape(0, 4)
        if bboxes.ndim != 2 or bboxes.shape[1] != 4:
            raise ProposalFormatError(f'Proposals should have shapes (n, 4), but found '
                                      f'{bboxes.shape}')
        if 'scores' in proposals:
            scores = np.asarray(proposals['scores']).astype(np.float32)
            if scores.shape[0] != bboxes.shape[0]:
                raise ProposalFormatError(f'proposals have {bboxes.shape[0]} boxes but '
                                          f'{scores.shape[0]} scores.')
        else:
            scores = np.zeros(bboxes.shape[0], dtype=np.float32)
        if self.num_max_proposals is not None:
            bboxes = bboxes[:self.num_max_proposals]
            scores = scores[:self.num_max_proposals]
        results['proposals'] = bboxes.reshape(-1, 4)
        results['proposals_scores'] = scores.reshape(-1)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_max_proposals={self.num_max_proposals})'
