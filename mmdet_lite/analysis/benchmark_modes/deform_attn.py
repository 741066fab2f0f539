"""``benchmark.py deform_attn``: ``MultiScaleDeformableAttention`` (plain torch) at
DINO-4scale sizes.

Two uses are timed: the decoder's cross-attention (Q queries, box references) and the
encoder's self-attention (every pixel of the 4 levels a query), each forward under
``no_grad`` and forward + backward, with peak memory (CPU: RSS above the phase's start;
CUDA: ``max_memory_allocated``). The sizes and inputs come from
:mod:`mmdet_lite.analysis.benchmark` (``level_shapes``, ``deform_attn_inputs``).
"""
import argparse

import torch

from ..benchmark import (deform_attn_inputs, format_deform_attn_rows, level_shapes,
                         load_average, machine_summary, measure, trim_heap)


def run_deform_attn(args: argparse.Namespace) -> None:
    """Time both cases and print the report (flags: ``benchmark.py deform_attn --help``)."""
    from mmdet_lite.models.layers.transformer import MultiScaleDeformableAttention
    h, w = args.shape
    if h <= 0 or w <= 0 or args.queries < 1 or min(args.batch) < 1:
        raise ValueError(f'--shape, --queries and --batch must be positive, got {h} {w}, '
                         f'{args.queries}, {args.batch}')
    if args.threads < 1:
        raise ValueError(f'--threads must be >= 1, got {args.threads}')
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = level_shapes((h, w))
    torch.manual_seed(0)
    # DINO's attention: 256 channels, 8 heads, 4 levels, 4 points, dropout 0 in its config.
    attn = MultiScaleDeformableAttention(embed_dims=256, num_heads=8, num_levels=len(shapes),
                                         num_points=4, dropout=0., batch_first=True).to(device)
    spatial_shapes = torch.tensor(shapes, device=device)
    load_before = load_average()
    rows = []
    for batch in args.batch:
        for case, (query, value, ref) in deform_attn_inputs(shapes, batch, args.queries,
                                                            device).items():
            mask = torch.zeros(value.shape[:2], dtype=torch.bool, device=device)
            self_attn = query is value

            def forward(q, v):
                return attn(q, value=None if self_attn else v, reference_points=ref,
                            spatial_shapes=spatial_shapes, key_padding_mask=mask)

            def infer():
                attn.eval()
                with torch.no_grad():
                    forward(query, value)

            def train():
                attn.train()
                attn.zero_grad(set_to_none=True)
                # Query and value come from earlier layers: they need gradients too.
                q = query.detach().requires_grad_()
                v = q if self_attn else value.detach().requires_grad_()
                forward(q, v).sum().backward()

            for phase, fn in (('forward', infer), ('fwd+bwd', train)):
                trim_heap()  # so that the next phase's peak is not hidden in freed memory
                result = measure(fn, phase, case, args.repeat, args.warmup, device)
                rows.append((batch, result))

    print('== mmdet_lite benchmark: deform_attn ==')
    print(f'module       : MultiScaleDeformableAttention(256, 8 heads, {len(shapes)} levels, '
          '4 points), plain torch (F.grid_sample)')
    print(f'machine      : {machine_summary(args.threads)}; device {device}')
    print(f'load average : {load_before} (start) / {load_average()} (end)')
    print(f'levels       : {" ".join(f"{lh}x{lw}" for lh, lw in shapes)} from a {h}x{w} input '
          f'({sum(a * b for a, b in shapes)} keys); decoder queries {args.queries}')
    print(f'repeat/warmup: {args.repeat} / {args.warmup}')
    print(format_deform_attn_rows(rows, device))
