"""``tools/test.py`` keeps what the user has: predictions survive a failing metric, a failed
run leaves an earlier ``--out`` file intact, and a checkpoint that does not fit is refused.

- ``--out`` is written before the metrics (first in mmengine's ``Evaluator``, which runs
  its metrics in order) and atomically (temporary file + ``os.replace``).
- A checkpoint missing some of the model's weights or holding some in another shape (here:
  a tiny RetinaNet's weights for the tiny Faster R-CNN) stops with a one-line ``error:``
  listing the first keys, exit status 2, before any testing; ``--allow-partial-load`` tests
  anyway. Keys only the checkpoint has (Mask R-CNN weights for Faster R-CNN) are fine.
"""
import os
import pickle

import pytest
import torch
from helpers_tools import REPO_ROOT, TINY_CONFIG, run_tool, tiny_data_cfg_options
from mmengine.config import Config
from mmengine.evaluator import BaseMetric, Evaluator

from mmdet_lite.evaluation.metrics import dump_results
from mmdet_lite.evaluation.metrics.dump_results import AtomicDumpResults, atomic_dump

RETINANET_CONFIG = os.path.join(REPO_ROOT, 'configs', 'shapes', 'retinanet_r18_fpn_shapes.py')
# the sizes of tests/data/configs/tiny_faster-rcnn_shapes.py, for a RetinaNet
TINY_RETINANET = {'model.backbone.base_channels': 8, 'model.neck.in_channels': [8, 16, 32, 64],
                  'model.neck.out_channels': 32, 'model.bbox_head.in_channels': 32,
                  'model.bbox_head.feat_channels': 32, 'model.bbox_head.stacked_convs': 1}
EARLIER = ['earlier predictions']


def _state_dict(config: str, options: dict = None) -> dict:
    from mmdet_lite.registry import MODELS
    from mmdet_lite.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options or {})
    return MODELS.build(cfg.model).state_dict()


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A shapes data root and two checkpoints: Faster R-CNN plus a Mask R-CNN-like extra
    key (fits), and a tiny RetinaNet (does not fit)."""
    root = tmp_path_factory.mktemp('outputs')
    faster = _state_dict(TINY_CONFIG)
    faster['roi_head.mask_head.conv_logits.weight'] = torch.zeros(3, 8, 1, 1)
    torch.save(dict(state_dict=faster, meta={}), root / 'faster_plus_mask.pth')
    torch.save(dict(state_dict=_state_dict(RETINANET_CONFIG, TINY_RETINANET), meta={}),
               root / 'retinanet.pth')
    return root


def _test(setup, tmp_path, checkpoint, *args, options=()):
    return run_tool('test', [TINY_CONFIG, setup / checkpoint, '--work-dir', tmp_path / 'work',
                             *args, '--cfg-options', *tiny_data_cfg_options(setup / 'data'),
                             *options])


def _error_line(proc) -> str:
    (line, ) = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    return line


@pytest.mark.slow
def test_predictions_are_kept_when_a_metric_fails(setup, tmp_path):
    out = tmp_path / 'results.pkl'
    out.write_bytes(pickle.dumps(EARLIER))
    # Faster R-CNN predicts no masks: 'segm' fails after 'bbox' is evaluated
    proc = _test(setup, tmp_path, 'faster_plus_mask.pth', '--out', out,
                 options=['test_evaluator.metric=[bbox,segm]'])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "metric 'segm' needs pred_instances.masks" in _error_line(proc)
    assert f'note: the predictions were saved to {out} before the failure' in proc.stderr
    assert 'bbox_mAP_copypaste' in proc.stdout  # the checkpoint (extra key and all) loaded
    results = pickle.loads(out.read_bytes())
    assert len(results) == 4 and all('pred_instances' in r for r in results)
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.tmp')]


@pytest.mark.slow
def test_checkpoint_that_does_not_fit_is_refused_and_out_file_kept(setup, tmp_path):
    out = tmp_path / 'results.pkl'
    out.write_bytes(pickle.dumps(EARLIER))
    proc = _test(setup, tmp_path, 'retinanet.pth', '--out', out)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = _error_line(proc)
    assert f"error: checkpoint {setup / 'retinanet.pth'} does not fit the model" in error
    assert 'missing keys (16): ' in error and 'rpn_head.rpn_conv.weight' in error
    assert ('shape mismatches (4): neck.lateral_convs.0.conv.weight: checkpoint (32, 16, 1, '
            '1), model (32, 8, 1, 1)') in error
    assert 'pass --allow-partial-load to test anyway' in error
    assert 'Traceback' not in proc.stderr and 'Epoch(test)' not in proc.stdout
    assert pickle.loads(out.read_bytes()) == EARLIER

    proc = _test(setup, tmp_path, 'retinanet.pth', '--out', out, '--allow-partial-load')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'coco/bbox_mAP: ' in proc.stdout
    assert len(pickle.loads(out.read_bytes())) == 4  # replaced by this run's predictions


class _FailingMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        raise RuntimeError('metric exploded')


def test_dump_first_survives_a_later_metric_failure(tmp_path):
    out = tmp_path / 'results.pkl'
    evaluator = Evaluator([AtomicDumpResults(str(out)), _FailingMetric()])
    evaluator.process([dict(img_id=i) for i in range(3)])
    with pytest.raises(RuntimeError, match='metric exploded'):
        evaluator.evaluate(3)
    assert pickle.loads(out.read_bytes()) == [dict(img_id=i) for i in range(3)]


def test_atomic_dump_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    out = tmp_path / 'results.pkl'
    out.write_bytes(pickle.dumps(EARLIER))
    os.chmod(out, 0o640)

    def crash_midway(obj, file, file_format):
        file.write(b'\x80\x04half a pickle')
        raise OSError('disk full')

    monkeypatch.setattr(dump_results, 'dump', crash_midway)
    with pytest.raises(OSError, match='disk full'):
        atomic_dump(['new'], str(out))
    assert pickle.loads(out.read_bytes()) == EARLIER
    assert os.listdir(tmp_path) == ['results.pkl']  # no temporary file left

    monkeypatch.undo()
    atomic_dump(['new'], str(out))
    assert pickle.loads(out.read_bytes()) == ['new']
    assert os.stat(out).st_mode & 0o777 == 0o640  # the replaced file's mode
    assert os.listdir(tmp_path) == ['results.pkl']
