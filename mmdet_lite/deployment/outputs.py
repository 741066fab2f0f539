"""Flat tensor tuples <-> the nested raw outputs of a head, and their names.

Heads return groups of per-level tensors (``(cls_scores, bbox_preds)``, each a list over
levels) and sometimes a bare tensor (RTMDet-Ins's ``mask_feat``). An exported graph returns
a flat tuple; a *layout* records how to rebuild the groups: one entry per group, the number
of levels, or None for a bare tensor.
"""
import inspect
from typing import Callable, List, Optional, Sequence, Tuple

from torch import Tensor

Layout = List[Optional[int]]


def flatten_outputs(outs: Sequence) -> Tuple[Tuple[Tensor, ...], Layout]:
    """``((a0, a1), (b0, b1), c)`` -> ``((a0, a1, b0, b1, c), [2, 2, None])``."""
    flat, layout = [], []
    for group in outs:
        if isinstance(group, Tensor):
            flat.append(group)
            layout.append(None)
        else:
            flat.extend(group)
            layout.append(len(group))
    return tuple(flat), layout


def unflatten_outputs(flat: Sequence[Tensor], layout: Layout) -> List:
    """Inverse of :func:`flatten_outputs` (groups come back as lists)."""
    expected = sum(1 if size is None else size for size in layout)
    if len(flat) != expected:
        raise ValueError(f'{len(flat)} outputs do not fit the layout {layout} '
                         f'({expected} tensors)')
    groups, start = [], 0
    for size in layout:
        if size is None:
            groups.append(flat[start])
            start += 1
        else:
            groups.append(list(flat[start:start + size]))
            start += size
    return groups


def output_names(layout: Layout, predict_by_feat: Callable) -> List[str]:
    """Names of the flat outputs: ``predict_by_feat``'s parameter names, ``_{level}`` added.

    RetinaNet: ``cls_scores_0 .. cls_scores_4, bbox_preds_0 .. bbox_preds_4``.
    """
    params = [name for name, p in inspect.signature(predict_by_feat).parameters.items()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and name != 'self']
    names = []
    for i, size in enumerate(layout):
        group = params[i] if i < len(params) else f'output{i}'
        names.extend([group] if size is None else [f'{group}_{lvl}' for lvl in range(size)])
    return names
