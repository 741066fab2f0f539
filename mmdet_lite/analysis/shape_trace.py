"""Trace the output shape of every module during one forward pass.

The walkthrough people write by hand when they study a detector ("layer4 gives
[2, 2048, 24, 24], the FPN turns it into five 256-channel maps ..."), produced by forward
hooks instead:

    FasterRCNN -> ([1, 256, 192, 192], ...)
      backbone -> ([1, 256, 192, 192], [1, 512, 96, 96], [1, 1024, 48, 48], [1, 2048, 24, 24])
        backbone.conv1 -> [1, 64, 384, 384]
        ...

Example:
    >>> inputs, samples = dummy_det_batch(model, batch_size=1, height=768, width=768)
    >>> records = trace_shapes(model, lambda: model(inputs, samples, mode='tensor'))
    >>> print(format_shape_tree(records))
"""
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from mmdet_lite.structures import DetDataSample

_MAX_ITEMS = 8  # longer sequences are cut in the description: '..., (12 items)'


@dataclass
class ShapeRecord:
    """One module call: where it sits in the model and what it returned.

    Attributes:
        name (str): Dotted module name (``'backbone.layer4'``); ``''`` for the model itself.
        type_name (str): Class name of the module (``'ResLayer'``).
        depth (int): Call depth: how many watched calls this one runs inside (0 for the
            model's own forward, 1 for ``backbone`` inside it ...). A module called through
            ``.forward()`` rather than ``__call__`` is not seen, so its children sit one
            level higher.
        output (str): The output's shapes, see :func:`describe_output`. ``'?'`` until the
            call returns (or if it raised).
    """
    name: str
    type_name: str
    depth: int
    output: str = '?'


def describe_output(value: Any) -> str:
    """A short description of a module output: the shapes of the tensors in it.

    Args:
        value: A tensor, a (nested) tuple/list/dict of them, an mmengine data element
            (``InstanceData``, ``DetDataSample``) or anything else.

    Returns:
        str: ``'[2, 256, 48, 48]'`` for a tensor, ``'([..], [..])'`` for a tuple, ``'[[..],
        [..]]'`` for a list, ``'{key: [..]}'`` for a dict, ``'InstanceData(bboxes=[1000,
        4], ...)'`` for a data element and the type name otherwise.
    """
    if isinstance(value, Tensor):
        return str(list(value.shape))
    if isinstance(value, (tuple, list)):
        items = [describe_output(v) for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append(f'... ({len(value)} items)')
        left, right = ('(', ')') if isinstance(value, tuple) else ('[', ']')
        return left + ', '.join(items) + (',' if len(value) == 1 and left == '(' else '') + right
    if isinstance(value, dict):
        return '{' + ', '.join(f'{k}: {describe_output(v)}' for k, v in value.items()) + '}'
    if value is None:
        return 'None'
    fields = getattr(value, 'all_items', None)  # mmengine BaseDataElement
    if callable(fields):
        inner = ', '.join(f'{k}={describe_output(v)}' for k, v in fields()
                          if isinstance(v, (Tensor, tuple, list, dict)) or
                          callable(getattr(v, 'all_items', None)))
        return f'{type(value).__name__}({inner})'
    return type(value).__name__


def trace_shapes(model: nn.Module, run: Callable[[], Any],
                 max_depth: Optional[int] = None) -> List[ShapeRecord]:
    """Run ``run()`` with hooks on ``model``'s modules and record what each call returns.

    Records are in call order (a module before the modules it calls), one per call: a
    module called on five FPN levels appears five times.

    Args:
        model (nn.Module): The model whose modules to watch.
        run (Callable): Runs the forward pass, e.g. ``lambda: model(x, mode='tensor')``.
        max_depth (int, optional): Watch only modules whose dotted name is at most this
            deep (``backbone`` is 1, ``backbone.layer4`` is 2); all when None.
            Defaults to None.

    Returns:
        list[ShapeRecord]: One per module call.
    """
    if max_depth is not None and max_depth < 0:
        raise ValueError(f'max_depth must be >= 0 or None, got {max_depth}')
    records: List[ShapeRecord] = []
    calls: List[ShapeRecord] = []  # the watched calls now running, outermost first

    def before(name: str):
        def hook(module: nn.Module, args) -> None:
            record = ShapeRecord(name, type(module).__name__, depth=len(calls))
            records.append(record)
            calls.append(record)
        return hook

    def after(module: nn.Module, args, output) -> None:
        calls.pop().output = describe_output(output)  # calls nest, so the last is ours

    handles = []
    for name, module in model.named_modules():
        name_depth = 0 if name == '' else name.count('.') + 1
        if max_depth is not None and name_depth > max_depth:
            continue
        handles.append(module.register_forward_pre_hook(before(name)))
        handles.append(module.register_forward_hook(after))
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return records


def format_shape_tree(records: List[ShapeRecord], show_types: bool = False) -> str:
    """Lay the records out as a tree indented by call depth, one ``name -> shapes`` line
    per call.

    Args:
        records (list[ShapeRecord]): From :func:`trace_shapes`.
        show_types (bool): Append each module's class name. Defaults to False.

    Returns:
        str: The tree; the model itself is named by its class.
    """
    lines = []
    for record in records:
        name = record.name or record.type_name
        suffix = f'  ({record.type_name})' if show_types and record.name else ''
        lines.append(f'{"  " * record.depth}{name} -> {record.output}{suffix}')
    return '\n'.join(lines)


def dummy_det_batch(model: nn.Module, batch_size: int, height: int,
                    width: int) -> Tuple[Tensor, list]:
    """A random batch as the model's data preprocessor gives it, for analysis tools.

    Args:
        model (nn.Module): A detector (with a ``data_preprocessor``).
        batch_size (int): Number of images.
        height (int): Image height in pixels.
        width (int): Image width in pixels.

    Returns:
        tuple: ``inputs`` [B, 3, H', W'] (normalized, padded to the preprocessor's
        divisor) and B ``DetDataSample`` with ``img_shape = ori_shape = (H, W)``,
        ``scale_factor = (1, 1)`` and the batch/pad shapes the preprocessor sets.
    """
    for arg, value in (('batch_size', batch_size), ('height', height), ('width', width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'{arg} must be a positive int, got {value!r}')
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, height, width), generator=generator,
                            dtype=torch.uint8) for _ in range(batch_size)]
    samples = [DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                           scale_factor=(1.0, 1.0)))
               for _ in range(batch_size)]
    data = dict(inputs=images, data_samples=samples)
    preprocessor = getattr(model, 'data_preprocessor', None)
    if preprocessor is not None:
        data = preprocessor(data, False)
    else:
        data['inputs'] = torch.stack(images).float()
    return data['inputs'], data['data_samples']
