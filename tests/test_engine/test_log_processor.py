"""Training log lines carry the ETA and the throughput ``img/s``.

Hand-computed cases on a stand-in runner (batch size, world size and the smoothed iteration
time chosen here), then the lines of a real two-iteration training of the tiny config.
"""
import glob
import json
import re
import types
import uuid

import pytest
from helpers_tools import TINY_CONFIG, tiny_data_cfg_options
from mmengine.logging import MessageHub
from mmengine.runner import BaseLoop
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from mmdet_lite.engine import LogProcessor
from mmdet_lite.engine import log_processor as log_processor_module


class _Loop(BaseLoop):

    def run(self) -> None:
        pass


def fake_runner(times, loader: DataLoader) -> types.SimpleNamespace:
    """A runner after ``len(times)`` iterations of an iteration-based training."""
    hub = MessageHub(f'test_log_processor_{uuid.uuid4().hex}')
    for iter_time in times:
        hub.update_scalar('train/time', iter_time)
        hub.update_scalar('train/data_time', 0.01)
        hub.update_scalar('train/lr', 0.02)
        hub.update_scalar('train/loss', 1.5)
    hub.update_info('eta', 3725)  # seconds: 1:02:05
    runner = types.SimpleNamespace(message_hub=hub, iter=len(times) - 1, max_iters=100)
    runner._train_loop = _Loop(runner, loader)
    return runner


def test_throughput_is_batch_times_world_size_over_the_smoothed_time():
    # time over the window of 2: (0.5 + 0.3) / 2 = 0.4 s; 4 images / 0.4 s = 10 img/s
    runner = fake_runner([0.9, 0.5, 0.3], DataLoader(list(range(8)), batch_size=4))
    processor = LogProcessor(window_size=2, by_epoch=False)
    tag, line = processor.get_log_after_iter(runner, 2, 'train')
    assert tag['img_per_sec'] == pytest.approx(10.0)
    assert tag['time'] == pytest.approx(0.4)  # mmengine's key, unchanged
    assert re.search(r'eta: 1:02:05  time: 0\.4000  data_time: 0\.0100  img/s: 10\.00  '
                     r'memory: \d+  loss: 1\.5000', line), line


def test_throughput_with_a_batch_sampler_and_several_processes(monkeypatch):
    # AspectRatioBatchSampler-style loader: batch_size lives on the sampler (3 images);
    # 2 processes: 3 * 2 / 0.4 = 15 img/s
    monkeypatch.setattr(log_processor_module, 'get_world_size', lambda: 2)
    sampler = BatchSampler(SequentialSampler(range(9)), batch_size=3, drop_last=False)
    loader = DataLoader(list(range(9)), batch_sampler=sampler)
    assert loader.batch_size is None
    runner = fake_runner([0.5, 0.3], loader)
    tag, line = LogProcessor(window_size=2, by_epoch=False).get_log_after_iter(runner, 1,
                                                                               'train')
    assert tag['img_per_sec'] == pytest.approx(15.0)
    assert 'img/s: 15.00  ' in line


def test_throughput_key_follows_log_with_hierarchy():
    runner = fake_runner([0.25], DataLoader(list(range(8)), batch_size=2))
    processor = LogProcessor(window_size=1, by_epoch=False, log_with_hierarchy=True)
    tag, line = processor.get_log_after_iter(runner, 0, 'train')
    assert tag['train/img_per_sec'] == pytest.approx(8.0)
    assert 'img_per_sec' not in tag
    assert 'img/s: 8.00  ' in line


def test_no_throughput_without_a_built_train_loop():
    runner = fake_runner([0.25], DataLoader(list(range(8)), batch_size=2))
    runner._train_loop = dict(type='IterBasedTrainLoop', max_iters=100)  # not built
    tag, line = LogProcessor(window_size=1, by_epoch=False).get_log_after_iter(runner, 0,
                                                                               'train')
    assert 'img_per_sec' not in tag and 'img/s' not in line
    assert 'eta: 1:02:05  time: 0.2500  data_time: 0.0100  memory: ' in line


LINE = re.compile(r'Epoch\(train\) \[1\]\[(\d)/2\]  .*  eta: \d+:\d\d:\d\d  time: (\d+\.\d{4})  '
                  r'data_time: \d+\.\d{4}  img/s: (\d+\.\d\d)  memory: \d+  ')


@pytest.mark.slow
def test_training_log_lines_have_eta_and_throughput(call_tool, tmp_path):
    batch_size = 2  # the tiny config's
    work_dir = tmp_path / 'work'
    proc = call_tool('train', [
        TINY_CONFIG, '--work-dir', work_dir, '--cfg-options',
        *tiny_data_cfg_options(tmp_path / 'data'), 'train_dataloader.dataset.indices=4',
        f'train_dataloader.batch_size={batch_size}', 'val_dataloader=None', 'val_cfg=None',
        'val_evaluator=None',
        # a visualizer name new to this process, else an earlier in-process run's visualizer
        # (mmengine builds it through get_instance) would write the json log elsewhere
        f'visualizer.name=visualizer_{uuid.uuid4().hex}'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (log_file, ) = glob.glob(str(work_dir / '*' / '*.log'))
    lines = [line for line in open(log_file).read().splitlines() if 'Epoch(train)' in line]
    assert len(lines) == 2, lines
    (json_log, ) = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))
    records = [json.loads(line) for line in open(json_log).read().splitlines()]
    for line, record in zip(lines, records):
        match = LINE.search(line)
        assert match, line
        iter_time, throughput = float(match.group(2)), float(match.group(3))
        assert throughput > 0
        # the line rounds time to 4 decimals and img/s to 2: the range batch / time can be in
        lowest = batch_size / (iter_time + 5e-5) - 5e-3
        highest = batch_size / max(iter_time - 5e-5, 1e-9) + 5e-3
        assert lowest <= throughput <= highest, line
        # the json log has the unrounded numbers
        assert record['img_per_sec'] == pytest.approx(batch_size / record['time'])
        assert f"img/s: {record['img_per_sec']:.2f}  " in line
