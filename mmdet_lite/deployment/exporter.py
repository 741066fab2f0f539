"""Write an adapter's graphs to ``torch.export`` (``.pt2``) or ONNX files, with a manifest.

Files for ``out='work/retinanet.onnx'``: the image graph at ``work/retinanet.onnx``, any
further graph as ``work/retinanet.<name>.onnx`` (two-stage: ``roi_bbox``, ``roi_mask``) and
``work/retinanet.json``, the manifest :func:`load_runners` and ``onnx_infer.py`` read:
format, input size, graph files with their input/output names, and whether the graph holds
the post-processing.

ONNX goes through ``torch.onnx.export``: by default its dynamo exporter (``dynamo=True``,
torch.export + onnxscript, opset >= 18; weights inside the one ``.onnx`` file, which limits
a graph to 2 GB), or the TorchScript exporter (``onnx_exporter='torchscript'``, much faster
to export), which the tests check as well.
"""
import inspect
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence

import torch
from torch.export import Dim

from .adapter import ExportAdapter, ExportGraph, Runner
from .runners import OrtRunner, load_torch_export

FORMATS = ('torch_export', 'onnx')
ONNX_EXPORTERS = ('dynamo', 'torchscript')
DEFAULT_OPSET = 18
_EXTENSIONS = dict(torch_export='.pt2', onnx='.onnx')


def graph_files(out: str, names: Sequence[str]) -> Dict[str, str]:
    """``{name: path}``: ``out`` for the first graph, ``<stem>.<name><ext>`` for the rest."""
    stem, ext = osp.splitext(out)
    return {name: out if i == 0 else f'{stem}.{name}{ext}' for i, name in enumerate(names)}


def manifest_path(out: str) -> str:
    return osp.splitext(out)[0] + '.json'


def _dynamic_shapes(graph: ExportGraph) -> Optional[tuple]:
    if not graph.dynamic_dims:
        return None
    dims = {name: Dim(name, min=1) for axes in graph.dynamic_dims.values()
            for name in axes.values()}
    shapes = tuple({axis: dims[dim] for axis, dim in graph.dynamic_dims[name].items()}
                   if name in graph.dynamic_dims else None for name in graph.input_names)
    params = list(inspect.signature(graph.module.forward).parameters.values())
    if len(params) == 1 and params[0].kind == params[0].VAR_POSITIONAL:
        return (shapes, )  # forward(*inputs): one entry, the tuple of all inputs
    return shapes


def export_torch(graph: ExportGraph, path: str) -> torch.export.ExportedProgram:
    """``torch.export.export`` the graph and ``torch.export.save`` it to ``path``."""
    with torch.no_grad():
        program = torch.export.export(graph.module, graph.example_inputs,
                                      dynamic_shapes=_dynamic_shapes(graph))
    torch.export.save(program, path)
    return program


def export_onnx(graph: ExportGraph, path: str, opset: int = DEFAULT_OPSET,
                exporter: str = 'dynamo', custom_translation_table: Optional[dict] = None) -> None:
    """``torch.onnx.export`` the graph to ``path``.

    Args:
        graph (ExportGraph): What to export.
        path (str): The ``.onnx`` file.
        opset (int): ONNX opset (>= 16 for RoiAlign's half-pixel mode and GridSample).
        exporter (str): 'dynamo' or 'torchscript'.
        custom_translation_table (dict, optional): Dynamo exporter: onnxscript functions of
            custom ops (the in-graph NMS).
    """
    if exporter not in ONNX_EXPORTERS:
        raise ValueError(f'onnx exporter must be one of {ONNX_EXPORTERS}, got {exporter!r}')
    kwargs = dict(input_names=graph.input_names, output_names=graph.output_names,
                  opset_version=opset)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        if exporter == 'dynamo':
            torch.onnx.export(graph.module, graph.example_inputs, path, dynamo=True,
                              dynamic_shapes=_dynamic_shapes(graph), verbose=False,
                              custom_translation_table=custom_translation_table,
                              optimize=True, external_data=False, **kwargs)
        else:
            torch.onnx.export(graph.module, graph.example_inputs, path, dynamo=False,
                              dynamic_axes=graph.dynamic_dims or None, **kwargs)


def export_adapter(adapter: ExportAdapter, out: str, fmt: str, dynamic_batch: bool = False,
                   with_postprocess: bool = False, opset: int = DEFAULT_OPSET,
                   onnx_exporter: str = 'dynamo', config: Optional[str] = None) -> dict:
    """Export every graph of ``adapter`` and write the manifest.

    Args:
        adapter (ExportAdapter): The detector's adapter.
        out (str): File of the image graph (``.pt2`` / ``.onnx``).
        fmt (str): 'torch_export' or 'onnx'.
        dynamic_batch (bool): Let the batch size vary (traced with a batch of 2, as
            torch.export specializes a size of 1).
        with_postprocess (bool): ONNX only: decode + NMS inside the graph (one graph
            giving ``dets`` [B, N, 5] and ``labels`` [B, N]).
        opset (int): ONNX opset.
        onnx_exporter (str): 'dynamo' or 'torchscript'.
        config (str, optional): Config path, recorded in the manifest.

    Returns:
        dict: The manifest.
    """
    if fmt not in FORMATS:
        raise ValueError(f'--format must be one of {FORMATS}, got {fmt!r}')
    if with_postprocess and fmt != 'onnx':
        raise ValueError('--with-postprocess needs --format onnx: NMS has a data-dependent '
                         'output size, which only ONNX NonMaxSuppression expresses')
    batch_size = 2 if dynamic_batch else 1
    if with_postprocess:
        graphs: List[ExportGraph] = [adapter.postprocess_graph(batch_size, dynamic_batch)]
    else:
        graphs = adapter.graphs(batch_size, dynamic_batch)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    files = graph_files(out, [g.name for g in graphs])
    for graph in graphs:
        if fmt == 'torch_export':
            export_torch(graph, files[graph.name])
        else:
            table = None
            if with_postprocess:
                from .onnx_nms import onnx_translation_table, register_torchscript_symbolic
                if onnx_exporter == 'dynamo':
                    table = onnx_translation_table()
                else:
                    register_torchscript_symbolic(opset)
            export_onnx(graph, files[graph.name], opset, onnx_exporter, table)
    manifest = dict(
        format=fmt, detector=type(adapter.model).__name__, config=config,
        input_shape=list(adapter.input_shape), dynamic_batch=dynamic_batch,
        with_postprocess=with_postprocess, opset=opset if fmt == 'onnx' else None,
        onnx_exporter=onnx_exporter if fmt == 'onnx' else None,
        graphs={g.name: dict(file=osp.basename(files[g.name]), inputs=g.input_names,
                             outputs=g.output_names) for g in graphs})
    with open(manifest_path(out), 'w', encoding='utf-8') as f:
        json.dump(manifest, f, indent=2)
    return manifest


def read_manifest(path: str) -> dict:
    """The manifest of an exported model, given the model file or the ``.json`` itself."""
    json_path = path if path.endswith('.json') else manifest_path(path)
    if not osp.isfile(json_path):
        raise FileNotFoundError(f'no export manifest {json_path} (written by '
                                'tools/deployment/export.py next to the model file)')
    with open(json_path, encoding='utf-8') as f:
        manifest = json.load(f)
    manifest['root'] = osp.dirname(osp.abspath(json_path))
    return manifest


def load_runners(manifest: dict, num_threads: int = 0) -> Dict[str, Runner]:
    """One runner per graph of the manifest (onnxruntime or ``torch.export.load``)."""
    runners = {}
    for name, graph in manifest['graphs'].items():
        path = osp.join(manifest['root'], graph['file'])
        if not osp.isfile(path):
            raise FileNotFoundError(f'exported graph {name!r} not found: {path}')
        runners[name] = OrtRunner(path, num_threads) if manifest['format'] == 'onnx' else \
            load_torch_export(path)
    return runners
