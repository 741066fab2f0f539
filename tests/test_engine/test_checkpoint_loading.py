"""Checkpoint loading on torch >= 2.6: mmengine state loads weights-only; other pickles
need trust."""
import os
import pathlib
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint

from mmdet_lite.engine import UntrustedCheckpointError, load_local_checkpoint, trust_checkpoints
from mmdet_lite.engine.checkpoint import TRUSTED_CHECKPOINTS_ENV, checkpoint_safe_globals


class _TouchOnLoad:
    """Unpickling this creates ``path``: shows whether a file's code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path), )


class _GetattrOnLoad:
    """Unpickles as ``getattr(owner, name)``."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


def _runner_like_checkpoint(path, model: torch.nn.Module) -> None:
    """What mmengine's Runner saves: message hub with HistoryBuffers, numpy scalars."""
    hub = MessageHub(f'ckpt-test-{path}')
    for value in (1.5, 0.5):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(3.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    torch.save(dict(meta=dict(epoch=1, iter=4, seed=np.int64(0)), state_dict=model.state_dict(),
                    message_hub=hub.state_dict(), optimizer=optimizer.state_dict()), path)


def test_runner_checkpoint_loads_weights_only_through_mmengine(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    model = torch.nn.Linear(2, 3)
    _runner_like_checkpoint(path, model)
    # the failure this module fixes: torch's default weights-only load refuses mmengine state
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
        torch.load(path, weights_only=True)

    checkpoint = _load_checkpoint(path, map_location='cpu')  # mmengine's entry point
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert buffer.mean() == pytest.approx(1.0)  # (1.5 + 0.5) / 2
    assert checkpoint['message_hub']['runtime_info']['eta'] == 3.0
    assert checkpoint['meta']['iter'] == 4
    assert 'momentum_buffer' in checkpoint['optimizer']['state'][0]

    fresh = torch.nn.Linear(2, 3)
    load_checkpoint(fresh, path, strict=True)
    assert torch.equal(fresh.weight, model.weight)


def test_untrusted_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, payload=_TouchOnLoad(marker)), path)
    with pytest.raises(UntrustedCheckpointError,
                       match=r"evil.pth' holds pickled objects of types "
                       r'pathlib\..*weights_only=True.*arbitrary code.*'
                       + TRUSTED_CHECKPOINTS_ENV):
        load_local_checkpoint(str(path))
    assert not marker.exists()


def test_trusted_path_allows_full_unpickling(tmp_path, monkeypatch):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'run' / 'custom.pth'
    path.parent.mkdir()
    torch.save(dict(payload=_TouchOnLoad(marker)), path)

    with trust_checkpoints(tmp_path / 'run'):
        assert 'payload' in load_local_checkpoint(str(path))
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UntrustedCheckpointError):  # trust ends with the block
        load_local_checkpoint(str(path))

    monkeypatch.setenv(TRUSTED_CHECKPOINTS_ENV, os.pathsep.join(['/elsewhere', str(path)]))
    load_local_checkpoint(str(path))
    assert marker.exists()


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    from mmengine.logging import HistoryBuffer
    path = tmp_path / 'getattr.pth'
    torch.save(dict(ok=_GetattrOnLoad(HistoryBuffer, 'mean')), path)
    assert load_local_checkpoint(str(path))['ok'] is HistoryBuffer.mean

    torch.save(dict(bad=_GetattrOnLoad(HistoryBuffer, 'update')), path)
    with pytest.raises(UntrustedCheckpointError, match="getattr\\('HistoryBuffer', 'update'\\)"):
        load_local_checkpoint(str(path))


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / 'objects.pth'
    torch.save(dict(arr=np.array([{'a': 1}], dtype=object)), path)
    with pytest.raises(UntrustedCheckpointError, match='objects.pth'):
        load_local_checkpoint(str(path))


def test_missing_and_corrupt_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint file not found: .*nope.pth'):
        load_local_checkpoint(str(tmp_path / 'nope.pth'))

    path = tmp_path / 'truncated.pth'
    torch.save(dict(w=torch.ones(100)), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.pth' could not be loaded"):
        load_local_checkpoint(str(path))


def test_safe_globals_cover_numpy_1_and_2_names():
    names = {name for _, name in checkpoint_safe_globals()}
    for core in ('numpy.core', 'numpy._core'):
        assert f'{core}.multiarray._reconstruct' in names
        assert f'{core}.multiarray.scalar' in names
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names
    assert not any('Object' in name for name in names)
