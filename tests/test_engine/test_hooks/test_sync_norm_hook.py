"""SyncNormHook: BN states averaged over two gloo ranks; nothing in a single process."""
import os
import types

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mmdet_lite.engine.hooks import SyncNormHook
from mmdet_lite.engine.hooks.sync_norm_hook import get_norm_states
from mmdet_lite.registry import HOOKS


def _model(rank: int) -> nn.Sequential:
    """Conv + BN + GN; the BN's states hold rank-dependent values."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.GroupNorm(1, 2))
    with torch.no_grad():
        model[0].weight.fill_(10.0 + rank)
        model[1].running_mean.copy_(torch.tensor([1.0, 2.0]) * (rank + 1))  # r0: 1,2  r1: 2,4
        model[1].running_var.fill_(4.0 * rank + 1)  # r0: 1, r1: 5
        model[1].weight.fill_(rank)
        model[1].num_batches_tracked.fill_(3 + 2 * rank)  # 3 and 5
    return model


def test_get_norm_states_lists_batchnorm_entries_only():
    states = get_norm_states(_model(0))
    assert list(states) == ['1.weight', '1.bias', '1.running_mean', '1.running_var',
                            '1.num_batches_tracked']


def test_single_process_leaves_the_model_alone():
    hook = HOOKS.build(dict(type='SyncNormHook'))
    assert isinstance(hook, SyncNormHook)
    model = _model(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hook.before_val_epoch(types.SimpleNamespace(model=model))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        model = _model(rank)
        SyncNormHook().before_val_epoch(types.SimpleNamespace(model=model))
        torch.save(model.state_dict(), os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_end_with_the_mean_of_their_norm_states(tmp_path):
    # fork: the children reuse the imported modules (spawn would import torch again)
    mp.start_processes(_worker, args=(str(tmp_path / 'init'), str(tmp_path)), nprocs=2,
                       start_method='fork')
    for rank in (0, 1):
        state = torch.load(tmp_path / f'rank{rank}.pth')
        torch.testing.assert_close(state['1.running_mean'], torch.tensor([1.5, 3.0]))
        torch.testing.assert_close(state['1.running_var'], torch.tensor([3.0, 3.0]))
        torch.testing.assert_close(state['1.weight'], torch.tensor([0.5, 0.5]))
        assert state['1.num_batches_tracked'].dtype == torch.long
        assert state['1.num_batches_tracked'].item() == 4
        # the conv is not a norm layer: each rank keeps its own weights
        assert torch.all(state['0.weight'] == 10.0 + rank)
