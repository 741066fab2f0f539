"""tools/model_converters: publish_model, fuse_conv_bn, upgrade_model_version.

Each tool's ``main(argv)`` runs in-process through the ``call_tool`` fixture on the tiny
shapes Faster R-CNN (random weights, saved by the tests) or on hand-made old-style
checkpoints whose expected upgrade is worked out here from what each layer computes.
"""
import hashlib
import os
import pathlib
import zipfile

import pytest
import torch
import torch.nn.functional as F
from helpers_tools import TINY_CONFIG, load_script
from mmengine.logging import HistoryBuffer
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.apis import init_detector
from mmdet_lite.engine.checkpoint import load_local_checkpoint
from mmdet_lite.models.utils import fuse_conv_bn

PUBLISH = 'tools/model_converters/publish_model.py'
FUSE = 'tools/model_converters/fuse_conv_bn.py'
UPGRADE = 'tools/model_converters/upgrade_model_version.py'
CLASSES = ('circle', 'rectangle', 'triangle')

upgrade = load_script(UPGRADE)


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)


def _error_line(result) -> str:
    """The one ``error: ...`` line of a tool that exited with status 2."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    return lines[0]


@pytest.fixture(scope='module')
def tiny_model():
    """The tiny Faster R-CNN in eval mode, with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = init_detector(TINY_CONFIG)
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


@pytest.fixture(scope='module')
def training_checkpoint(tiny_model, tmp_path_factory):
    """What a Runner saves: meta, weights, SGD momentum state, message hub, schedulers."""
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.01, momentum=0.9)
    for param in tiny_model.parameters():
        param.grad = torch.ones_like(param)
    optimizer.step()  # a momentum buffer per parameter: the optimizer is as big as the model
    optimizer.zero_grad(set_to_none=True)
    buffer = HistoryBuffer()
    buffer.update(0.5)
    path = tmp_path_factory.mktemp('ckpt') / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1, dataset_meta=dict(classes=CLASSES)),
                    state_dict=tiny_model.state_dict(), optimizer=optimizer.state_dict(),
                    message_hub=dict(log_scalars=dict(loss=buffer)),
                    param_schedulers=[dict(base_lrs=[0.01], last_epoch=1)]), path)
    return path


# ------------------------------------------------------------------------ publish_model

def test_publish_keeps_meta_and_weights_and_names_the_file_by_its_hash(
        call_tool, training_checkpoint, tiny_model, tmp_path):
    result = call_tool(PUBLISH, [training_checkpoint, tmp_path / 'tiny.pth'])
    assert result.returncode == 0, result.stderr
    files = os.listdir(tmp_path)
    assert len(files) == 1  # no temporary or un-hashed file left behind
    published = tmp_path / files[0]
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert files[0] == f'tiny-{digest[:8]}.pth'
    assert published.stat().st_size < training_checkpoint.stat().st_size / 1.5
    assert not zipfile.is_zipfile(published)  # legacy format, as mmdetection writes

    checkpoint = load_local_checkpoint(str(published))  # the weights-only loader takes it
    assert set(checkpoint) == {'meta', 'state_dict'}
    assert checkpoint['meta']['dataset_meta']['classes'] == CLASSES
    expected = tiny_model.state_dict()
    assert list(checkpoint['state_dict']) == list(expected)
    for key, value in expected.items():
        assert torch.equal(checkpoint['state_dict'][key], value), key
    model = init_detector(TINY_CONFIG, str(published))
    assert model.dataset_meta['classes'] == CLASSES


def test_publish_save_keys_and_a_name_without_pth(call_tool, training_checkpoint, tmp_path):
    result = call_tool(PUBLISH, [training_checkpoint, tmp_path / 'model', '--save-keys',
                                 'state_dict', 'optimizer'])
    assert result.returncode == 0, result.stderr
    [name] = os.listdir(tmp_path)
    assert name.startswith('model-') and name.endswith('.pth') and len(name) == 18
    assert set(load_local_checkpoint(str(tmp_path / name))) == {'state_dict', 'optimizer'}


def test_publish_refuses_untrusted_objects_unless_the_file_is_trusted(call_tool, tmp_path):
    source = tmp_path / 'in' / 'custom.pth'
    source.parent.mkdir()
    torch.save(dict(meta=dict(work_dir=pathlib.PurePosixPath('/runs/x')),
                    state_dict=dict(w=torch.ones(2))), source)
    out_dir = tmp_path / 'out'
    line = _error_line(call_tool(PUBLISH, [source, out_dir / 'm.pth']))
    assert 'pathlib.PurePosixPath' in line and '--trust-checkpoint' in line
    assert not out_dir.exists() or not os.listdir(out_dir)

    result = call_tool(PUBLISH, [source, out_dir / 'm.pth', '--trust-checkpoint', source])
    assert result.returncode == 0, result.stderr
    assert 'will need --trust-checkpoint' in result.stderr  # the meta still holds the path
    [name] = os.listdir(out_dir)
    assert name.startswith('m-')


@pytest.mark.parametrize('case', ['missing', 'no_save_keys'])
def test_publish_bad_input_is_one_line(call_tool, tmp_path, case):
    source = tmp_path / 'weights.pth'
    if case == 'no_save_keys':
        torch.save(dict(w=torch.ones(1)), source)  # a bare state dict: nothing to keep
    line = _error_line(call_tool(PUBLISH, [source, tmp_path / 'out.pth']))
    assert ('in_file: checkpoint not found' in line if case == 'missing' else
            'none of the --save-keys (meta, state_dict)' in line and 'w' in line)


# ------------------------------------------------------------------------ fuse_conv_bn

def test_fuse_tool_saves_weights_that_give_the_unfused_outputs(
        call_tool, training_checkpoint, tiny_model, tmp_path):
    out = tmp_path / 'fused.pth'
    result = call_tool(FUSE, [TINY_CONFIG, training_checkpoint, out])
    assert result.returncode == 0, result.stderr
    assert 'folded 20 of 20 BatchNorm layers' in result.stdout  # ResNet-18: 20 BNs

    checkpoint = load_local_checkpoint(str(out))
    assert checkpoint['meta']['fused_conv_bn'] is True
    assert checkpoint['meta']['dataset_meta']['classes'] == CLASSES
    state_dict = checkpoint['state_dict']
    assert not any('bn' in key or 'running_' in key for key in state_dict)
    assert 'backbone.conv1.bias' in state_dict and 'backbone.conv1.bias' not in \
        tiny_model.state_dict()

    fused = fuse_conv_bn(init_detector(TINY_CONFIG))  # the layout the file was saved from
    fused.load_state_dict(state_dict, strict=True)
    images = torch.randn(2, 3, 64, 64)  # normalized, as the data preprocessor hands them
    with torch.no_grad():
        for out_fused, out_ref in zip(fused.extract_feat(images),
                                      tiny_model.extract_feat(images)):
            torch.testing.assert_close(out_fused, out_ref, atol=1e-5, rtol=1e-5)


def test_fuse_tool_missing_files_are_one_line(call_tool, training_checkpoint, tmp_path):
    line = _error_line(call_tool(FUSE, [tmp_path / 'nope.py', training_checkpoint,
                                        tmp_path / 'o.pth']))
    assert 'config file not found' in line and 'nope.py' in line
    line = _error_line(call_tool(FUSE, [TINY_CONFIG, tmp_path / 'nope.pth', tmp_path / 'o.pth']))
    assert 'checkpoint file not found' in line and 'nope.pth' in line


# ------------------------------------------------------------------- upgrade_model_version

# A 1.x two-stage config as its checkpoints stored it: the file name first, then the text,
# with statements the reader must skip (an import, a call, string concatenation).
V1_FASTER_RCNN = """configs/mask_rcnn_r50_fpn_1x.py
import os
# model settings
model = dict(
    type='MaskRCNN',
    rpn_head=dict(type='RPNHead', in_channels=2, anchor_ratios=[0.5, 1.0, 2.0]),
    bbox_head=dict(type='SharedFCBBoxHead', num_classes=4, reg_class_agnostic={agnostic}),
    mask_head=dict(type='FCNMaskHead', num_classes=4))
data_root = os.path.join('data', 'coco/')
data = dict(train=dict(ann_file=data_root + 'train.json'))
"""
NUM_CLASSES = 4  # 3 object classes + background, old style


def _save_old(path, config, version, state_dict):
    torch.save(dict(meta=dict(config=config, mmdet_version=version, epoch=12),
                    state_dict=state_dict, optimizer=dict(state={}, param_groups=[])), path)


def _old_two_stage_weights():
    """Old shapes: background first in fc_cls, 4 deltas for it in fc_reg, a mask for it."""
    return {
        'backbone.conv1.weight': torch.randn(2, 3, 1, 1),
        'rpn_head.rpn_cls.weight': torch.randn(3, 2, 1, 1),  # sigmoid RPN, 3 anchors
        'rpn_head.rpn_cls.bias': torch.randn(3),
        'rpn_head.rpn_reg.weight': torch.randn(12, 2, 1, 1),
        'bbox_head.shared_fcs.0.weight': torch.randn(5, 8),
        'bbox_head.fc_cls.weight': torch.randn(NUM_CLASSES, 5),
        'bbox_head.fc_cls.bias': torch.randn(NUM_CLASSES),
        'bbox_head.fc_reg.weight': torch.randn(NUM_CLASSES * 4, 5),
        'bbox_head.fc_reg.bias': torch.randn(NUM_CLASSES * 4),
        'mask_head.conv_logits.weight': torch.randn(NUM_CLASSES, 2, 1, 1),
        'mask_head.conv_logits.bias': torch.randn(NUM_CLASSES),
    }


def test_upgrade_v1_two_stage_moves_heads_and_background(call_tool, tmp_path):
    old = _old_two_stage_weights()
    source, target = tmp_path / 'v1.pth', tmp_path / 'v3.pth'
    _save_old(source, V1_FASTER_RCNN.format(agnostic=False), '1.0rc0+e3f3e5e', old)
    result = call_tool(UPGRADE, [source, target, '--num-classes', NUM_CLASSES])
    assert result.returncode == 0, result.stderr
    upgraded = load_local_checkpoint(str(target))
    assert upgraded['meta']['epoch'] == 12 and 'optimizer' in upgraded  # rest kept
    new = upgraded['state_dict']
    assert list(new) == [
        'backbone.conv1.weight', 'rpn_head.rpn_cls.weight', 'rpn_head.rpn_cls.bias',
        'rpn_head.rpn_reg.weight', 'roi_head.bbox_head.shared_fcs.0.weight',
        'roi_head.bbox_head.fc_cls.weight', 'roi_head.bbox_head.fc_cls.bias',
        'roi_head.bbox_head.fc_reg.weight', 'roi_head.bbox_head.fc_reg.bias',
        'roi_head.mask_head.conv_logits.weight', 'roi_head.mask_head.conv_logits.bias']
    for key in ('backbone.conv1.weight', 'rpn_head.rpn_reg.weight',
                'rpn_head.rpn_cls.weight', 'rpn_head.rpn_cls.bias'):
        # 3 sigmoid channels: no background channel to move
        assert torch.equal(new[key], old[key]), key

    # what each layer computes: old class k + 1 is new class k, old background is last
    x = torch.randn(6, 5)
    old_scores = F.linear(x, old['bbox_head.fc_cls.weight'], old['bbox_head.fc_cls.bias'])
    new_scores = F.linear(x, new['roi_head.bbox_head.fc_cls.weight'],
                          new['roi_head.bbox_head.fc_cls.bias'])
    torch.testing.assert_close(new_scores, old_scores[:, [1, 2, 3, 0]])
    old_deltas = F.linear(x, old['bbox_head.fc_reg.weight'], old['bbox_head.fc_reg.bias'])
    new_deltas = F.linear(x, new['roi_head.bbox_head.fc_reg.weight'],
                          new['roi_head.bbox_head.fc_reg.bias'])
    assert new_deltas.shape == (6, 12)
    torch.testing.assert_close(new_deltas, old_deltas[:, 4:])  # background's 4 deltas gone
    feats = torch.randn(1, 2, 3, 3)
    old_masks = F.conv2d(feats, old['mask_head.conv_logits.weight'],
                         old['mask_head.conv_logits.bias'])
    new_masks = F.conv2d(feats, new['roi_head.mask_head.conv_logits.weight'],
                         new['roi_head.mask_head.conv_logits.bias'])
    torch.testing.assert_close(new_masks, old_masks[:, 1:])


def test_upgrade_class_agnostic_regression_keeps_fc_reg(tmp_path):
    old = _old_two_stage_weights()
    old['bbox_head.fc_reg.weight'] = torch.randn(4, 5)
    old['bbox_head.fc_reg.bias'] = torch.randn(4)
    source, target = tmp_path / 'v1.pth', tmp_path / 'v3.pth'
    _save_old(source, V1_FASTER_RCNN.format(agnostic=True), '1.0.0', old)
    upgrade.convert(str(source), str(target), NUM_CLASSES)
    new = load_local_checkpoint(str(target))['state_dict']
    assert torch.equal(new['roi_head.bbox_head.fc_reg.weight'], old['bbox_head.fc_reg.weight'])
    assert torch.equal(new['roi_head.bbox_head.fc_reg.bias'], old['bbox_head.fc_reg.bias'])


@pytest.mark.parametrize('version, reordered', [('2.4.1', True), ('2.10.0', False)])
def test_softmax_rpn_is_reordered_per_anchor_only_before_2_5(tmp_path, version, reordered):
    # a pretty-printed 2.x config (no file-name line, roi_head layout); --num-classes 2 makes
    # the softmax RPN's (background, object) pairs the groups: 3 anchors x 2 channels
    config = ("model = dict(type='FasterRCNN', rpn_head=dict(type='RPNHead'), "
              "roi_head=dict(bbox_head=dict(type='Shared2FCBBoxHead', "
              "reg_class_agnostic=False)))\n")
    old = {'rpn_head.rpn_cls.weight': torch.randn(6, 2, 1, 1),
           'rpn_head.rpn_cls.bias': torch.randn(6)}
    source, target = tmp_path / 'v2.pth', tmp_path / 'v3.pth'
    _save_old(source, config, version, old)
    upgrade.convert(str(source), str(target), 2)
    new = load_local_checkpoint(str(target))['state_dict']
    order = [1, 0, 3, 2, 5, 4] if reordered else list(range(6))  # numbers, not strings
    for key in old:
        assert torch.equal(new[key], old[key][order]), key


def test_upgrade_retinanet_0_5_convs_become_conv_modules(tmp_path):
    config = ("configs/retinanet_r50_fpn_1x.py\n"
              "model = dict(type='RetinaNet', bbox_head=dict(type='RetinaHead', "
              "num_classes=4, stacked_convs=2))\n")
    old = {'bbox_head.cls_convs.0.weight': torch.randn(2, 2, 3, 3),
           'bbox_head.cls_convs.0.bias': torch.randn(2),
           'bbox_head.reg_convs.1.weight': torch.randn(2, 2, 3, 3),
           'bbox_head.retina_cls.weight': torch.randn(9 * 3, 2, 3, 3),  # sigmoid, 9 anchors
           'bbox_head.retina_cls.bias': torch.randn(9 * 3)}
    source, target = tmp_path / 'v05.pth', tmp_path / 'v3.pth'
    _save_old(source, config, '0.5.3', old)
    upgrade.convert(str(source), str(target), NUM_CLASSES)
    new = load_local_checkpoint(str(target))['state_dict']
    renamed = {'bbox_head.cls_convs.0.weight': 'bbox_head.cls_convs.0.conv.weight',
               'bbox_head.cls_convs.0.bias': 'bbox_head.cls_convs.0.conv.bias',
               'bbox_head.reg_convs.1.weight': 'bbox_head.reg_convs.1.conv.weight'}
    assert list(new) == [renamed.get(key, key) for key in old]
    for key, value in old.items():
        assert torch.equal(new[renamed.get(key, key)], value), key


def test_upgrade_ssd_cls_convs_move_background_per_anchor(tmp_path):
    config = "model = dict(type='SingleStageDetector', bbox_head=dict(type='SSDHead'))\n"
    weight = torch.randn(2 * NUM_CLASSES, 3, 3, 3)  # 2 anchors x 4 classes
    bias = torch.randn(2 * NUM_CLASSES)
    source, target = tmp_path / 'ssd.pth', tmp_path / 'v3.pth'
    _save_old(source, config, '1.0.0', {'bbox_head.cls_convs.0.weight': weight,
                                        'bbox_head.cls_convs.0.bias': bias})
    upgrade.convert(str(source), str(target), NUM_CLASSES)
    new = load_local_checkpoint(str(target))['state_dict']
    x = torch.randn(1, 3, 5, 5)
    old_out = F.conv2d(x, weight, bias)
    new_out = F.conv2d(x, new['bbox_head.cls_convs.0.weight'], new['bbox_head.cls_convs.0.bias'])
    torch.testing.assert_close(new_out, old_out[:, [1, 2, 3, 0, 5, 6, 7, 4]])


def test_config_is_read_without_running_it(call_tool, tmp_path):
    marker = tmp_path / 'ran.txt'
    config = (f"open({str(marker)!r}, 'w').write('ran')\n"
              "base = dict(type='RetinaHead', num_classes=4)\n"
              "model = dict(type='RetinaNet', bbox_head=dict(**base, stacked_convs=2 * 2 - 2))\n")
    assert upgrade.read_config_model(config) == dict(
        type='RetinaNet', bbox_head=dict(type='RetinaHead', num_classes=4, stacked_convs=2))
    source = tmp_path / 'ckpt.pth'
    code_in_model = "model = dict(type=__import__('os').getcwd(), rpn_head=dict())\n"
    _save_old(source, config + code_in_model, '1.0.0', dict(w=torch.ones(1)))
    line = _error_line(call_tool(UPGRADE, [source, tmp_path / 'out.pth']))
    assert 'meta.config has no `model = dict(...)`' in line
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


def test_upgrade_bad_input_is_one_line(call_tool, tmp_path):
    line = _error_line(call_tool(UPGRADE, [tmp_path / 'nope.pth', tmp_path / 'o.pth']))
    assert 'in_file: checkpoint not found' in line
    source = tmp_path / 'no_meta.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(1))), source)
    line = _error_line(call_tool(UPGRADE, [source, tmp_path / 'o.pth']))
    assert 'meta.config' in line and 'mmdet_version' in line
    line = _error_line(call_tool(UPGRADE, [source, tmp_path / 'o.pth', '--num-classes', '1']))
    assert '--num-classes' in line


@pytest.mark.parametrize('tool', [PUBLISH, FUSE, UPGRADE])
def test_help_shows_a_usage_example(call_tool, tool):
    result = call_tool(tool, ['--help'])
    assert result.returncode == 0
    assert f'example:\n  python {tool}' in result.stdout
