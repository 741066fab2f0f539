"""Registry of box types and box converters, and the ``autocast_box_type`` decorator.

Box types are registered under a lower-case name (``'hbox'`` is ``HorizontalBoxes``). A converter
from type A to type B is a function on raw tensors, stored under the key ``'A2B'``.
"""
import functools
from typing import Callable, Dict, Optional, Tuple, Type, Union

import numpy as np
import torch
from torch import Tensor

from .base_boxes import BaseBoxes, BoxValueError, _install_box_converter

BoxType = Union[np.ndarray, Tensor, BaseBoxes]

# Public like mmdetection's: name -> class, and converter name ('hbox2rbox') -> function.
box_types: Dict[str, Type[BaseBoxes]] = {}
_box_type_to_name: Dict[Type[BaseBoxes], str] = {}
box_converters: Dict[str, Callable] = {}


def _register_box(name: str, box_type: Type, force: bool = False) -> None:
    """Add ``box_type`` under ``name``; with ``force``, replace an earlier name or class."""
    if not (isinstance(box_type, type) and issubclass(box_type, BaseBoxes)):
        raise BoxValueError(f'box_type must be a subclass of BaseBoxes, but got {box_type!r}')
    name = name.lower()
    if not force and (name in box_types or box_type in _box_type_to_name):
        raise KeyError(f'box type {name} has been registered')
    # Keep the two dictionaries a bijection when overriding.
    if name in box_types:
        _box_type_to_name.pop(box_types.pop(name))
    if box_type in _box_type_to_name:
        box_types.pop(_box_type_to_name.pop(box_type))
    box_types[name] = box_type
    _box_type_to_name[box_type] = name


def register_box(name: str,
                 box_type: Optional[Type] = None,
                 force: bool = False) -> Union[Type, Callable]:
    """Register a box type, as a function or as a class decorator.

    Args:
        name (str): Name of the box type (stored lower-case).
        box_type (type, optional): The ``BaseBoxes`` subclass. If None, return a decorator.
        force (bool): Replace an existing registration of the name or the class.

    Returns:
        type | Callable: The registered class, or the decorator.

    Example:
        >>> @register_box('mybox')
        ... class MyBoxes(BaseBoxes): ...
    """
    if not isinstance(force, bool):
        raise TypeError(f'force must be a boolean, but got {type(force)}')
    if box_type is not None:
        _register_box(name=name, box_type=box_type, force=force)
        return box_type

    def _decorator(cls: Type) -> Type:
        _register_box(name=name, box_type=cls, force=force)
        return cls

    return _decorator


def _register_box_converter(src_type: Union[str, type], dst_type: Union[str, type],
                            converter: Callable, force: bool = False) -> None:
    if not callable(converter):
        raise BoxValueError(f'converter must be callable, but got {converter!r}')
    src_name, _ = get_box_type(src_type)
    dst_name, _ = get_box_type(dst_type)
    key = f'{src_name}2{dst_name}'
    if not force and key in box_converters:
        raise KeyError(f'The box converter from {src_name} to {dst_name} has been registered.')
    box_converters[key] = converter


def register_box_converter(src_type: Union[str, type],
                           dst_type: Union[str, type],
                           converter: Optional[Callable] = None,
                           force: bool = False) -> Callable:
    """Register a function converting raw box tensors from ``src_type`` to ``dst_type``.

    Args:
        src_type (str | type): Registered source box type (name or class).
        dst_type (str | type): Registered destination box type (name or class).
        converter (Callable, optional): ``Tensor [..., src_dim] -> Tensor [..., dst_dim]``.
            If None, return a decorator.
        force (bool): Replace an existing converter for the same pair.

    Returns:
        Callable: The converter, or the decorator.
    """
    if not isinstance(force, bool):
        raise TypeError(f'force must be a boolean, but got {type(force)}')
    if converter is not None:
        _register_box_converter(src_type, dst_type, converter, force=force)
        return converter

    def _decorator(func: Callable) -> Callable:
        _register_box_converter(src_type, dst_type, func, force=force)
        return func

    return _decorator


def get_box_type(box_type: Union[str, type]) -> Tuple[str, type]:
    """Return ``(name, class)`` of a registered box type given either of them.

    Args:
        box_type (str | type): A registered name (any case) or ``BaseBoxes`` subclass.

    Returns:
        tuple[str, type]: The name and the class.
    """
    if isinstance(box_type, str):
        name = box_type.lower()
        if name not in box_types:
            raise BoxValueError(f"Box type {name} hasn't been registered in box_types.")
        return name, box_types[name]
    if isinstance(box_type, type) and issubclass(box_type, BaseBoxes):
        if box_type not in _box_type_to_name:
            raise BoxValueError(f"Box type {box_type} hasn't been registered in box_types.")
        return _box_type_to_name[box_type], box_type
    raise KeyError('box_type must be a str or class inheriting from '
                   f'BaseBoxes, but got {type(box_type)}.')


def convert_box_type(boxes: BoxType,
                     *,
                     src_type: Union[str, type, None] = None,
                     dst_type: Union[str, type, None] = None) -> BoxType:
    """Convert boxes to another box type, keeping the container kind of the input.

    Args:
        boxes (np.ndarray | Tensor | BaseBoxes): Boxes. For box objects the source type is
            their own class; raw arrays/tensors need ``src_type``.
        src_type (str | type, optional): Source type of raw arrays/tensors.
        dst_type (str | type): Destination type.

    Returns:
        np.ndarray | Tensor | BaseBoxes: Converted boxes: a box object of ``dst_type`` for box
        objects, otherwise the same container kind as ``boxes``.
    """
    if dst_type is None:
        raise BoxValueError('convert_box_type needs dst_type')
    dst_name, dst_cls = get_box_type(dst_type)
    if isinstance(boxes, BaseBoxes):
        src_name, _ = get_box_type(type(boxes))
    elif isinstance(boxes, (Tensor, np.ndarray)):
        if src_type is None:
            raise BoxValueError('convert_box_type needs src_type for a Tensor or ndarray')
        src_name, _ = get_box_type(src_type)
    else:
        raise TypeError('boxes must be a instance of BaseBoxes, Tensor or '
                        f'ndarray, but get {type(boxes)}.')
    if src_name == dst_name:
        return boxes

    key = f'{src_name}2{dst_name}'
    if key not in box_converters:
        raise BoxValueError(f"Convert function {key} hasn't been registered in box_converters.")
    converter = box_converters[key]
    if isinstance(boxes, BaseBoxes):
        return dst_cls(converter(boxes.tensor))
    if isinstance(boxes, np.ndarray):
        return converter(torch.from_numpy(boxes)).numpy()
    return converter(boxes)


_install_box_converter(convert_box_type)


def autocast_box_type(dst_box_type: str = 'hbox') -> Callable:
    """Decorate a transform's ``transform(self, results)`` to see box objects in gt_bboxes.

    If ``results['gt_bboxes']`` is a numpy array it is wrapped in ``dst_box_type`` (without a
    copy) for the call, as are the ``gt_bboxes`` of ``results['mix_results']``; afterwards any
    box object left in ``gt_bboxes`` of the input or output dict is turned back into an array.
    Box objects, and results without ``gt_bboxes``, pass through unchanged.

    Args:
        dst_box_type (str): Registered box type to wrap arrays in. Defaults to ``'hbox'``.

    Returns:
        Callable: The decorator.
    """
    _, box_cls = get_box_type(dst_box_type)

    def decorator(func: Callable) -> Callable:

        @functools.wraps(func)
        def wrapper(self, results: dict, *args, **kwargs) -> dict:
            if 'gt_bboxes' not in results or isinstance(results['gt_bboxes'], BaseBoxes):
                return func(self, results, *args, **kwargs)
            if not isinstance(results['gt_bboxes'], np.ndarray):
                raise TypeError("auto_box_type requires results['gt_bboxes'] to be BaseBoxes "
                                f"or np.ndarray, but got {type(results['gt_bboxes'])}")
            results['gt_bboxes'] = box_cls(results['gt_bboxes'], clone=False)
            for mixed in results.get('mix_results', []):
                if isinstance(mixed.get('gt_bboxes'), np.ndarray):
                    mixed['gt_bboxes'] = box_cls(mixed['gt_bboxes'], clone=False)

            output = func(self, results, *args, **kwargs)

            # The transform may return a new dict or edit ``results`` in place: unwrap both.
            if isinstance(output, dict) and isinstance(output.get('gt_bboxes'), BaseBoxes):
                output['gt_bboxes'] = output['gt_bboxes'].numpy()
            if isinstance(results.get('gt_bboxes'), BaseBoxes):
                results['gt_bboxes'] = results['gt_bboxes'].numpy()
            return output

        return wrapper

    return decorator
