"""Upgrade a checkpoint trained with mmdetection 1.x / early 2.x to today's key layout.

The checkpoint must carry ``meta.config`` (the training config's text) and
``meta.mmdet_version``, as mmdetection's Runner saved them; they tell which rules apply.
``--num-classes`` is the old model's class count *with* background (81 for COCO). The
mechanical rules, as in mmdetection 3.3's tool:

1. Two-stage detectors (the config's model has an ``rpn_head``): keys starting with
   ``bbox_head``, ``mask_head``, ``semantic_head``, ``grid_head`` or ``mask_iou_head`` move
   under ``roi_head.`` (mmdetection 2.0 introduced the RoI head).
2. Background moves from the first class to the last (1.x used label 0 for background,
   2.x+ uses ``num_classes``) in the classifiers ``fc_cls``, ``conv_cls``, ``retina_cls``,
   ``fcos_cls``, ``fovea_cls`` and, for checkpoints older than 2.5.0 (which unified the
   RPN's class order), ``rpn_cls``; and in SSD's ``cls_convs.<i>``. An output count equal
   to ``num_classes`` has its first row moved to the end; a multiple of it (a softmax
   conv, one group of classes per anchor) has that done within each group; any other
   count (sigmoid heads, no background channel) is left as it is.
3. Class-specific box regression drops the background's deltas: ``fc_reg`` (and, from
   2.5.0 on, ``rpn_reg``, as mmdetection does; its channels are never a multiple of
   ``num_classes`` in practice) with an output count ``num_classes * k`` loses its first
   ``k`` outputs, unless the config's bbox head is class-agnostic (``reg_class_agnostic``
   or a cascade's list of heads).
4. Mask heads' ``conv_logits`` lose their first (background) mask channel the same way.
5. RetinaNet checkpoints from mmdetection <= 0.5.3: ``cls_convs.<i>.weight/bias`` and
   ``reg_convs.<i>.weight/bias`` become ``...<i>.conv.weight/bias`` (now ConvModules).

Where this differs from mmdetection 3.3's tool, on purpose:

- ``meta.config`` is read without running it: only assignments of literals, ``dict(...)``
  calls, earlier names and arithmetic on numbers are evaluated (mmdetection executes the
  text, which would run any code stored in the checkpoint). Its first line, the config's
  file name in 1.x checkpoints, is skipped as mmdetection does; a pretty-printed 2.x
  config (no such line) is read whole. The bbox head is looked up at ``model.bbox_head``
  (1.x) or ``model.roi_head.bbox_head`` (2.x).
- Versions are compared as numbers; mmdetection compares strings, so it treats e.g.
  ``'2.10.0'`` as older than ``'2.5.0'``.
- A bias is reordered or truncated exactly as its weight's output channels. mmdetection
  rotates every classifier bias as one vector (wrong for a multi-anchor softmax conv and
  for a sigmoid ``rpn_cls``/``retina_cls``, whose weights it leaves alone) and keeps the
  *first* ``num_classes - 1`` groups of ``fc_reg``/``conv_logits`` biases while dropping
  the first group of their weights, which pairs each class's weights with the next
  class's bias.

The input is read with ``torch.load(weights_only=True)`` and mmdet_lite's allow-list;
``--trust-checkpoint FILE`` allows full unpickling (which can run code) of a file you trust.
"""
import argparse
import ast
import operator
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Tuple

from mmdet_lite.apis.cli import exit_on_user_error

EXAMPLE = """example:
  python tools/model_converters/upgrade_model_version.py \\
      faster_rcnn_r50_fpn_1x_mmdet_v1.pth faster_rcnn_r50_fpn_1x_upgraded.pth --num-classes 81
"""
ROI_HEAD_PARTS = ('bbox_head', 'mask_head', 'semantic_head', 'grid_head', 'mask_iou_head')
CLS_LAYERS = ('conv_cls', 'retina_cls', 'fc_cls', 'fcos_cls', 'fovea_cls')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Upgrade model version', epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('in_file', help='input checkpoint file')
    parser.add_argument('out_file', help='output checkpoint file')
    parser.add_argument('--num-classes', type=int, default=81,
                        help='number of classes of the original model (with background)')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling (can run code) of this checkpoint file, '
                        'one you trust that holds objects beyond the weights-only allow-list')
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------
# Reading the stored config without executing it

class _NotLiteral(Exception):
    """An expression outside the literal subset (a call, an import, an attribute, ...)."""


_NUMBER_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
               ast.Mod: operator.mod}
_MAX_INT = 10**18  # numbers only, and bounded: `x = x * x` repeated must not eat the memory


def _evaluate(node: ast.AST, names: Dict[str, object]):
    """Value of a config expression made of literals, ``dict()``, known names and numbers."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise _NotLiteral(node.id)
        return names[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        if any(isinstance(item, ast.Starred) for item in node.elts):
            raise _NotLiteral('*')
        items = [_evaluate(item, names) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        value = {}
        for key, item in zip(node.keys, node.values):
            if key is None:  # {**other}
                value.update(_as_dict(_evaluate(item, names)))
            else:
                value[_evaluate(key, names)] = _evaluate(item, names)
        return value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == 'dict' and not node.args:
        value = {}
        for keyword in node.keywords:
            if keyword.arg is None:  # dict(**other)
                value.update(_as_dict(_evaluate(keyword.value, names)))
            else:
                value[keyword.arg] = _evaluate(keyword.value, names)
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _number(-_number(_evaluate(node.operand, names))
                       if isinstance(node.op, ast.USub) else _evaluate(node.operand, names))
    if isinstance(node, ast.BinOp) and type(node.op) in _NUMBER_OPS:
        left = _number(_evaluate(node.left, names))
        right = _number(_evaluate(node.right, names))
        try:
            return _number(_NUMBER_OPS[type(node.op)](left, right))
        except ArithmeticError as err:
            raise _NotLiteral(str(err)) from err
    raise _NotLiteral(type(node).__name__)


def _as_dict(value) -> dict:
    if not isinstance(value, dict):
        raise _NotLiteral('** of a non-dict')
    return value


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, int) and abs(value) > _MAX_INT):
        raise _NotLiteral('not a bounded number')
    return value


def read_config_model(config_text: str) -> dict:
    """The ``model`` dict of a config's text, evaluated without running any of its code.

    Top-level ``name = expression`` statements are evaluated in order when the expression
    is made of literals, ``dict(...)``, names assigned before and arithmetic on numbers;
    other statements (imports, calls, ``_base_`` merging) are skipped.

    Args:
        config_text (str): ``meta['config']`` of a checkpoint.

    Returns:
        dict: The config's ``model``.

    Raises:
        ValueError: The text is not Python, or its ``model`` is not readable this way.
    """
    try:
        tree = ast.parse(config_text)
    except SyntaxError:
        # 1.x stored the config file's name as the first line (mmdetection comments it
        # out); with several files each text starts with its name
        lines = ['# ' + line if re.fullmatch(r'\s*\S+\.py\s*', line) else line
                 for line in config_text.splitlines()]
        if lines:
            lines[0] = '# ' + lines[0]
        try:
            tree = ast.parse('\n'.join(lines))
        except SyntaxError as err:
            raise ValueError(f'meta.config is not a Python config (line {err.lineno}: '
                             f'{err.msg})') from None
    names: Dict[str, object] = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign)
                and all(isinstance(t, ast.Name) for t in statement.targets)):
            continue
        targets = [target.id for target in statement.targets]
        try:
            value = _evaluate(statement.value, names)
        except _NotLiteral:
            for target in targets:  # an earlier value of the name would be stale
                names.pop(target, None)
            continue
        for target in targets:
            names[target] = value
    model = names.get('model')
    if not isinstance(model, dict):
        raise ValueError('meta.config has no `model = dict(...)` made of plain values '
                         '(literals, dict(...), names); it is not executed, for safety')
    return model


def parse_config(config_text: str) -> Tuple[bool, bool, bool, bool]:
    """What the stored config says about the model, for the upgrade rules.

    Returns:
        tuple[bool]: ``(is_two_stage, is_ssd, is_retina, reg_cls_agnostic)``.
    """
    model = read_config_model(config_text)
    is_two_stage = 'rpn_head' in model
    bbox_head = model.get('bbox_head')
    if bbox_head is None and isinstance(model.get('roi_head'), dict):
        bbox_head = model['roi_head'].get('bbox_head')  # 2.x layout
    head_type = bbox_head.get('type') if isinstance(bbox_head, dict) else None
    is_ssd = not is_two_stage and head_type == 'SSDHead'
    is_retina = not is_two_stage and head_type == 'RetinaHead'
    reg_cls_agnostic = False
    if is_two_stage:
        if isinstance(bbox_head, (list, tuple)):  # cascade heads regress class-agnostic
            reg_cls_agnostic = True
        elif isinstance(bbox_head, dict):
            reg_cls_agnostic = bool(bbox_head.get('reg_class_agnostic', False))
    return is_two_stage, is_ssd, is_retina, reg_cls_agnostic


def version_tuple(version: str) -> Tuple[int, int, int]:
    """``'1.0rc0+e3f3e5e'`` -> ``(1, 0, 0)``: the release numbers, padded to three."""
    match = re.match(r'\s*v?(\d+(?:\.\d+)*)', str(version))
    if match is None:
        raise ValueError(f'meta.mmdet_version {version!r} is not a version like 1.0.0')
    numbers = [int(part) for part in match.group(1).split('.')][:3]
    return tuple(numbers + [0] * (3 - len(numbers)))


# ---------------------------------------------------------------------------------------
# Tensor rules

def reorder_cls_channel(val, num_classes: int = 81):
    """Move the background class from first to last along the output channels (dim 0).

    Args:
        val (Tensor): A classifier's weight ``[C_out, ...]`` or bias ``[C_out]``.
        num_classes (int): Classes with background.

    Returns:
        Tensor: ``val`` with, in each group of ``num_classes`` outputs, the first moved to
        the end; ``val`` itself when ``C_out`` is no multiple of ``num_classes``.
    """
    import torch
    out_channels = val.shape[0]
    if out_channels % num_classes != 0:  # sigmoid / class-agnostic: no background channel
        return val
    groups = val.reshape(out_channels // num_classes, num_classes, *val.shape[1:])
    return torch.cat((groups[:, 1:], groups[:, :1]), dim=1).reshape(val.shape)


def drop_background_channel(val, num_classes: int = 81):
    """Remove the background's outputs (the first of ``num_classes`` class-major groups).

    Args:
        val (Tensor): Weight ``[num_classes * k, ...]`` or bias ``[num_classes * k]`` of a
            class-specific layer (``fc_reg``: k = 4, ``conv_logits``: k = 1).
        num_classes (int): Classes with background.

    Returns:
        Tensor: ``[(num_classes - 1) * k, ...]``; ``val`` itself when its output count is
        no multiple of ``num_classes`` (class-agnostic).
    """
    out_channels = val.shape[0]
    if out_channels % num_classes != 0:
        return val
    per_class = val.reshape(num_classes, out_channels // num_classes, *val.shape[1:])
    return per_class[1:].reshape(-1, *val.shape[1:]).clone()


def convert(in_file: str, out_file: str, num_classes: int = 81) -> None:
    """Upgrade ``in_file``'s state dict (see the module docstring) and save to ``out_file``.

    Args:
        in_file (str): Checkpoint with ``meta.config``, ``meta.mmdet_version`` and
            ``state_dict``.
        out_file (str): Where the upgraded checkpoint goes (other keys kept as they are).
        num_classes (int): Classes of the old model, background included. Defaults to 81.
    """
    import torch

    from mmdet_lite.engine.checkpoint import load_local_checkpoint

    if num_classes < 2:
        raise ValueError(f'--num-classes counts the background too and must be >= 2, got '
                         f'{num_classes}')
    if not osp.isfile(in_file):
        raise FileNotFoundError(f'in_file: checkpoint not found: {in_file}')
    checkpoint = load_local_checkpoint(in_file, map_location='cpu')
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or 'config' not in meta or 'mmdet_version' not in meta \
            or not isinstance(checkpoint.get('state_dict'), dict):
        raise ValueError(f'{in_file} lacks state_dict, meta.config or meta.mmdet_version: '
                         'only checkpoints saved by mmdetection\'s training can be upgraded')
    is_two_stage, is_ssd, is_retina, reg_cls_agnostic = parse_config(meta['config'])
    version = version_tuple(meta['mmdet_version'])
    upgrade_retina = is_retina and version <= (0, 5, 3)
    upgrade_rpn = version < (2, 5, 0)  # 2.5.0 unified the class order of the RPN

    cls_layers = CLS_LAYERS + (('rpn_cls', ) if upgrade_rpn else ())
    reg_layers = ('fc_reg', ) if upgrade_rpn else ('fc_reg', 'rpn_reg')
    out_state_dict = OrderedDict()
    for key, val in checkpoint['state_dict'].items():
        new_key, new_val = key, val
        if is_two_stage and key.startswith(ROI_HEAD_PARTS):
            new_key = f'roi_head.{key}'
        position = new_key.split('.')  # e.g. roi_head, bbox_head, fc_cls, weight
        layer, param = ([''] + position)[-2:]
        if param in ('weight', 'bias') and layer in cls_layers:
            print(f'reorder cls channels of {new_key}')
            new_val = reorder_cls_channel(val, num_classes)
        if param in ('weight', 'bias') and layer in reg_layers and not reg_cls_agnostic:
            print(f'truncate regression channels of {new_key}')
            new_val = drop_background_channel(val, num_classes)
        if param in ('weight', 'bias') and layer == 'conv_logits':
            print(f'truncate mask prediction channels of {new_key}')
            new_val = drop_background_channel(val, num_classes)
        # `<convs>.<i>.<param>`: a plain conv of the head's stacked convs
        stacked_conv = len(position) >= 3 and param in ('weight', 'bias') and \
            position[-2].isdigit() and position[-3] in ('cls_convs', 'reg_convs')
        if stacked_conv and upgrade_retina:
            new_key = '.'.join(position[:-1] + ['conv', param])
            print(f'rename the name of {key} to {new_key}')
            out_state_dict[new_key] = val
            continue
        if stacked_conv and is_ssd and position[-3] == 'cls_convs':
            print(f'reorder cls channels of {new_key}')
            new_val = reorder_cls_channel(val, num_classes)
        out_state_dict[new_key] = new_val

    checkpoint['state_dict'] = out_state_dict
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    torch.save(checkpoint, out_file)


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    from mmdet_lite.engine.checkpoint import allow_unsafe_checkpoint
    with allow_unsafe_checkpoint(*args.trust_checkpoint):
        convert(args.in_file, args.out_file, args.num_classes)
    print(f'upgraded checkpoint saved to {args.out_file}')


if __name__ == '__main__':
    main()
