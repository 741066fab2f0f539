"""Run an exported graph like a function: tensors in, a tuple of tensors out.

:meth:`ExportAdapter.predict` takes one runner per graph, so the same glue drives the eager
modules, ``torch.export`` programs and onnxruntime sessions.
"""
from typing import Tuple

import numpy as np
import torch
from torch import Tensor, nn


class ModuleRunner:
    """An ``nn.Module`` (eager, or ``ExportedProgram.module()``) under ``no_grad``."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, *inputs: Tensor) -> Tuple[Tensor, ...]:
        with torch.no_grad():
            outs = self.module(*inputs)
        return tuple(outs) if isinstance(outs, (tuple, list)) else (outs, )


class OrtRunner:
    """An onnxruntime ``InferenceSession`` on the CPU.

    Args:
        path (str): The ``.onnx`` file.
        num_threads (int): Intra-op threads; 0 lets onnxruntime choose.
    """

    def __init__(self, path: str, num_threads: int = 0) -> None:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.log_severity_level = 3  # errors only: no notes about unused initializers
        self.session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, *inputs: Tensor) -> Tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f'the ONNX graph takes {len(self.input_names)} inputs '
                             f'{self.input_names}, got {len(inputs)}')
        feeds = {name: np.ascontiguousarray(t.detach().cpu().numpy())
                 for name, t in zip(self.input_names, inputs)}
        return tuple(torch.from_numpy(out) for out in self.session.run(None, feeds))


def load_torch_export(path: str) -> ModuleRunner:
    """A runner of a ``torch.export.save``-d program (``.pt2``)."""
    return ModuleRunner(torch.export.load(path).module())
