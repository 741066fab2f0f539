"""The scope name 'mmdet' is an alias of 'mmdet_lite' (no real mmdetection installed).

mmdetection configs say ``default_scope = 'mmdet'`` and ``type='mmdet.X'``; they must
build mmdet_lite's modules, from our registries and from mmengine's root registries, quietly.
With a real ``mmdet`` package importable (a stand-in on PYTHONPATH, in a subprocess), the
name is left to it.
"""
import os
import subprocess
import sys
import textwrap

import mmengine.registry as mmengine_registry
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

import mmdet_lite.registry as registry
from mmdet_lite.models.backbones import ResNet
from mmdet_lite.models.detectors import FasterRCNN
from mmdet_lite.models.necks import ChannelMapper
from mmdet_lite.registry import MODELS, TRANSFORMS
from mmdet_lite.utils import real_mmdet_installed

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = os.path.join(REPO_ROOT, 'tests', 'data', 'configs', 'tiny_faster-rcnn_shapes.py')
NECK = dict(type='ChannelMapper', in_channels=[4], out_channels=2, num_outs=1)

pytestmark = pytest.mark.skipif(real_mmdet_installed(),
                                reason='a real mmdetection owns the scope name mmdet here')


@pytest.fixture
def no_default_scope():
    """Start without a current DefaultScope; restore the instances afterwards."""
    saved = DefaultScope._instance_dict.copy()
    DefaultScope._instance_dict.clear()
    yield
    DefaultScope._instance_dict = saved


@pytest.fixture
def mmengine_warnings(monkeypatch):
    """Warnings mmengine's registry logs (e.g. 'Failed to import `mmdet.registry`')."""
    import mmengine.logging
    logged = []
    real_print_log = mmengine.logging.print_log

    def record(msg, logger=None, level=20):
        if level >= 30:
            logged.append(msg)
        real_print_log(msg, logger=logger, level=level)

    # the registry imports it at each call (`from ..logging import print_log`)
    monkeypatch.setattr(mmengine.logging, 'print_log', record)
    return logged


def test_scoped_type_names_resolve_in_our_registries(no_default_scope):
    backbone = MODELS.build(dict(type='mmdet.ResNet', depth=18, base_channels=8))
    assert type(backbone) is ResNet and backbone.depth == 18
    assert MODELS.get('mmdet.FasterRCNN') is FasterRCNN
    assert 'mmdet.ResNet' in MODELS and 'mmdet.NoSuchThing' not in MODELS
    # as for 'mmdet_lite.X', a scoped name is looked up in that scope only
    with pytest.raises(KeyError, match='mmdet.ConvModule'):
        MODELS.get('mmdet.ConvModule')
    assert MODELS.get('ConvModule') is not None


def test_scoped_type_names_resolve_from_mmengine_root_registries(no_default_scope,
                                                                 mmengine_warnings):
    backbone = mmengine_registry.MODELS.build(dict(type='mmdet.ResNet', depth=18,
                                                   base_channels=8))
    assert type(backbone) is ResNet
    assert mmengine_registry.TRANSFORMS.get('mmdet.PackDetInputs') is \
        TRANSFORMS.get('PackDetInputs')
    assert mmengine_registry.MODELS._search_child('mmdet') is MODELS
    assert mmengine_warnings == []


def test_default_scope_mmdet_builds_ours_quietly(no_default_scope, mmengine_warnings):
    DefaultScope.get_instance('test-alias', scope_name='mmdet')
    cfg = Config.fromfile(TINY_CONFIG)
    detector = MODELS.build(cfg.model)
    assert type(detector) is FasterRCNN
    # the root registry picks our node too, as for default_scope='mmdet_lite'
    assert type(mmengine_registry.MODELS.build(NECK)) is ChannelMapper
    with mmengine_registry.VISUALIZERS.switch_scope_and_registry(None) as found:
        assert found is registry.VISUALIZERS  # our node even before anything registered
    # DefaultScope keeps the name it was given
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    assert mmengine_warnings == []


def test_scope_key_mmdet_in_a_config(no_default_scope, mmengine_warnings):
    neck = mmengine_registry.MODELS.build(dict(NECK, _scope_='mmdet'))
    assert type(neck) is ChannelMapper
    assert DefaultScope.get_current_instance() is None  # switched back
    assert mmengine_warnings == []


def test_other_scopes_keep_mmengine_behaviour(no_default_scope):
    init_default_scope('mmengine')
    # the mmengine tree searched from the root has no 'mmengine'-scoped child: the root
    with mmengine_registry.MODELS.switch_scope_and_registry(None) as found:
        assert found is mmengine_registry.MODELS
    init_default_scope('mmdet_lite')
    with mmengine_registry.MODELS.switch_scope_and_registry(None) as found:
        assert found is MODELS


def test_init_default_scope_mmdet_twice_is_quiet(no_default_scope, mmengine_warnings):
    init_default_scope('mmdet')
    init_default_scope('mmdet')
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    assert mmengine_warnings == []


def test_register_all_modules_keeps_an_mmdet_default_scope(no_default_scope, recwarn):
    from mmdet_lite.utils import register_all_modules
    init_default_scope('mmdet')
    register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    assert not [w for w in recwarn if 'default scope' in str(w.message)]
    # another scope is replaced by mmdet_lite, with a warning
    init_default_scope('mmengine')
    with pytest.warns(UserWarning, match='"mmengine" is not "mmdet_lite"'):
        register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'mmdet_lite'
    # and without a scope, one is created
    DefaultScope._instance_dict.clear()
    register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'mmdet_lite'


@pytest.mark.slow
def test_runner_from_cfg_with_default_scope_mmdet(tmp_path):
    code = textwrap.dedent(f'''
        from mmengine.config import Config
        from mmengine.runner import Runner
        import mmdet_lite.registry
        cfg = Config.fromfile({TINY_CONFIG!r})
        cfg.default_scope = 'mmdet'
        cfg.work_dir = {str(tmp_path / 'work')!r}
        runner = Runner.from_cfg(cfg)
        print('MODEL', type(runner.model).__module__, type(runner.model).__name__)
        print('VISUALIZER', type(runner.visualizer).__module__)
    ''')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=dict(os.environ, MMDET_LITE_TINY_DATA=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'MODEL mmdet_lite.models.detectors.faster_rcnn FasterRCNN' in proc.stdout
    assert 'VISUALIZER mmdet_lite.visualization' in proc.stdout
    output = proc.stdout + proc.stderr
    assert 'Failed to import' not in output and 'Failed to search registry' not in output


@pytest.mark.slow
def test_a_real_mmdet_keeps_its_scope(tmp_path):
    """With an importable ``mmdet`` (a stand-in package), nothing is aliased."""
    (tmp_path / 'mmdet').mkdir()
    (tmp_path / 'mmdet' / '__init__.py').write_text('REAL = True\n')
    config = tmp_path / 'cfg.py'
    config.write_text("default_scope = 'mmdet'\n")
    code = textwrap.dedent(f'''
        import warnings
        import mmengine.registry as root
        import mmdet_lite.registry as ours
        from mmdet_lite.apis.config_loading import load_config
        from mmdet_lite.utils import MmdetAliasError, enable_mmdet_import_alias
        assert ours.MMDET_SCOPE_IS_ALIAS is False
        assert 'mmdet' not in root.MODELS._children
        assert root.Registry.switch_scope_and_registry.__module__ == 'mmengine.registry.registry'
        try:
            ours.MODELS.get('mmdet.ResNet')
        except KeyError:
            print('NOT ALIASED')
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            load_config({str(config)!r})
        print('WARNED', any("mmdetection is installed" in str(w.message) for w in caught))
        try:
            enable_mmdet_import_alias()
        except MmdetAliasError as err:
            print('REFUSED', err)
        import mmdet
        print('REAL', mmdet.REAL)
    ''')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'NOT ALIASED' in proc.stdout and 'WARNED True' in proc.stdout
    assert "REFUSED the 'mmdet' import alias of mmdet_lite is refused: mmdetection is " \
        f"installed ({tmp_path / 'mmdet' / '__init__.py'})" in proc.stdout
    assert 'REAL True' in proc.stdout
