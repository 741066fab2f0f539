"""Plain-text tables in the layout of ``terminaltables.AsciiTable`` (not a dependency).

mmdetection logs its evaluation summaries with ``AsciiTable``; the metrics here print the
same layout so that logs read (and parse) the same.
"""
from typing import Any, List, Sequence


def ascii_table(rows: Sequence[Sequence[Any]], footer_border: bool = False) -> str:
    """Format ``rows`` (the first one is the header) as a ``+---+`` bordered table.

    Cells are converted with ``str`` and left-justified with one space of padding on each
    side, as ``AsciiTable`` does by default.

    Args:
        rows (Sequence[Sequence]): The header row followed by the body rows; all rows
            have the same number of cells.
        footer_border (bool): Draw a separator line above the last row (``AsciiTable``'s
            ``inner_footing_row_border``). Defaults to False.

    Returns:
        str: The table, lines joined with ``\\n``, without a trailing newline.

    Example:
        >>> print(ascii_table([['class', 'ap'], ['cat', '0.500']]))
        +-------+-------+
        | class | ap    |
        +-------+-------+
        | cat   | 0.500 |
        +-------+-------+
    """
    cells: List[List[str]] = [[str(cell) for cell in row] for row in rows]
    num_cols = max(len(row) for row in cells)
    cells = [row + [''] * (num_cols - len(row)) for row in cells]
    widths = [max(len(row[i]) for row in cells) for i in range(num_cols)]
    border = '+' + '+'.join('-' * (w + 2) for w in widths) + '+'

    def line(row: List[str]) -> str:
        return '| ' + ' | '.join(cell.ljust(w) for cell, w in zip(row, widths)) + ' |'

    out = [border, line(cells[0]), border]
    body = cells[1:]
    for i, row in enumerate(body):
        if footer_border and i == len(body) - 1 and i > 0:
            out.append(border)
        out.append(line(row))
    out.append(border)
    return '\n'.join(out)
