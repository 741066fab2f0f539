"""The modes of ``tools/analysis_tools/benchmark.py``, one module each.

Each module has a ``run_<mode>(args)`` that takes the parsed flags of its mode (the tool
defines them) and prints its report; ``random_detector`` holds what the detector modes share:
a randomly initialised model from a config and the inputs its data preprocessor would give it.

Nothing is imported here, so that one mode loads only what it needs.
"""
