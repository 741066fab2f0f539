"""What the export tests check, shared by the model families' test files.

- :func:`assert_raw_outputs_equal`: an exported graph's outputs against the eager module's
  on the same inputs (max |diff| <= 1e-4);
- :func:`eager_predict`: the detector's own ``test_step`` path (data preprocessor, then
  ``predict``) on raw images, the reference for the detections;
- :func:`assert_same_detections`: same count, labels equal, boxes within 1e-3, scores within
  1e-4 (and masks equal, when present), pairing detections by score order with a fallback
  for scores so close that float noise may swap them.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from mmdet_lite.deployment import ModuleRunner, export_adapter, load_runners
from mmdet_lite.deployment.exporter import read_manifest
from mmdet_lite.models.utils import set_cpu_ops
from mmdet_lite.structures import DetDataSample

RAW_TOL = 1e-4
BOX_TOL = 1e-3
SCORE_TOL = 1e-4


def make_metas(input_shape: Sequence[int], batch_size: int = 1,
               ori_scale: Tuple[float, float] = (1.5, 2.0)) -> List[dict]:
    """Metas of images filling the input, from originals ``ori_scale`` (w, h) times larger."""
    height, width = input_shape
    ori_shape = (int(height * ori_scale[1]), int(width * ori_scale[0]))
    return [dict(img_shape=(height, width), ori_shape=ori_shape,
                 scale_factor=(width / ori_shape[1], height / ori_shape[0]))
            for _ in range(batch_size)]


def eager_predict(model, images: Sequence[Tensor], metas: Sequence[dict]) -> list:
    """``model.test_step``'s path on raw [3, h, w] images: preprocessor, then ``predict``.

    Returns:
        list[InstanceData]: ``pred_instances`` of each image.
    """
    samples = [DetDataSample(metainfo=dict(meta)) for meta in metas]
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), False)
        results = model(**data, mode='predict')
    return [r.pred_instances for r in results]


def full_metas(metas: Sequence[dict], input_shape: Sequence[int]) -> List[dict]:
    """``metas`` with the ``pad_shape``/``batch_input_shape`` the preprocessor would add."""
    return [dict(meta, pad_shape=tuple(input_shape), batch_input_shape=tuple(input_shape))
            for meta in metas]


def assert_raw_outputs_equal(expected: Sequence[Tensor], actual: Sequence[Tensor],
                             names: Sequence[str] = (), tol: float = RAW_TOL) -> float:
    """Same number and shapes of outputs, max |diff| <= ``tol``; returns the max diff."""
    assert len(expected) == len(actual), (len(expected), len(actual))
    worst = 0.0
    for i, (exp, act) in enumerate(zip(expected, actual)):
        name = names[i] if i < len(names) else str(i)
        assert tuple(exp.shape) == tuple(act.shape), (name, exp.shape, act.shape)
        diff = (exp.float() - act.float()).abs().max().item() if exp.numel() else 0.0
        assert diff <= tol, f'{name}: max |diff| {diff} > {tol}'
        worst = max(worst, diff)
    return worst


def _pairs(expected, actual) -> List[Tuple[int, int]]:
    """Pair detections: by descending score, else greedily by label and box."""
    exp_order = torch.argsort(expected.scores, descending=True, stable=True).tolist()
    act_order = torch.argsort(actual.scores, descending=True, stable=True).tolist()
    pairs = list(zip(exp_order, act_order))
    if all(expected.labels[i] == actual.labels[j] and
           (expected.bboxes[i] - actual.bboxes[j]).abs().max() <= BOX_TOL for i, j in pairs):
        return pairs
    free, pairs = set(range(len(actual))), []
    for i in exp_order:
        match = next((j for j in sorted(free) if actual.labels[j] == expected.labels[i] and
                      (expected.bboxes[i] - actual.bboxes[j]).abs().max() <= BOX_TOL), None)
        assert match is not None, f'eager detection {i} ({expected.bboxes[i].tolist()}, ' \
                                  f'label {int(expected.labels[i])}) has no exported match'
        free.discard(match)
        pairs.append((i, match))
    return pairs


def assert_same_detections(expected_list, actual_list, min_total: int = 1) -> float:
    """Per image: same count, equal labels, boxes within 1e-3, scores within 1e-4, masks equal.

    Args:
        expected_list (list[InstanceData]): Eager ``predict``'s.
        actual_list (list[InstanceData]): The exported graphs' + post-processing.
        min_total (int): At least this many detections over the batch, so that the
            comparison is not vacuous.

    Returns:
        float: The largest box difference.
    """
    assert len(expected_list) == len(actual_list)
    total, worst = 0, 0.0
    for expected, actual in zip(expected_list, actual_list):
        assert len(expected) == len(actual), (len(expected), len(actual))
        total += len(expected)
        for i, j in _pairs(expected, actual):
            assert int(expected.labels[i]) == int(actual.labels[j])
            box_diff = (expected.bboxes[i] - actual.bboxes[j]).abs().max().item()
            assert box_diff <= BOX_TOL, (i, expected.bboxes[i], actual.bboxes[j])
            assert abs(float(expected.scores[i]) - float(actual.scores[j])) <= SCORE_TOL
            worst = max(worst, box_diff)
            if 'masks' in expected:
                mismatch = (expected.masks[i] != actual.masks[j]).float().mean().item()
                # a pixel whose probability sits at the 0.5 threshold may flip with noise
                assert mismatch <= 1e-3, f'mask {i}: {mismatch:.4%} of pixels differ'
    assert total >= min_total, f'only {total} detections: the comparison tests nothing'
    return worst


def export_and_load(adapter, tmp_path, fmt: str, **kwargs) -> Dict[str, object]:
    """Export with :func:`export_adapter` into ``tmp_path`` and load the runners back."""
    out = str(tmp_path / ('model.pt2' if fmt == 'torch_export' else 'model.onnx'))
    export_adapter(adapter, out, fmt, **kwargs)
    return load_runners(read_manifest(out), num_threads=1)


def eager_runners(adapter) -> Dict[str, ModuleRunner]:
    """The adapter's graphs run eagerly (the reference for the raw outputs)."""
    return {g.name: ModuleRunner(g.module) for g in adapter.graphs()}


def raw_outputs_match(adapter, runners, batch_size: int = 1) -> float:
    """Every graph's exported outputs equal eager's on its example inputs; the max diff."""
    worst = 0.0
    for graph in adapter.graphs(batch_size):
        # exported graphs hold torchvision's RoIAlign (the op exporters know); eager runs
        # it too here instead of the CPU gather kernel, so the outputs compare bit for bit
        previous = set_cpu_ops(False)
        try:
            expected = ModuleRunner(graph.module)(*graph.example_inputs)
        finally:
            set_cpu_ops(previous)
        actual = runners[graph.name](*graph.example_inputs)
        worst = max(worst, assert_raw_outputs_equal(expected, actual, graph.output_names))
    return worst


__all__ = ['make_metas', 'eager_predict', 'full_metas', 'assert_raw_outputs_equal',
           'assert_same_detections', 'export_and_load', 'eager_runners',
           'raw_outputs_match']
