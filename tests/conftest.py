"""Shared pytest setup: deterministic seeds and one torch thread for a 2-core machine."""
import os
import random

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared with the
# subprocesses some tests start, spinning threads slow everything down many times over.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import numpy as np
import pytest
import torch

# One thread: tests use tiny tensors, and several tests run subprocesses (DDP ranks,
# tools) beside this process on a 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
