"""Helpers for tests that run the tools on ``tests/data/configs/tiny_faster-rcnn_shapes.py``.

``tests/`` is on ``sys.path`` while pytest runs, so test files import these as
``from helpers_tools import ...``.
"""
import importlib.util
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Union

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CONFIG = osp.join(REPO_ROOT, 'tests', 'data', 'configs', 'tiny_faster-rcnn_shapes.py')
TRAIN_TOOL = osp.join(REPO_ROOT, 'tools', 'train.py')
TEST_TOOL = osp.join(REPO_ROOT, 'tools', 'test.py')


def tiny_data_cfg_options(data_root: Union[str, os.PathLike]) -> List[str]:
    """``--cfg-options`` items pointing the tiny config's datasets and evaluators at a folder.

    The shapes images and annotations are generated there on first use (about 0.1 s), so
    a test can pass its ``tmp_path`` (or a session-wide folder to generate them once).

    Args:
        data_root: Folder for the generated ``train/``, ``val/`` and ``annotations/``.

    Returns:
        list[str]: ``KEY=VALUE`` strings, to follow ``--cfg-options`` on the command line.
    """
    root = osp.join(str(data_root), '')  # with a trailing separator, as data_root strings are
    ann_file = osp.join(root, 'annotations', 'instances_val.json')
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={ann_file}',
        f'test_evaluator.ann_file={ann_file}',
    ]


def tool_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for a tool subprocess: 1 torch thread each, repo importable, no debug."""
    env = dict(os.environ)
    env.pop('MMDET_LITE_DEBUG', None)
    env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT,
                                                        env.get('PYTHONPATH')])))
    env.update(extra or {})
    return env


def run_tool(tool: str, args: Sequence[str], cwd: Optional[str] = None,
             env: Optional[Dict[str, str]] = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``tools/<tool>.py`` with ``args`` in a fresh interpreter and capture its output.

    Args:
        tool: ``'train'`` or ``'test'`` (or a path to a script).
        args: Command-line arguments after the script.
        cwd: Working directory (default: the repository root).
        env: Extra environment variables.
        timeout: Seconds before the run is killed.

    Returns:
        subprocess.CompletedProcess: with ``returncode``, ``stdout`` and ``stderr`` (str).
    """
    script = {'train': TRAIN_TOOL, 'test': TEST_TOOL}.get(tool, tool)
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=cwd or REPO_ROOT,
                          env=tool_env(env), capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, no traceback, and a last stderr line ``error: ...`` with fragments.

    Returns:
        str: That line.
    """
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith('error: '), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def load_script(tool: str):
    """A tool (``'train'``, ``'test'``) or a script path relative to the repository root,
    imported as a module so that its ``main(argv)`` can run in this process."""
    path = {'train': TRAIN_TOOL, 'test': TEST_TOOL}.get(tool, osp.join(REPO_ROOT, tool))
    name = 'script_' + osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
