"""Shared pytest setup: deterministic seeds and one torch thread for a 2-core machine."""
import os
import random
import subprocess

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared with the
# subprocesses some tests start, spinning threads slow everything down many times over.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import numpy as np
import pytest
import torch

# One thread: tests use tiny tensors, and several tests run subprocesses (DDP ranks,
# tools) beside this process on a 2-core machine.
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: starts subprocesses or trains for many iterations; '
        '`pytest -m "not slow"` leaves these out for a quick check of the library')


_MEASURED_SLOW = os.path.join(os.path.dirname(__file__), 'measured_slow.txt')


def pytest_collection_modifyitems(config, items):
    """Mark slow the tests listed in measured_slow.txt (measured, not guessed)."""
    with open(_MEASURED_SLOW) as f:
        slow = {line.rstrip('\n') for line in f if line.strip() and not line.startswith('#')}
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def call_tool(monkeypatch, capsys):
    """Run a tool's ``main(argv)`` in this process; returns a finished ``CompletedProcess``
    (``returncode`` is the ``SystemExit`` code, 0 when ``main`` returns).

    ``call_tool('train', argv)``, ``call_tool('test', argv)`` or
    ``call_tool('demo/image_demo.py', argv)``. It checks the same error wrapper a
    subprocess would, without paying for a new interpreter.
    """
    from helpers_tools import load_script
    monkeypatch.setenv('LOCAL_RANK', '0')  # parse_args would otherwise set it for good

    def call(tool: str, argv) -> subprocess.CompletedProcess:
        code = 0
        try:
            load_script(tool).main([str(a) for a in argv])
        except SystemExit as exit_info:
            code = exit_info.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out, err)

    return call
