"""The opt-in ``mmdet`` import alias: ``import mmdet...`` loads mmdet_lite's modules.

Every case runs in a fresh interpreter, so that the alias never leaks into other tests.
"""
import os
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.slow


def run_python(code: str, env_updates=None, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop('MMDET_LITE_ALIAS_MMDET', None)
    env.update(env_updates or {})
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_off_by_default_and_on_with_the_function():
    proc = run_python('''
        import sys
        import mmdet_lite
        from mmdet_lite.utils import (disable_mmdet_import_alias, enable_mmdet_import_alias,
                                      mmdet_import_alias_enabled)
        try:
            import mmdet
        except ModuleNotFoundError:
            print('OFF')
        assert not mmdet_import_alias_enabled()

        enable_mmdet_import_alias()
        enable_mmdet_import_alias()  # a second call changes nothing
        assert sys.meta_path.count(sys.meta_path[0]) == 1
        import mmdet
        from mmdet.registry import MODELS
        from mmdet.models.backbones import ResNet
        import mmdet.structures.bbox
        import mmdet_lite.registry, mmdet_lite.models.backbones, mmdet_lite.structures.bbox
        assert mmdet is mmdet_lite
        assert MODELS is mmdet_lite.registry.MODELS
        assert ResNet is mmdet_lite.models.backbones.ResNet
        assert mmdet.structures.bbox is mmdet_lite.structures.bbox
        assert sys.modules['mmdet.registry'] is mmdet_lite.registry
        # the modules keep their own names and specs
        assert mmdet_lite.registry.__spec__.name == 'mmdet_lite.registry'
        assert ResNet.__module__ == 'mmdet_lite.models.backbones.resnet'
        assert MODELS.build(dict(type='ResNet', depth=18, base_channels=8)).depth == 18
        try:
            import mmdet.no_such_module
        except ModuleNotFoundError as err:
            print('MISSING', err.name)

        disable_mmdet_import_alias()
        assert not [name for name in sys.modules if name.split('.')[0] == 'mmdet']
        try:
            import mmdet
        except ModuleNotFoundError:
            print('OFF AGAIN')
    ''')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split('\n')[:3] == ['OFF', 'MISSING mmdet.no_such_module', 'OFF AGAIN']


def test_environment_variable_turns_it_on_at_import():
    proc = run_python('''
        import mmdet_lite
        from mmdet.registry import MODELS
        import mmdet_lite.registry
        print(MODELS is mmdet_lite.registry.MODELS)
    ''', {'MMDET_LITE_ALIAS_MMDET': '1'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == 'True'


def test_custom_imports_plugin_written_for_mmdetection(tmp_path):
    (tmp_path / 'my_mmdet_plugin.py').write_text(textwrap.dedent('''
        from mmdet.models.backbones import ResNet
        from mmdet.registry import MODELS


        @MODELS.register_module()
        class PluginResNet(ResNet):
            """A backbone a third-party package registers through mmdetection's names."""
    '''))
    config = tmp_path / 'plugin_config.py'
    config.write_text(textwrap.dedent('''
        default_scope = 'mmdet'
        custom_imports = dict(imports=['my_mmdet_plugin'], allow_failed_imports=False)
        model = dict(type='mmdet.PluginResNet', depth=18, base_channels=8)
    '''))
    proc = run_python(f'''
        import mmdet_lite
        from mmdet_lite.apis.config_loading import load_config
        from mmdet_lite.registry import MODELS
        cfg = load_config({str(config)!r})
        model = MODELS.build(cfg.model)
        print(type(model).__name__, type(model).__module__, MODELS.module_dict['PluginResNet']
              is type(model))
    ''', {'MMDET_LITE_ALIAS_MMDET': '1', 'PYTHONPATH': str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == 'PluginResNet my_mmdet_plugin True'


def test_refused_while_a_real_mmdet_is_importable(tmp_path):
    (tmp_path / 'mmdet').mkdir()
    (tmp_path / 'mmdet' / '__init__.py').write_text('REAL = True\n')
    proc = run_python('''
        try:
            import mmdet_lite
        except ImportError as err:
            print(type(err).__name__, err)
        import mmdet
        print('REAL', mmdet.REAL)
    ''', {'MMDET_LITE_ALIAS_MMDET': '1', 'PYTHONPATH': str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = proc.stdout.strip().split('\n')
    assert first.startswith("MmdetAliasError the 'mmdet' import alias of mmdet_lite is refused: "
                            f"mmdetection is installed ({tmp_path / 'mmdet' / '__init__.py'})")
    assert 'MMDET_LITE_ALIAS_MMDET' in first
    assert second == 'REAL True'
