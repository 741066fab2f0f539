"""Registries: mmengine children with scope 'mmdet_lite', fallback to mmengine/mmcv, errors."""
import mmengine.registry as mmengine_registry
import pytest
import torch
from mmengine import DefaultScope

import mmdet_lite.registry as registry
from mmdet_lite.registry import MODELS, OPTIMIZERS, TRANSFORMS

REGISTRY_NAMES = [
    'MODELS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'METRICS', 'EVALUATOR', 'TASK_UTILS',
    'HOOKS', 'LOOPS', 'RUNNERS', 'RUNNER_CONSTRUCTORS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'VISUALIZERS', 'VISBACKENDS',
    'LOG_PROCESSORS', 'WEIGHT_INITIALIZERS', 'MODEL_WRAPPERS'
]


@pytest.mark.parametrize('name', REGISTRY_NAMES)
def test_registry_is_scoped_child_of_mmengine_root(name):
    ours = getattr(registry, name)
    root = getattr(mmengine_registry, name)
    assert ours.scope == 'mmdet_lite'
    assert ours.parent is root
    assert root._children['mmdet_lite'] is ours
    assert ours.name == root.name


def test_builds_mmcv_conv_module_through_parent():
    conv = MODELS.build(dict(type='ConvModule', in_channels=3, out_channels=4, kernel_size=3,
                             padding=1, norm_cfg=dict(type='BN')))
    assert type(conv).__name__ == 'ConvModule'
    assert set(conv.state_dict()) >= {'conv.weight', 'bn.weight', 'bn.running_mean'}
    assert conv(torch.rand(2, 3, 5, 5)).shape == (2, 4, 5, 5)


def test_builds_mmcv_transform_through_parent():
    # No explicit `import mmcv.transforms`: the TRANSFORMS location import
    # (mmdet_lite.datasets.transforms) must make mmcv's transforms available.
    # (ImageToTensor is mmdetection's own now, as in mmdetection; CenterCrop is mmcv's only.)
    crop = TRANSFORMS.build(dict(type='CenterCrop', crop_size=8))
    assert type(crop).__module__.startswith('mmcv.transforms')
    assert crop.crop_size == (8, 8)


def test_load_image_is_mmcv_compatible_subclass():
    # mmdet_lite registers a LoadImageFromFile that names unreadable files; it keeps
    # mmcv's arguments and class, so configs written for mmcv/mmdet still build.
    from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
    load = TRANSFORMS.build(dict(type='LoadImageFromFile', to_float32=True))
    assert isinstance(load, MMCVLoadImageFromFile)
    assert load.to_float32 is True


def test_builds_mmengine_optimizer():
    model = torch.nn.Linear(2, 1)
    optim = OPTIMIZERS.build(dict(type='SGD', params=model.parameters(), lr=0.02,
                                  momentum=0.9, weight_decay=1e-4))
    assert isinstance(optim, torch.optim.SGD)
    assert optim.defaults['lr'] == 0.02 and optim.defaults['momentum'] == 0.9


def test_builds_own_module_without_default_scope():
    neck = MODELS.build(dict(type='FPN', in_channels=[4, 8], out_channels=4, num_outs=2))
    assert type(neck).__module__ == 'mmdet_lite.models.necks.fpn'
    assert MODELS.get('mmdet_lite.FPN') is type(neck)


def test_unknown_type_names_type_registry_scope_and_suggestion():
    with pytest.raises(KeyError, match=r"Unknown type 'FPNN' in the 'model' registry "
                                       r"\(scope 'mmdet_lite'\)\. Did you mean one of: FPN"):
        MODELS.build(dict(type='FPNN', in_channels=[4], out_channels=4, num_outs=1))
    with pytest.raises(KeyError, match="'SGDD' in the 'optimizer' registry.*SGD"):
        OPTIMIZERS.get('SGDD')


def test_contains_does_not_raise():
    assert 'FPN' in MODELS
    assert 'ConvModule' in MODELS
    assert 'FPNN' not in MODELS


def test_register_all_modules_sets_default_scope():
    from mmdet_lite.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'mmdet_lite'
    # With the default scope set, the mmengine root MODELS resolves our types too.
    neck = mmengine_registry.MODELS.build(
        dict(type='ChannelMapper', in_channels=[4], out_channels=2, num_outs=1))
    assert type(neck).__module__ == 'mmdet_lite.models.necks.channel_mapper'
