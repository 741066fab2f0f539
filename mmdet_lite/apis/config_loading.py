"""Read a config file with one-line errors, and apply ``--cfg-options`` overrides.

``--cfg-options KEY=VALUE`` adds a key the config lacks, as mmdetection's tools do, with a
warning naming the existing key when it looks like a typo of one; ``+KEY=VALUE`` adds a
key without that check. A number in the config must be overridden by a number.

Values are read as mmengine's ``DictAction`` reads them (numbers, ``True``/``None``, lists
and tuples of those, bare words as strings), and in addition a value with ``dict(...)``
in it is read as the Python literal it spells, as a config file would:
``visualizer.vis_backends=[dict(type='LocalVisBackend'),dict(type='TensorboardVisBackend')]``
gives a list of two dicts, where ``DictAction`` gives two strings that no registry builds.
"""
import ast
import difflib
import os.path as osp
import re
import traceback
import warnings
from numbers import Number
from typing import Any, List, NamedTuple, Optional, Tuple

from mmengine.config import Config, DictAction

from .errors import UserInputError, one_line_message

# A --cfg-options key starting with this is added without the typo check.
NEW_KEY_PREFIX = '+'


def read_config_file(path: str) -> Config:
    """``Config.fromfile(path)``, with a one-line error for a missing file, bad syntax or
    a line of the config that raises (``NameError`` ...).

    mmengine parses the config without a file name, so its ``SyntaxError`` reads
    ``File "<unknown>", line 1`` and does not say which file of a ``_base_`` chain is
    broken. Here the file and its ``_base_`` files are compiled again, as mmengine resolves
    them, to name the broken one.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UserInputError: ``path`` or one of its bases is not valid Python, as
            ``FILE:LINE: syntax error in config: MSG (`CODE`)``, or one of their lines
            raised, as ``FILE:LINE: error in config: TYPE: MSG``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    try:
        return Config.fromfile(path)
    except SyntaxError as err:
        raise UserInputError(_syntax_error_message(str(path), err)) from err
    except Exception as err:  # noqa: BLE001  (re-raised unless a config line raised it)
        frame = _config_frame(str(path), err)
        if frame is None:
            raise
        what = type(err).__name__
        text = one_line_message(err)
        raise UserInputError(f'{frame.filename}:{frame.lineno}: error in config: {what}'
                             f'{"" if text == what else ": " + text}') from err


def _config_frame(path: str, err: BaseException):
    """The last traceback frame of ``err`` that runs a line of ``path`` or one of its
    ``_base_`` files (e.g. a ``NameError`` in the config), or None."""
    files = {osp.abspath(path)}
    try:
        _find_syntax_error(path, chain=(), seen=files)
    except Exception:  # noqa: BLE001  (then only ``path`` itself is matched)
        pass
    frames = [frame for frame in traceback.extract_tb(err.__traceback__)
              if osp.abspath(frame.filename) in files]
    return frames[-1] if frames else None


def _syntax_error_message(path: str, err: SyntaxError) -> str:
    """``FILE:LINE: ...`` for the first file of ``path``'s ``_base_`` tree that fails to
    compile; from ``err`` itself if none does (e.g. a form of config not walked here)."""
    try:
        found = _find_syntax_error(path, chain=())
    except Exception:  # noqa: BLE001  (a base mmengine itself could not read)
        found = None
    if found is None:
        found, chain = err, ()
        if err.filename in (None, '', '<unknown>', '<string>') or not osp.isfile(
                str(err.filename)):
            found.filename = path
    else:
        found, chain = found
    code = (found.text or '').strip()
    code = code if len(code) <= 80 else code[:77] + '...'
    where = f'{found.filename}:{found.lineno}' if found.lineno else str(found.filename)
    message = f'{where}: syntax error in config: {found.msg}'
    if code:
        message += f' (`{code}`)'
    if chain:
        message += f"; reached through _base_ from {' -> '.join(chain)}"
    return message


def _find_syntax_error(path: str, chain: Tuple[str, ...],
                       seen: Optional[set] = None) -> Optional[tuple]:
    """``(SyntaxError, files that include it)`` for the first ``.py`` file of the
    ``_base_`` tree rooted at ``path`` that does not compile, or None. The absolute path
    of every file visited is added to ``seen``."""
    if not path.endswith('.py') or not osp.isfile(path) or path in chain:
        return None
    if seen is not None:
        seen.add(osp.abspath(path))
    with open(path, encoding='utf-8') as f:
        source = f.read()
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as err:
        err.filename = path
        return err, chain
    for base in _base_files(tree):
        base_path, _ = Config._get_cfg_path(base, path)  # how mmengine resolves it
        found = _find_syntax_error(osp.normpath(base_path), chain + (path, ), seen)
        if found is not None:
            return found
    return None


def _base_files(tree: ast.Module) -> List[str]:
    """The ``_base_ = ...`` entries of a parsed config (a str or a list of str)."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == '_base_'):
            value = ast.literal_eval(node.value)
            return [value] if isinstance(value, str) else list(value)
    return []


def load_config(path: str, cfg_options: Optional[List[str]] = None) -> Config:
    """Load a config file and apply ``--cfg-options KEY=VALUE`` overrides.

    As in mmdetection's tools, a key the config does not have yet is added
    (``train_dataloader.dataset.indices=8``). When it looks like a typo of an existing key
    (``optim_wrapper.optimzer.lr`` next to ``optimizer``), a warning names the existing key;
    the new key is still added. ``+KEY=VALUE`` adds a key without that check. A key whose
    value in the config is a number must get a number (``lr=1e-3x`` is an error, not the
    string ``'1e-3x'``).

    A config whose ``default_scope`` is ``'mmdet'`` gets a warning while a real
    mmdetection is installed: the scope then means mmdetection's registries, not ours.

    Args:
        path (str): Config file.
        cfg_options (list[str], optional): ``KEY=VALUE`` strings as given on the command
            line (values parsed like mmengine's ``DictAction``: ints, floats, lists, tuples).

    Returns:
        Config: The merged config.

    Raises:
        FileNotFoundError: The config file does not exist.
        UserInputError: The config (or a ``_base_``) has a syntax error, an item is not
            ``KEY=VALUE``, or a number is overridden by something that is not a number.
    """
    cfg = read_config_file(path)
    if cfg_options:
        options = {}
        for key, (text, value) in _split_cfg_options(cfg_options).items():
            if key.startswith(NEW_KEY_PREFIX):
                key = key[len(NEW_KEY_PREFIX):]
            else:
                lookup = find_key(cfg, key)
                if lookup.found:
                    check_value_type(key, text, value, lookup.value)
                elif lookup.near:
                    warnings.warn(_near_key_message(key, text, lookup), UserWarning,
                                  stacklevel=2)
            options[key] = value
        cfg.merge_from_dict(options)
    _warn_if_mmdet_scope_is_mmdetection(cfg)
    return cfg


def _near_key_message(key: str, text: str, lookup: 'KeyLookup') -> str:
    """The warning for a new key that looks like a typo of ``lookup.near[0]``."""
    missing = f'{lookup.prefix}.{lookup.missing}' if lookup.prefix else lookup.missing
    meant = lookup.near[0] + key[len(missing):]
    others = (f' (or {", ".join(repr(k) for k in lookup.near[1:])})'
              if len(lookup.near) > 1 else '')
    return (f'--cfg-options {key}={text}: the config has no {missing!r}, so {key!r} is added '
            f'as a new key; did you mean the existing key {lookup.near[0]!r}{others}, i.e. '
            f'{meant}={text}?')


def _warn_if_mmdet_scope_is_mmdetection(cfg: Config) -> None:
    """``default_scope = 'mmdet'`` names mmdetection's registries when it is installed."""
    if cfg.get('default_scope') != 'mmdet':
        return
    from mmdet_lite.registry import MMDET_SCOPE_IS_ALIAS  # such a config builds through it
    if not MMDET_SCOPE_IS_ALIAS:
        warnings.warn("the config sets default_scope='mmdet' and mmdetection is installed, "
                      "so 'mmdet' names mmdetection's registries (mmdet_lite reads 'mmdet' as "
                      "its own scope only where mmdetection is not installed); set "
                      "default_scope='mmdet_lite' to build mmdet_lite's modules.",
                      UserWarning, stacklevel=3)


def _is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def check_value_type(key: str, text: str, value, current) -> None:
    """Raise ``UserInputError`` when a number in the config is overridden by a non-number.

    ``None`` stays allowed (it switches things off). Other types are not checked: strings,
    bools, lists and dicts replace each other legitimately in configs.
    """
    if _is_number(current) and value is not None and not _is_number(value):
        raise UserInputError(f'--cfg-options {key}={text}: expected a number (the config '
                             f'has {current!r}), got {text!r}')


def _split_cfg_options(items: List[str]) -> dict:
    """``{KEY: (VALUE text, parsed VALUE)}``, parsed as by mmengine's ``DictAction``."""
    options = {}
    for item in items:
        if '=' not in item:
            raise UserInputError(f'--cfg-options expects KEY=VALUE, got {item!r}')
        key, text = item.split('=', maxsplit=1)
        options[key] = (text, parse_cfg_value(text))
    return options


# ``dict(`` as a call, not as the end of a longer name such as ``mydict(``.
_DICT_CALL = re.compile(r'(?<![\w.])dict\s*\(')


def parse_cfg_value(text: str) -> Any:
    """One ``--cfg-options`` value: as mmengine's ``DictAction`` reads it, except that a
    value with ``dict(...)`` in it is read as the config literal it spells.

    ``DictAction`` splits ``[dict(type='A'),dict(type='B')]`` at its commas and keeps each
    item as the string ``"dict(type='A')"``, which no registry can build. Such a value is
    parsed here as a Python expression made of ``dict(key=value, ...)`` calls, ``{...}``,
    lists, tuples, numbers and quoted strings; bare words (``[dict(type=A)]``) read as
    ``DictAction`` reads them (``None``, ``true``, else a string). A value that is not such
    an expression is left to ``DictAction``.

    Args:
        text (str): The text after ``KEY=``.

    Returns:
        The parsed value.
    """
    if _DICT_CALL.search(text):
        try:
            return _config_literal(ast.parse(text.strip(), mode='eval').body)
        except (SyntaxError, ValueError):
            pass  # not a literal: read it as mmengine would
    return DictAction._parse_iterable(text)


def _config_literal(node: ast.AST) -> Any:
    """The value of an expression node built from literals and ``dict(k=v, ...)`` calls.

    Raises:
        ValueError: The node is anything else (a name call, an attribute, arithmetic ...).
    """
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):  # a bare word, as DictAction reads one
        return DictAction._parse_int_float_bool(node.id)
    if isinstance(node, ast.List):
        return [_config_literal(item) for item in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_config_literal(item) for item in node.elts)
    if isinstance(node, ast.Dict) and None not in node.keys:  # no ``**other``
        return {_config_literal(k): _config_literal(v) for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args
            and all(kw.arg is not None for kw in node.keywords)):
        return {kw.arg: _config_literal(kw.value) for kw in node.keywords}
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, (int, float))):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    raise ValueError(f'not a config literal: {ast.dump(node)}')


def parse_cfg_options(items: List[str]) -> dict:
    """Parse ``KEY=VALUE`` strings the way mmengine's ``DictAction`` does (and
    ``dict(...)`` values as dicts, see :func:`parse_cfg_value`)."""
    return {key: value for key, (_, value) in _split_cfg_options(items).items()}


class KeyLookup(NamedTuple):
    """Where a dotted ``--cfg-options`` key leads in a config.

    Attributes:
        found (bool): The whole key exists.
        value: Its value when found, else None.
        prefix (str): The dotted part that exists (``''``: the top level).
        missing (str): The first part not found under ``prefix`` (``''`` when found).
        options (list): The keys under ``prefix`` (empty when it is not a dict).
        near (list[str]): Existing dotted keys under ``prefix`` whose last part is close
            to ``missing`` (typos), best first.
    """
    found: bool
    value: Any
    prefix: str
    missing: str
    options: list
    near: List[str]


# How close (difflib ratio) a missing key part must be to an existing one to look like a typo
# of it: 'optimzer' / 'optimizer' is 0.94, 'max_epoch' / 'max_epochs' 0.95, while an
# unrelated new key such as 'indices' scores at most 0.4 against a dataset's keys.
TYPO_CUTOFF = 0.8


def find_key(cfg: Config, dotted_key: str, cutoff: float = TYPO_CUTOFF) -> KeyLookup:
    """Follow ``dotted_key`` (dict keys and list indices) through ``cfg``.

    Args:
        cfg (Config): The config.
        dotted_key (str): E.g. ``'optim_wrapper.optimizer.lr'`` or ``'param_scheduler.0.end'``.
        cutoff (float): difflib ratio from which an existing key counts as near.

    Returns:
        KeyLookup: Whether the key exists, its value, or where it stops and the near keys.
    """
    node, walked = cfg._cfg_dict, []
    for part in dotted_key.split('.'):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            options = list(node.keys()) if isinstance(node, dict) else []
            prefix = '.'.join(walked)
            close = difflib.get_close_matches(part, [str(k) for k in options], n=5,
                                              cutoff=cutoff)
            near = [f'{prefix}.{k}' if prefix else k for k in close]
            return KeyLookup(False, None, prefix, part, options, near)
        walked.append(part)
    return KeyLookup(True, node, dotted_key, '', [], [])


def check_key_exists(cfg: Config, dotted_key: str):
    """The value at ``dotted_key`` in ``cfg``; ``KeyError`` naming the nearest keys when
    it is not there (``load_config`` adds such keys; this is for callers that must not)."""
    lookup = find_key(cfg, dotted_key, cutoff=0.4)
    if lookup.found:
        return lookup.value
    prefix = lookup.prefix
    hint = (f'nearest keys: {", ".join(lookup.near)}' if lookup.near else
            f'keys at {prefix or "the top level"}: '
            f'{", ".join(map(str, lookup.options[:15])) or "(none)"}')
    raise KeyError(f'--cfg-options: {dotted_key!r} is not a key of the config '
                   f'({lookup.missing!r} not found under {prefix or "the top level"}); '
                   f'{hint}')
