"""``DumpProposals``: an evaluator entry that saves proposals for a later two-stage run."""
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.fileio import dump
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

from mmdet_lite.registry import METRICS


class ProposalsFileError(ValueError, AssertionError):
    """``proposals_file`` is not a pickle file."""


@METRICS.register_module()
class DumpProposals(BaseMetric):
    """Save each image's proposals (ranked by score) to one pickle; reports nothing.

    The file maps ``'<image folder>/<file name>'`` (the last two parts of ``img_path``) to
    an ``InstanceData`` with ``bboxes`` [N, 4] and ``scores`` [N] (numpy), the format that
    ``BaseDetDataset(proposal_file=...)`` reads.

    Args:
        output_dir (str): Folder of ``proposals_file``. Defaults to ''.
        proposals_file (str): A ``.pkl`` / ``.pickle`` name. Defaults to 'proposals.pkl'.
        num_max_proposals (int, optional): Keep at most this many per image (all if None).
        file_client_args (dict, optional): Removed in mmdetection 3.x; giving it is an error.
        backend_args (dict, optional): mmengine file backend arguments for the dump.
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        prefix (str, optional): Metric name prefix; ``'dump_proposals'`` if None.
    """

    default_prefix: Optional[str] = 'dump_proposals'

    def __init__(self,
                 output_dir: str = '',
                 proposals_file: str = 'proposals.pkl',
                 num_max_proposals: Optional[int] = None,
                 file_client_args: Optional[dict] = None,
                 backend_args: Optional[dict] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_max_proposals = num_max_proposals
        self.output_dir = output_dir
        self.backend_args = backend_args
        if file_client_args is not None:
            raise RuntimeError('The `file_client_args` is deprecated, please use '
                               '`backend_args` instead')
        if not proposals_file.endswith(('.pkl', '.pickle')):
            raise ProposalsFileError("DumpProposals: proposals_file must be a '.pkl' or "
                                     f"'.pickle' file, got {proposals_file!r}")
        self.proposals_file = os.path.join(self.output_dir, proposals_file)
        if is_main_process() and self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)

    def process(self, data_batch: Optional[dict], data_samples: Sequence[dict]) -> None:
        """Rank each sample's ``pred_instances`` by score and store them by image key."""
        for sample in data_samples:
            pred = sample['pred_instances']
            scores, order = pred['scores'].sort(descending=True)
            proposals = InstanceData()
            proposals.bboxes = pred['bboxes'][order, :].cpu().numpy()
            proposals.scores = scores.cpu().numpy()
            if self.num_max_proposals is not None:
                proposals = proposals[:self.num_max_proposals]
            folder, file_name = osp.split(sample['img_path'])
            # the key BaseDetDataset.load_proposals looks up
            self.results.append({osp.join(osp.basename(folder), file_name): proposals})

    def compute_metrics(self, results: list) -> dict:
        """Write the merged ``{key: proposals}`` dict; returns an empty dict."""
        merged = {}
        for result in results:
            merged.update(result)
        dump(merged, file=self.proposals_file, backend_args=self.backend_args)
        MMLogger.get_current_instance().info(f'Results are saved at {self.proposals_file}')
        return {}
