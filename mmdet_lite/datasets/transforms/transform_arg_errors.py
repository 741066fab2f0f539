"""Errors for bad transform arguments and missing pipeline keys.

mmdetection checks these with ``assert``; ours are real exceptions (they survive ``python -O``)
that still derive from ``AssertionError``, so code catching mmdetection's errors keeps working.
"""


class TransformArgError(ValueError, AssertionError):
    """A transform got an argument outside what it accepts."""


class MissingResultKeyError(KeyError, AssertionError):
    """A transform needs a key that the pipeline results lack."""

    def __str__(self) -> str:
        # KeyError would print the message in quotes, as if it were the key itself.
        return str(self.args[0]) if self.args else ''


def check_arg(condition: bool, message: str) -> None:
    """Raise :class:`TransformArgError` with ``message`` unless ``condition`` holds.

    Args:
        condition (bool): What must be true of the arguments.
        message (str): Names the transform, the argument, what was expected and what came.
    """
    if not condition:
        raise TransformArgError(message)


def require_key(results: dict, key: str, transform: str) -> None:
    """Raise :class:`MissingResultKeyError` when ``results`` has no ``key``.

    Args:
        results (dict): Pipeline results.
        key (str): Needed key, e.g. ``'img'``.
        transform (str): Name of the transform asking, for the message.
    """
    if key not in results:
        raise MissingResultKeyError(f'{transform} needs results[{key!r}], which is missing.')
