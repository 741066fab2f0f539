"""The package's floors: what may import what, read from the source with ``ast``.

Every import counts, module-level and inside functions alike: a lazy import still ties the
two modules together. The one documented exception is the registration entry point
``mmdet_lite.utils.setup_env.register_all_modules``, which imports every package when it
is called (as mmdetection's does). See docs/architecture.md for the picture.
"""
import ast
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Set

import pytest

PACKAGE_ROOT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'mmdet_lite')
ENTRY_POINT = 'mmdet_lite.utils.setup_env'

# Floors, bottom to top; a module may import its own floor and the floors below it.
FLOORS = [
    ('ground', ['mmdet_lite', 'mmdet_lite.version', 'mmdet_lite.registry', 'mmdet_lite.utils']),
    ('structures', ['mmdet_lite.structures']),
    ('models and data', ['mmdet_lite.models', 'mmdet_lite.datasets', 'mmdet_lite.evaluation']),
    ('visualization', ['mmdet_lite.visualization']),
    ('engine', ['mmdet_lite.engine']),
    ('apis', ['mmdet_lite.apis']),
    ('deployment', ['mmdet_lite.deployment']),
    ('analysis', ['mmdet_lite.analysis']),
]
# Packages on the same floor that must not import each other (either way).
SIBLINGS_APART = [('mmdet_lite.models', 'mmdet_lite.datasets'),
                  ('mmdet_lite.models', 'mmdet_lite.evaluation')]


def _module_name(path: str) -> str:
    rel = osp.relpath(path, osp.dirname(PACKAGE_ROOT))[:-len('.py')].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def _modules() -> Dict[str, str]:
    found = {}
    for folder, _, files in os.walk(PACKAGE_ROOT):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                found[_module_name(path)] = path
    return found


def _imported_modules(module: str, path: str, modules: Dict[str, str]) -> Set[str]:
    """The mmdet_lite modules ``module`` imports anywhere in its source."""
    package = module if path.endswith('__init__.py') else module.rsplit('.', 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + [node.module or ''])
            else:
                base = node.module or ''
            base = base.rstrip('.')
            names = [f'{base}.{alias.name}' for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules and '.' in name:
                name = name.rsplit('.', 1)[0]
            if name in modules and name != module:
                targets.add(name)
    return targets


@pytest.fixture(scope='module')
def graph() -> Dict[str, Set[str]]:
    modules = _modules()
    edges = {name: _imported_modules(name, path, modules) for name, path in modules.items()}
    # register_all_modules imports every package by design: its edges are not layering
    edges[ENTRY_POINT] = {t for t in edges[ENTRY_POINT] if t.startswith('mmdet_lite.utils')}
    return edges


def _floor(module: str) -> int:
    best, best_len = None, -1
    for level, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != 'mmdet_lite'
                                           and module.startswith(prefix + '.'))
            if matches and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    assert best is not None, f'{module} is on no floor: add its package to FLOORS'
    return best


def test_every_module_is_on_a_floor(graph):
    for module in graph:
        _floor(module)


def test_no_module_imports_a_floor_above_its_own(graph):
    back_edges = [f'{source} ({FLOORS[_floor(source)][0]}) imports {target} '
                  f'({FLOORS[_floor(target)][0]})'
                  for source, targets in graph.items() for target in sorted(targets)
                  if _floor(target) > _floor(source)]
    assert back_edges == []


def test_models_import_no_datasets_or_evaluation(graph):
    crossings = [f'{source} imports {target}' for source, targets in graph.items()
                 for target in targets for a, b in SIBLINGS_APART
                 if (source.startswith(a) and target.startswith(b))
                 or (source.startswith(b) and target.startswith(a))]
    assert crossings == []


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles(graph):
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_the_entry_point_is_the_only_exception(graph):
    """Without the exemption the entry point would be the circle's only way back down."""
    modules = _modules()
    full = dict(graph)
    full[ENTRY_POINT] = _imported_modules(ENTRY_POINT, modules[ENTRY_POINT], modules)
    assert {'mmdet_lite.models', 'mmdet_lite.datasets', 'mmdet_lite.engine'} <= full[ENTRY_POINT]
    assert all(ENTRY_POINT in cycle for cycle in _cycles(full))


HEAVY_OR_FOREIGN = ('mmdet_lite.datasets', 'mmdet_lite.evaluation', 'mmdet_lite.visualization',
                    'mmdet_lite.engine', 'mmdet_lite.apis', 'mmdet_lite.analysis', 'scipy',
                    'matplotlib', 'pycocotools.coco', 'pycocotools.cocoeval',
                    'torchvision.models.detection')


@pytest.mark.slow
@pytest.mark.parametrize('package', ['mmdet_lite.models.backbones', 'mmdet_lite.models'])
def test_importing_models_loads_no_data_evaluation_drawing_or_analysis_module(package):
    """What the import costs beyond its stack comes from what it loads (torchvision itself
    imports its detection models); the figure is in docs/benchmark.md."""
    code = ('import sys, torch, torchvision, mmengine, mmcv.cnn; before = set(sys.modules); '
            f'import {package}; new = set(sys.modules) - before; '
            f'print("\\n".join(m for m in new if m.startswith({HEAVY_OR_FOREIGN!r})))')
    loaded = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == []
