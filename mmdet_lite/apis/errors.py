"""Errors that the tools report in one line: what the user has to fix."""


class UserInputError(ValueError):
    """Bad input from the command line or a config; reported in one line, no traceback."""


def one_line_message(err: BaseException) -> str:
    """The message of ``err`` on one line.

    A DataLoader worker re-raises its error with the worker's traceback in the message;
    the last line of that traceback is the original ``SomeError: message``.
    """
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = str(text)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if 'Original Traceback' in text and lines:
        return lines[-1]
    return ' '.join(lines) or type(err).__name__
