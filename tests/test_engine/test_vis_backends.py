"""mmengine's TensorBoard and Weights & Biases backends, switched on from the command line.

``--cfg-options "visualizer.vis_backends=[dict(type='LocalVisBackend'),dict(type=...)]"``
must reach the Runner as a list of dicts, and our ``vis_backend`` registry must find
mmengine's classes through its parent. Each backend then gets what the json log gets: a
two-iteration training of the tiny shapes config (in this process) is read back from the
TensorBoard events file and from the wandb offline run, and compared with ``scalars.json``.
"""
import glob
import json
import os.path as osp
import struct
import uuid
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from helpers_tools import TINY_CONFIG, tiny_data_cfg_options
from mmengine.visualization import TensorboardVisBackend, WandbVisBackend

from mmdet_lite.apis.cli import load_config
from mmdet_lite.registry import VISBACKENDS

LOSS_KEYS = ('loss', 'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox')
BACKENDS = "[dict(type='LocalVisBackend'),dict(type='{}'{})]"


def vis_backends_option(backend: str, extra: str = '') -> str:
    """The ``--cfg-options`` item a user types: the local backend plus ``backend``."""
    return 'visualizer.vis_backends=' + BACKENDS.format(backend, extra)


def test_cfg_options_give_a_list_of_backend_dicts():
    option = vis_backends_option('WandbVisBackend',
                                 ",init_kwargs=dict(project='shapes',mode='offline')")
    cfg = load_config(TINY_CONFIG, [option])
    assert cfg.visualizer.vis_backends == [
        dict(type='LocalVisBackend'),
        dict(type='WandbVisBackend', init_kwargs=dict(project='shapes', mode='offline'))]
    # spaces after the commas (one quoted shell word) read the same
    cfg = load_config(TINY_CONFIG, [
        "visualizer.vis_backends=[dict(type='LocalVisBackend'), "
        "dict(type='TensorboardVisBackend')]"])
    assert [b['type'] for b in cfg.visualizer.vis_backends] == ['LocalVisBackend',
                                                                 'TensorboardVisBackend']


def test_registry_finds_mmengine_backends_through_its_parent():
    assert VISBACKENDS.get('TensorboardVisBackend') is TensorboardVisBackend
    assert VISBACKENDS.get('WandbVisBackend') is WandbVisBackend


def train_two_iterations(call_tool, tmp_path: Path, data_root: Path, option: str) -> Path:
    """Train the tiny config for 2 iterations (4 images, batch 2, no validation) with the
    ``vis_backends`` override; returns the run's ``vis_data`` folder."""
    work_dir = tmp_path / 'work'
    proc = call_tool('train', [
        TINY_CONFIG, '--work-dir', work_dir, '--cfg-options',
        *tiny_data_cfg_options(data_root), 'train_dataloader.dataset.indices=4',
        'val_dataloader=None', 'val_cfg=None', 'val_evaluator=None', option,
        # mmengine builds a visualizer through get_instance(name): a name seen before in this
        # process would give that earlier run's visualizer, backends and folder
        f'visualizer.name=visualizer_{uuid.uuid4().hex}'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (vis_data, ) = glob.glob(str(work_dir / '*' / 'vis_data'))
    return Path(vis_data)


def train_records(vis_data: Path) -> List[dict]:
    """The training entries of the json log ``scalars.json``."""
    records = [json.loads(line) for line in
               (vis_data / 'scalars.json').read_text().splitlines()]
    train = [r for r in records if 'loss' in r]
    assert [r['step'] for r in train] == [1, 2]
    return train


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('shapes_tiny')


@pytest.mark.slow
def test_tensorboard_events_hold_the_json_log_scalars(call_tool, tmp_path, data_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vis_data = train_two_iterations(call_tool, tmp_path, data_root,
                                    vis_backends_option('TensorboardVisBackend'))
    (events, ) = glob.glob(str(vis_data / 'events.out.tfevents.*'))
    accumulator = EventAccumulator(events)
    accumulator.Reload()
    tags = set(accumulator.Tags()['scalars'])
    for record in train_records(vis_data):
        for key in (*LOSS_KEYS, 'lr'):
            assert key in tags, (key, sorted(tags))
            by_step = {event.step: event.value for event in accumulator.Scalars(key)}
            # TensorBoard keeps float32
            assert by_step[record['step']] == pytest.approx(record[key], rel=1e-6), key


def wandb_records(path: str) -> Iterator[bytes]:
    """The records of a wandb ``run-*.wandb`` file, a LevelDB-style log: a 7-byte file
    header (``:W&B``, magic, version), then 32 KiB blocks of chunks, each with a 7-byte
    header (crc32c, length, type: 1 whole record, 2/3/4 its first/middle/last part)."""
    block_size, header = 32768, 7
    data = Path(path).read_bytes()
    assert data[:4] == b':W&B', data[:header]
    pos, record = header, b''
    while pos + header <= len(data):
        if block_size - pos % block_size < header:  # a block's tail too short for a chunk
            pos += block_size - pos % block_size
            continue
        _, length, kind = struct.unpack('<IHB', data[pos:pos + header])
        if kind == 0:  # zero padding: the end of what was written
            break
        chunk = data[pos + header:pos + header + length]
        pos += header + length
        record = chunk if kind in (1, 2) else record + chunk
        if kind in (1, 4):
            yield record


def wandb_history(run_file: str) -> List[Dict[str, object]]:
    """Each ``wandb.log`` call of the run, as ``{key: value}``."""
    from wandb.proto import wandb_internal_pb2
    history = []
    for data in wandb_records(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof('record_type') == 'history':
            history.append({item.key or '/'.join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
    return history


@pytest.mark.slow
def test_wandb_offline_run_holds_the_json_log_scalars(call_tool, tmp_path, data_root,
                                                      monkeypatch):
    import wandb

    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_SILENT', 'true')
    # mmengine's backend calls wandb's log_code, which looks through the current folder
    monkeypatch.chdir(tmp_path)
    wandb_dir = tmp_path / 'wandb_runs'
    wandb_dir.mkdir()
    option = vis_backends_option(
        'WandbVisBackend', f",init_kwargs=dict(mode='offline',dir='{wandb_dir}',"
        "project='shapes')")
    try:
        vis_data = train_two_iterations(call_tool, tmp_path, data_root, option)
    finally:
        wandb.teardown()  # stop wandb's service process
    (run_file, ) = glob.glob(str(wandb_dir / 'wandb' / 'offline-run-*' / 'run-*.wandb'))
    assert osp.isdir(osp.join(osp.dirname(run_file), 'files'))
    history = {entry['iter']: entry for entry in wandb_history(run_file) if 'loss' in entry}
    for record in train_records(vis_data):
        logged = history[record['iter']]
        for key in (*LOSS_KEYS, 'lr', 'time', 'epoch'):
            assert logged[key] == pytest.approx(record[key], rel=1e-9), key
