"""Argument errors and the level-range check shared by the FPN-style necks.

mmdetection validates neck arguments with ``assert``; the errors here derive from
``AssertionError`` as well, so code written against mmdetection keeps catching them.
"""
from typing import Any


class NeckArgumentError(ValueError, AssertionError):
    """A neck argument (or forward input) mmdetection asserts against."""


class NeckTypeError(TypeError, AssertionError):
    """A neck argument of a type mmdetection asserts against."""


def check_list(value: Any, arg: str, neck: str) -> None:
    """Require ``value`` to be a list (mmdetection asserts ``isinstance(x, list)``).

    Tuples are accepted too: they index the same way and configs loaded from files may
    hold either.

    Args:
        value (Any): The argument to check.
        arg (str): Its name, for the message.
        neck (str): The neck's class name, for the message.
    """
    if not isinstance(value, (list, tuple)):
        raise NeckTypeError(f'{neck} {arg} must be a list of ints (one per input level), '
                            f'got {value!r}.')


def resolve_backbone_end_level(num_ins: int, start_level: int, end_level: int, num_outs: int,
                               neck: str) -> int:
    """Check the level range of an FPN-style neck and return its exclusive end.

    ``end_level`` is inclusive; -1 (or the index of the last input) means "up to the last
    input", and then extra levels may be added on top, so ``num_outs`` must only be at
    least the number of used inputs. Any other ``end_level`` truncates the pyramid, and
    extra levels only ever grow from the last input, so ``num_outs`` must then equal the
    number of used inputs exactly.

    Args:
        num_ins (int): Number of neck inputs (``len(in_channels)``).
        start_level (int): First used input.
        end_level (int): Last used input (inclusive) or -1.
        num_outs (int): Requested number of outputs.
        neck (str): The neck's class name, for the messages.

    Returns:
        int: ``backbone_end_level``, one past the last used input.
    """
    if end_level == -1 or end_level == num_ins - 1:
        used = num_ins - start_level
        if not num_outs >= used:
            raise NeckArgumentError(
                f'{neck} num_outs ({num_outs}) must be at least the number of used input '
                f'levels ({used} = {num_ins} inputs from start_level {start_level}).')
        return num_ins
    if not end_level < num_ins:
        raise NeckArgumentError(f'{neck} end_level must be -1 or less than the number of '
                                f'inputs ({num_ins}), got {end_level}.')
    used = end_level - start_level + 1
    if num_outs != used:
        raise NeckArgumentError(
            f'{neck} num_outs ({num_outs}) must equal the number of used input levels '
            f'({used}, start_level {start_level} to end_level {end_level}) when end_level '
            'is not the last input.')
    return end_level + 1
