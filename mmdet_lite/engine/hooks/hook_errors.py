"""Errors raised by mmdet_lite's hooks where mmdetection's hooks only assert.

Each also derives from ``AssertionError``, so code written against mmdetection that catches
``AssertionError`` still catches them.
"""


class HookArgumentError(ValueError, AssertionError):
    """A hook argument outside the range mmdetection asserts (e.g. a momentum not in (0, 1))."""


class HookModelError(TypeError, AssertionError):
    """The runner's model lacks what a hook needs (e.g. ``teacher`` and ``student``)."""


class InvalidLossError(FloatingPointError, AssertionError):
    """The training loss became NaN or infinite."""
