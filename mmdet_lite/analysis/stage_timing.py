"""Where the inference time of a single-stage detector goes, and how fast the test loop runs.

Used by ``tools/analysis_tools/benchmark.py stages`` and ``benchmark.py test_loop``. A
single-stage detector's ``predict`` is ``backbone -> neck -> head forward -> post-process``
(score filtering, top-k, box decoding, NMS, rescaling); :func:`single_stage_steps` gives a
closure per stage so that each can be timed on its own, and one for the whole ``predict`` to
check that the parts add up.
"""
import copy
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.hooks import Hook
from torch import Tensor, nn


def single_stage_steps(model: nn.Module, inputs: Tensor,
                       data_samples: list) -> Dict[str, Callable[[], object]]:
    """Closures timing each stage of a single-stage detector's inference.

    Each stage's input is computed once here, so a closure runs only its own stage. All run
    under ``torch.no_grad`` with the model in eval mode.

    Args:
        model (nn.Module): A ``SingleStageDetector`` (``backbone``, optional ``neck``,
            ``bbox_head`` with ``predict_by_feat``).
        inputs (Tensor): Normalised, padded images [B, 3, H, W].
        data_samples (list[DetDataSample]): Their samples (``img_shape``, ``scale_factor``
            ...), as the data preprocessor leaves them.

    Returns:
        dict[str, callable]: ``backbone``, ``neck`` (absent without a neck),
        ``head_forward``, ``post_process`` and ``predict`` (the whole ``predict`` mode), in
        that order.
    """
    for name in ('backbone', 'bbox_head'):
        if not hasattr(model, name):
            raise TypeError(f'stage timing needs a single-stage detector with a {name}; '
                            f'{type(model).__name__} has none')
    model.eval()
    metas = [s.metainfo for s in data_samples]
    with torch.no_grad():
        feats = model.backbone(inputs)  # tuple of [B, C_i, H / s_i, W / s_i]
        neck_feats = model.neck(feats) if model.with_neck else feats
        head_outs = model.bbox_head(neck_feats)  # (cls_scores, bbox_preds, ...) per level

    def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
        def run():
            with torch.no_grad():
                return fn()
        return run

    steps = {'backbone': no_grad(lambda: model.backbone(inputs))}
    if model.with_neck:
        steps['neck'] = no_grad(lambda: model.neck(feats))
    steps['head_forward'] = no_grad(lambda: model.bbox_head(neck_feats))
    steps['post_process'] = no_grad(lambda: model.bbox_head.predict_by_feat(
        *head_outs, batch_img_metas=metas, rescale=True))
    steps['predict'] = no_grad(lambda: model(inputs, data_samples, mode='predict'))
    return steps


def fuse_conv_bn_untied(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the conv before it (mmcv's ``fuse_conv_bn``), in place,
    after giving each shared conv its own copy.

    Folding rewrites the conv's weights with its BN's statistics, so a conv shared by
    several BNs (RTMDetSepBNHead's ``share_conv``: one conv per tower position for every
    level, one BN per level) would take every level's statistics in turn and be wrong for
    all but none of them. Untying first keeps each level's output as it was.

    Args:
        model (nn.Module): Any model, in eval mode (BN running statistics are folded).

    Returns:
        nn.Module: The same model object, fused.
    """
    from mmcv.cnn import fuse_conv_bn
    seen = set()
    for module in model.modules():
        conv = getattr(module, 'conv', None)
        if isinstance(conv, nn.Conv2d) and isinstance(getattr(module, 'bn', None),
                                                      nn.modules.batchnorm._BatchNorm):
            if id(conv) in seen:
                module.conv = copy.deepcopy(conv)
            seen.add(id(module.conv))
    return fuse_conv_bn(model)


class LoopTimer(Hook):
    """Records when a test loop starts, when its last batch ends and how many images it saw.

    Registered as a runner hook by :func:`time_test_loop`; the time between
    ``before_test_epoch`` and the last ``after_test_iter`` is the loop without evaluation,
    ``after_test_epoch`` adds the evaluator's time.
    """
    def __init__(self) -> None:
        self.start: Optional[float] = None
        self.last_batch_end: Optional[float] = None
        self.end: Optional[float] = None
        self.num_images = 0

    def before_test_epoch(self, runner) -> None:
        self.start = time.perf_counter()

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.num_images += len(outputs) if outputs is not None else 0
        self.last_batch_end = time.perf_counter()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self.end = time.perf_counter()


def time_test_loop(runner) -> Tuple[Dict[str, float], LoopTimer]:
    """Run ``runner.test()`` and return its metrics and the loop's timings.

    Args:
        runner (mmengine.runner.Runner): A runner built from a config with a test loop.

    Returns:
        tuple[dict, LoopTimer]: The metrics and the timer (``start``, ``last_batch_end``,
        ``end`` from ``time.perf_counter``, ``num_images``).
    """
    timer = LoopTimer()
    runner.register_hook(timer, priority='LOWEST')  # after every other hook of a point
    metrics = runner.test()
    return metrics, timer


def format_stage_rows(rows: List[Tuple[str, float, float]]) -> str:
    """``stage  median_ms  share`` lines; the share is of the whole ``predict``."""
    whole = dict((name, ms) for name, ms, _ in rows).get('predict', float('nan'))
    lines = [f'{"stage":<14}{"median_ms":>11}{"cpu_ms":>10}{"of predict":>12}']
    for name, ms, cpu_ms in rows:
        lines.append(f'{name:<14}{ms:>11.1f}{cpu_ms:>10.1f}{ms / whole:>11.0%}')
    return '\n'.join(lines)
