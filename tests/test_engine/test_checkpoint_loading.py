"""Checkpoint loading: mmengine state loads weights-only with an allow-list; other pickles
are refused unless the one file is named explicitly; non-checkpoints say what they are."""
import os
import pathlib
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint

from mmdet_lite.engine import (CorruptCheckpointError, UntrustedCheckpointError,
                               allow_unsafe_checkpoint, load_local_checkpoint)
from mmdet_lite.engine.checkpoint import checkpoint_safe_globals


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
                       r'--trust-checkpoint .*evil.pth.*allow_unsafe_checkpoint'):
        load_local_checkpoint(str(path))
    assert not marker.exists()


@pytest.mark.parametrize('fmt', ['torch_legacy', 'plain_pickle'])
def test_legacy_and_plain_pickles_are_refused_too(tmp_path, fmt):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    payload = dict(state_dict={}, payload=_TouchOnLoad(marker))
    if fmt == 'torch_legacy':
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(UntrustedCheckpointError, match=r'pathlib\..*--trust-checkpoint'):
        load_local_checkpoint(str(path))
    assert not marker.exists()


def test_only_the_named_unchanged_file_may_be_fully_unpickled(tmp_path):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'run' / 'custom.pth'
    path.parent.mkdir()
    torch.save(dict(payload=_TouchOnLoad(marker)), path)

    with allow_unsafe_checkpoint(tmp_path / 'run' / '..' / 'run' / 'custom.pth'):
        assert 'payload' in load_local_checkpoint(str(path))
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UntrustedCheckpointError):  # allowed only inside the block
        load_local_checkpoint(str(path))

    with pytest.raises(FileNotFoundError, match='not a file.*not folders'):
        with allow_unsafe_checkpoint(tmp_path / 'run'):  # a folder is never trusted
            pass
    other = tmp_path / 'run' / 'other.pth'  # a neighbour of an allowed file is not allowed
    torch.save(dict(payload=_TouchOnLoad(marker)), other)
    with allow_unsafe_checkpoint(path):
        with pytest.raises(UntrustedCheckpointError):
            load_local_checkpoint(str(other))
        # the allowed file replaced by another after it was named: refused
        os.replace(other, path)
        with pytest.raises(UntrustedCheckpointError):
            load_local_checkpoint(str(path))
    assert not marker.exists()


def test_trust_is_never_taken_from_the_environment(tmp_path, monkeypatch):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'custom.pth'
    torch.save(dict(payload=_TouchOnLoad(marker)), path)
    # the variable earlier versions read: it must not trust anything any more
    monkeypatch.setenv('MMDET_LITE_TRUSTED_CHECKPOINTS', str(tmp_path))
    with pytest.raises(UntrustedCheckpointError):
        load_local_checkpoint(str(path))
    assert not marker.exists()


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


def test_missing_file_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint file not found: .*nope.pth'):
        load_local_checkpoint(str(tmp_path / 'nope.pth'))


def _truncated_zip(path):
    torch.save(dict(w=torch.ones(100)), path)
    path.write_bytes(path.read_bytes()[:200])


def _truncated_legacy(path):
    torch.save(dict(w=torch.ones(100)), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:60])


@pytest.mark.parametrize('make, expected', [
    (lambda p: p.write_bytes(b''), r'empty \(0 bytes\)'),
    (lambda p: p.write_text('<!DOCTYPE html>\n<html><body>Sign in</body></html>'),
     r'is an HTML page \(\d+ bytes, begins "<!DOCTYPE html>"\).*web page'),
    (lambda p: p.write_text('version https://git-lfs.github.com/spec/v1\noid sha256:ab'),
     r'is a text file .*begins "version https://git-lfs'),
    (_truncated_zip, r'is truncated \(200 bytes\).*zip archive.*end is missing'),
    (_truncated_legacy, r'\(60 bytes\) could not be read.*truncated or damaged'),
    (lambda p: p.write_bytes(bytes(range(1, 100))), r'is not a PyTorch checkpoint \(99 bytes'),
], ids=['empty', 'html', 'text', 'truncated_zip', 'truncated_legacy', 'binary'])
def test_non_checkpoints_say_what_the_file_looks_like_and_never_suggest_trust(
        tmp_path, make, expected):
    path = tmp_path / 'model.pth'
    make(path)
    with pytest.raises(CorruptCheckpointError, match=expected) as info:
        load_local_checkpoint(str(path))
    assert 'model.pth' in str(info.value)
    assert 'trust' not in str(info.value).lower()
    assert not isinstance(info.value, UntrustedCheckpointError)


def test_safe_globals_cover_numpy_1_and_2_names():
    names = {name for _, name in checkpoint_safe_globals()}
    for core in ('numpy.core', 'numpy._core'):
        assert f'{core}.multiarray._reconstruct' in names
        assert f'{core}.multiarray.scalar' in names
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names
    assert not any('Object' in name for name in names)
