"""The ``zoo`` mode of tools/analysis_tools/benchmark.py on tiny configs, and its pieces
(config expansion, random proposals for detectors without an RPN). No timing is asserted
beyond "positive"."""
import importlib.util
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from mmdet_lite.analysis.benchmark_modes.random_detector import build_random_detector
from mmdet_lite.analysis.benchmark_modes.zoo import (NUM_PROPOSALS, add_random_proposals,
                                                     benchmark_config, expand_configs,
                                                     needs_proposals)
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = ['--shape', '64', '64', '--repeat', '1', '--warmup', '0', '--threads', '1']
# Depth-18 backbones of width 8 (stages 8/16/32/64 channels), 16-channel necks and heads.
# The RetinaNet keeps a Pretrained init_cfg: the zoo must drop it (nothing can be downloaded).
TINY_RETINANET = f"""
_base_ = '{ROOT}/configs/retinanet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(depth=18, base_channels=8,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    bbox_head=dict(num_classes=3, in_channels=16, feat_channels=16, stacked_convs=1))
"""
TINY_TWO_STAGE_HEADS = """
    backbone=dict(depth=18, base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32, num_classes=3)),
"""
TINY_FASTER_RCNN = f"""
_base_ = '{ROOT}/configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
model = dict({TINY_TWO_STAGE_HEADS}    rpn_head=dict(in_channels=16, feat_channels=16))
"""
TINY_FAST_RCNN = f"""
_base_ = '{ROOT}/configs/fast_rcnn/fast-rcnn_r50_fpn_1x_coco.py'
model = dict({TINY_TWO_STAGE_HEADS})
"""
BROKEN = "model = dict(type='NoSuchDetector')\n"


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool_zoo', osp.join(ROOT, 'tools/analysis_tools/benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def configs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp('zoo')
    paths = {}
    for name, text in (('retinanet', TINY_RETINANET), ('faster_rcnn', TINY_FASTER_RCNN),
                       ('fast_rcnn', TINY_FAST_RCNN), ('broken', BROKEN)):
        paths[name] = str(folder / f'{name}.py')
        (folder / f'{name}.py').write_text(text)
    return paths


def _num_params(config: str) -> int:
    """Parameters of the config's model, built directly (no init, no zoo code)."""
    register_all_modules()
    model = MODELS.build(Config.fromfile(config).model)
    return sum(p.numel() for p in model.parameters())


def test_expand_configs_walks_directories_and_skips_base(tmp_path):
    for rel in ('b.py', 'a.py', 'notes.md', 'sub/c.py', '_base_/models/d.py', '_base_/e.py'):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text('')
    single = str(tmp_path / 'missing.py')  # kept: it becomes a failed row, not an error
    assert expand_configs([str(tmp_path), single]) == [
        str(tmp_path / 'a.py'), str(tmp_path / 'b.py'), str(tmp_path / 'sub' / 'c.py'), single]
    only_base = tmp_path / 'only_base'
    (only_base / '_base_').mkdir(parents=True)
    (only_base / '_base_' / 'x.py').write_text('')
    with pytest.raises(FileNotFoundError, match='no config files'):
        expand_configs([str(only_base)])


def test_random_proposals_lie_in_the_image():
    samples = [DetDataSample(), DetDataSample()]
    add_random_proposals(samples, (64, 96), num=50)
    for sample in samples:
        bboxes = sample.proposals.bboxes
        assert bboxes.shape == (50, 4) and sample.proposals.scores.shape == (50, )
        assert (bboxes[:, 2:] > bboxes[:, :2]).all()
        assert (bboxes[:, 0] >= 0).all() and (bboxes[:, 2] <= 96).all()
        assert (bboxes[:, 1] >= 0).all() and (bboxes[:, 3] <= 64).all()
    assert not torch.equal(samples[0].proposals.bboxes, samples[1].proposals.bboxes)


def test_only_a_two_stage_detector_without_rpn_needs_proposals(configs):
    models = {name: build_random_detector(Config.fromfile(configs[name]).model)
              for name in ('retinanet', 'faster_rcnn', 'fast_rcnn')}
    assert [needs_proposals(m) for m in models.values()] == [False, False, True]


def test_fast_rcnn_runs_on_random_proposals_and_counts_every_parameter(configs):
    row = benchmark_config(configs['fast_rcnn'], None, (64, 64), repeat=1, warmup=0)
    assert row.status == 'ok'
    assert row.num_params == _num_params(configs['fast_rcnn'])
    assert row.inference.median_ms > 0 and len(row.inference.times) == 1
    assert NUM_PROPOSALS == 1000  # the RPN's test_cfg.rpn.max_per_img of the COCO configs


def test_zoo_mode_reports_each_config_and_survives_a_broken_one(configs, capsys):
    names = ('retinanet', 'broken', 'faster_rcnn')
    tool.main(['zoo', *(configs[n] for n in names), *TINY])
    out = capsys.readouterr().out
    assert '== mmdet_lite benchmark: zoo ==' in out
    assert re.search(r'^machine .*1 threads$', out, re.MULTILINE)
    assert 'status       : 2 ok, 1 failed' in out
    rows = re.findall(r'^(\S+\.py)\s+(\S+)\s+(\S+)\s+(\S+)  (.*)$', out, re.MULTILINE)
    assert [r[0] for r in rows] == [configs[n] for n in names]  # in command-line order
    for config, params, median, low, status in (rows[0], rows[2]):
        assert status == 'ok'
        assert 0 < float(low) <= float(median)  # one repeat: min == median
        assert float(params) == pytest.approx(_num_params(config) / 1e6, abs=0.005)
    assert rows[1][1:4] == ('-', '-', '-')
    assert rows[1][4].startswith('KeyError: ') and 'NoSuchDetector' in rows[1][4]


def test_zoo_mode_markdown_table(configs, capsys):
    tool.main(['zoo', configs['retinanet'], configs['broken'], *TINY, '--markdown'])
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines.index('| config | params (M) | inference ms (median of 1) |')
    assert lines[header + 1] == '|---|---|---|'
    rows = lines[header + 2:]
    assert len(rows) == 2
    match = re.fullmatch(r'\| `(.+)` \| ([\d.]+) \| ([\d.]+) \|', rows[0])
    assert match and match.group(1) == configs['retinanet'] and float(match.group(3)) > 0
    assert re.fullmatch(rf'\| `{re.escape(configs["broken"])}` \| - \| failed: KeyError: .*\|',
                        rows[1])


def test_zoo_mode_rejects_bad_settings_before_building(configs, capsys):
    for bad in (['--shape', '60', '64'], ['--repeat', '0']):
        with pytest.raises(SystemExit) as exc:
            tool.main(['zoo', configs['broken'], *bad])
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert 'multiples of 32' in err and '--repeat must be >= 1' in err


def test_drop_pretrained_removes_every_checkpoint_loading_init_cfg():
    from mmdet_lite.analysis.benchmark_modes.random_detector import drop_pretrained
    kaiming = dict(type='Kaiming', layer='Conv2d')
    cfg = dict(
        backbone=dict(type='PyramidVisionTransformerV2',  # PVT reads a bare checkpoint
                      init_cfg=dict(checkpoint='https://example.invalid/pvt.pth')),
        neck=dict(init_cfg=dict(type='Pretrained', checkpoint='x.pth', prefix='neck.')),
        head=dict(init_cfg=[kaiming, dict(type='Pretrained', checkpoint='y.pth')]),
        roi=[dict(init_cfg=[dict(type='Pretrained', checkpoint='z.pth')])],
        keep=dict(init_cfg=dict(type='Normal', std=0.01)))
    drop_pretrained(cfg)
    assert cfg['backbone']['init_cfg'] is None and cfg['neck']['init_cfg'] is None
    assert cfg['head']['init_cfg'] == [kaiming]
    assert cfg['roi'][0]['init_cfg'] is None
    assert cfg['keep']['init_cfg'] == dict(type='Normal', std=0.01)
