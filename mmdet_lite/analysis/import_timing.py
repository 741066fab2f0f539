"""How long ``import PACKAGE`` takes beyond the stack under it (``benchmark.py imports``).

Each measurement starts a fresh interpreter with ``python -X importtime``, imports the
baseline first and reads the package's cumulative time from the report.
"""
import statistics
from typing import List, Sequence, Tuple

# Imported before the measured package: the stack every mmdet_lite user loads anyway.
IMPORT_BASELINE = ('torch', 'torchvision', 'mmengine', 'mmcv.cnn')


def parse_importtime(stderr: str) -> List[Tuple[str, float, float]]:
    """Parse the ``python -X importtime`` report.

    Args:
        stderr (str): What the interpreter wrote to stderr.

    Returns:
        list[tuple[str, float, float]]: ``(module, self_s, cumulative_s)`` per imported
        module, in the report's order (children before their parent).
    """
    rows = []
    for line in stderr.splitlines():
        if not line.startswith('import time:') or 'self [us]' in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in
                                        line.split(':', 1)[1].split('|', 2))
        rows.append((name, int(self_us) / 1e6, int(cumulative_us) / 1e6))
    return rows


def measure_import(package: str, baseline: Sequence[str] = IMPORT_BASELINE,
                   repeat: int = 5) -> Tuple[float, List[Tuple[str, float]]]:
    """Seconds that ``import package`` costs after ``baseline`` is imported, in a fresh
    interpreter each time (``python -X importtime``).

    Args:
        package (str): Module to measure, e.g. ``'mmdet_lite.models'``.
        baseline (Sequence[str]): Modules imported first and not counted.
        repeat (int): Fresh interpreters to start; the median is reported.

    Returns:
        tuple: The median cumulative import time of ``package`` (s), and the ten modules
        with the largest self time in the last run, ``[(module, seconds), ...]``.
    """
    import subprocess
    import sys
    code = f'import {", ".join(baseline)}; import {package}'
    times, rows = [], []
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, '-X', 'importtime', '-c', code],
                              capture_output=True, text=True, check=True)
        rows = parse_importtime(proc.stderr)
        cumulative = [total for name, _, total in rows if name == package]
        if not cumulative:
            raise ValueError(f'{package} was already imported by {", ".join(baseline)}')
        times.append(cumulative[-1])
    # the package's own subtree: the rows after the baseline's last top-level entry
    start = max(i for i, (name, _, _) in enumerate(rows) if name in baseline) + 1
    heaviest = sorted(((name, own) for name, own, _ in rows[start:]), key=lambda r: -r[1])
    return statistics.median(times), heaviest[:10]


__all__ = ['IMPORT_BASELINE', 'parse_importtime', 'measure_import']
