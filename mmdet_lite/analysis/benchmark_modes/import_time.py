"""``benchmark.py imports``: what ``import PACKAGE`` costs beyond the stack under it.

The stack is torch, torchvision, mmengine and mmcv.cnn (``IMPORT_BASELINE``), imported first
and not counted; each package is timed with ``python -X importtime`` in fresh interpreters
(median), and the modules with the largest own import time are listed. Whether Python may
cache bytecode is printed too: with ``PYTHONDONTWRITEBYTECODE`` set (and no ``__pycache__``
left from before) every module is compiled from source on every import, which took 0.30 s for
``mmdet_lite.models`` against 0.07 s with the cache a normal install has.
"""
import argparse
import os

from ..benchmark import load_average, machine_summary
from ..import_timing import IMPORT_BASELINE, measure_import


def run_imports(args: argparse.Namespace) -> None:
    """Time each package's import and print the report (``benchmark.py imports``)."""
    if args.repeat < 1:
        raise ValueError(f'--repeat must be >= 1, got {args.repeat}')
    print('== mmdet_lite benchmark: import time ==')
    print(f'machine      : {machine_summary()}')
    print(f'baseline     : import {", ".join(IMPORT_BASELINE)} (not counted)')
    print(f'load average : {load_average()}')
    no_cache = bool(os.environ.get('PYTHONDONTWRITEBYTECODE'))
    print('bytecode     : ' + ('PYTHONDONTWRITEBYTECODE is set: modules without a __pycache__ '
                               'entry are compiled from source at every import' if no_cache
                               else 'cached in __pycache__ (after the first import)'))
    for package in args.packages:
        median, heaviest = measure_import(package, repeat=args.repeat)
        top = ', '.join(f'{name} {own * 1e3:.0f} ms' for name, own in heaviest[:5])
        print(f'{package:<28}: {median:.3f} s (median of {args.repeat}); heaviest: {top}')
