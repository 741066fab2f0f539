"""The ``deform_attn`` mode of tools/analysis_tools/benchmark.py at a tiny size, and its
helpers (DINO level sizes, encoder reference points, inputs). No timing is asserted."""
import importlib.util
import os.path as osp
import re

import pytest
import torch

from mmdet_lite.analysis.benchmark import (deform_attn_inputs, encoder_reference_points,
                                           level_shapes)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool_deform_attn', osp.join(ROOT, 'tools/analysis_tools/benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_dino_levels_of_800x1333():
    # ceil halving: 800 -> 400 -> 200 -> 100 -> 50 -> 25 -> 13; 1333 -> ... 167, 84, 42, 21
    assert level_shapes((800, 1333)) == [(100, 167), (50, 84), (25, 42), (13, 21)]
    assert level_shapes((64, 64)) == [(8, 8), (4, 4), (2, 2), (1, 1)]


def test_encoder_reference_points_are_pixel_centres():
    ref = encoder_reference_points([(2, 3), (1, 1)], batch=2)
    assert ref.shape == (2, 7, 2, 2)
    # first level, row 1, column 2: x = 2.5 / 3, y = 1.5 / 2; same point on both levels
    torch.testing.assert_close(ref[1, 5], torch.tensor([[2.5 / 3, 0.75]] * 2))
    torch.testing.assert_close(ref[0, 6], torch.tensor([[0.5, 0.5]] * 2))


def test_deform_attn_inputs_shapes():
    cases = deform_attn_inputs([(4, 4), (2, 2)], batch=2, queries=3, device=torch.device('cpu'),
                               embed_dims=8)
    query, value, boxes = cases['decoder_cross']
    assert (query.shape, value.shape, boxes.shape) == ((2, 3, 8), (2, 20, 8), (2, 3, 2, 4))
    assert boxes.min() >= 0 and boxes[..., 2:].max() <= 0.5
    query, value, ref = cases['encoder_self']
    assert query is value and ref.shape == (2, 20, 2, 2)


def test_deform_attn_mode_reports_every_case_batch_and_phase(capsys):
    tool.main(['deform_attn', '--shape', '64', '96', '--batch', '1', '2', '--queries', '7',
               '--repeat', '1', '--warmup', '0', '--threads', '1', '--device', 'cpu'])
    out = capsys.readouterr().out
    assert '== mmdet_lite benchmark: deform_attn ==' in out
    assert 'levels       : 8x12 4x6 2x3 1x2 from a 64x96 input (128 keys); decoder queries 7' in out
    assert re.search(r'^machine .*1 threads; device cpu$', out, re.MULTILINE)
    assert 'extra_rss_mb' in out
    rows = re.findall(r'^(decoder_cross|encoder_self)\s+(\d)\s+(forward|fwd\+bwd)'
                      r'((?:\s+[\d.]+){4})\s+(-?\d+)$', out, re.MULTILINE)
    assert sorted((case, int(b), phase) for case, b, phase, _, _ in rows) == sorted(
        (case, b, phase) for case in ('decoder_cross', 'encoder_self') for b in (1, 2)
        for phase in ('forward', 'fwd+bwd'))
    for *_, times, _ in rows:
        median, low, high, _ = (float(v) for v in times.split())
        assert low <= median <= high


def test_deform_attn_mode_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit) as exc:
        tool.main(['deform_attn', '--shape', '0', '64'])
    assert exc.value.code == 2
    assert 'must be positive' in capsys.readouterr().err
