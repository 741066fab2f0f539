"""--amp: which optimizer wrapper is chosen, and that CPU training really runs in bf16."""
import pytest
import torch
from mmengine.config import Config

from mmdet_lite.engine import CPUAmpOptimWrapper, enable_amp


def _cfg(**wrapper) -> Config:
    optim = dict(type='SGD', lr=0.01)
    return Config(dict(optim_wrapper=dict(optimizer=optim, **wrapper)))


def test_enable_amp_on_cpu_uses_bf16_wrapper_without_scaler_args():
    cfg = _cfg(type='AmpOptimWrapper', loss_scale=512.)
    assert enable_amp(cfg, device='cpu') == 'CPUAmpOptimWrapper'
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert cfg.optim_wrapper.optimizer.lr == 0.01


def test_enable_amp_on_cuda_uses_mmengine_fp16_wrapper():
    cfg = _cfg(type='OptimWrapper')
    assert enable_amp(cfg, device='cuda') == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    cfg = _cfg(type='OptimWrapper', loss_scale=128.)
    enable_amp(cfg, device='cuda')
    assert cfg.optim_wrapper.loss_scale == 128.  # a configured scale is kept


def test_enable_amp_rejects_what_it_cannot_honour():
    with pytest.raises(KeyError, match='--amp needs an `optim_wrapper`'):
        enable_amp(Config(dict(model=dict())), device='cpu')
    with pytest.raises(ValueError, match="optim_wrapper.type='MyWrapper'"):
        enable_amp(_cfg(type='MyWrapper'), device='cpu')
    with pytest.raises(ValueError, match="bfloat16.*dtype='float16'"):
        enable_amp(_cfg(type='AmpOptimWrapper', dtype='float16'), device='cpu')
    with pytest.raises(ValueError, match='only bfloat16'):
        CPUAmpOptimWrapper(dtype='float16', optimizer=torch.optim.SGD(
            [torch.nn.Parameter(torch.ones(1))], lr=0.1))


def test_cpu_amp_wrapper_runs_convs_in_bf16_and_keeps_fp32_params():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 2))
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    seen = []
    model[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    x = torch.randn(2, 3, 8, 8)
    before = model[2].weight.detach().clone()

    with wrapper.optim_context(model):
        logits = model(x)  # [2, 2]
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    wrapper.update_params(loss)

    assert seen == [torch.bfloat16]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)  # losses autocast to fp32
    assert model[2].weight.dtype == torch.float32
    assert not torch.equal(model[2].weight, before)  # the step happened
    assert 'loss_scaler' not in wrapper.state_dict()
    model(x)  # outside the context: fp32 again
    assert seen[-1] == torch.float32
