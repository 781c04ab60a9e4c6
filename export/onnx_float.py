"""Float32 ONNX graphs of a ``SequenceModel``: whole-sequence and one streaming step.

Both use the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), on purpose:

- it takes ~0.1-0.3 s per graph here against 6-75 s for the torch.export-based (dynamo) exporter,
  and the pipeline writes several graphs per checkpoint and the tests export per architecture;
- it keeps the time axis dynamic: the dynamo exporter (torch 2.13) baked ``time = 100`` into a
  Reshape after the first GRU, so a 37-step input failed in ONNX Runtime;
- both emit the same native ONNX ``LSTM``/``GRU`` op, one per layer, and write the weights inside
  the .onnx file (no external ``.data``) at this size.
PyTorch marks the TorchScript exporter deprecated; if a future torch drops it, ``_export`` falls
back to the dynamo exporter with ``external_data=False`` (correct for the fixed-length windows
the tasks use; the whole-sequence graph is then checked at a second length by verification).

Graph contracts (docs/contracts.md): whole-sequence ``x [batch, time, C] -> scores [batch, K]``;
step ``frame [batch, C]`` + ``state_in_*`` -> ``scores [batch, K]`` + ``state_out_*`` with
explicit state (ONNX Runtime keeps nothing between calls). State tensors, in order: per layer
``h`` (GRU) or ``h, c`` (LSTM), each ``[batch, H]``; feed zeros first, then the previous outputs.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

OPSET = 17


def state_names(spec) -> list[tuple[str, str, int]]:
    """``(input name, output name, hidden size)`` per state tensor, in graph order."""
    per_layer = 2 if spec.arch == "lstm" else 1
    sizes = [h for h in spec.hidden_sizes for _ in range(per_layer)]
    return [(f"state_in_{i}", f"state_out_{i}", h) for i, h in enumerate(sizes)]


def state_description(spec) -> dict:
    """The manifest's ``state`` entry for an explicit-state step graph."""
    names = state_names(spec)
    what = "h per layer" if spec.arch == "gru" else "h, c per layer"
    return {"mode": "explicit", "inputs": [n[0] for n in names], "outputs": [n[1] for n in names],
            "shapes": [[1, n[2]] for n in names], "layout": what, "init": "zeros"}


class StepGraph(nn.Module):
    """``model.step`` with a flat signature: (frame, *states [batch, H]) -> (scores, *new states)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.lstm = model.spec.arch == "lstm"

    def forward(self, frame, *flat):
        if self.lstm:
            state = [(flat[2 * i].unsqueeze(0), flat[2 * i + 1].unsqueeze(0)) for i in range(len(flat) // 2)]
        else:
            state = [s.unsqueeze(0) for s in flat]
        scores, new = self.model.step(frame, state)
        out = []
        for s in new:
            out.extend([s[0].squeeze(0), s[1].squeeze(0)] if self.lstm else [s.squeeze(0)])
        return (scores, *out)


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes) -> None:
    """TorchScript export (see module docstring), quiet, weights inside the file."""
    path = Path(path)
    module.eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation + tracer warnings about the fixed RNN loop
        try:
            torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
        except (TypeError, NotImplementedError, RuntimeError) as e:
            if "dynamo" not in str(e).lower() and "torchscript" not in str(e).lower():
                raise
            torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=18, dynamo=True, external_data=False)


def export_sequence(model, path, example_len: int | None = None) -> dict:
    """Whole-sequence graph ``x [batch, time, C] -> scores [batch, K]``, batch and time dynamic."""
    spec = model.spec
    x = torch.zeros(2, example_len or 8, spec.input_size)
    frames = getattr(spec, "head", "classify") == "frames"  # scores [batch, time, K]: time dynamic too
    _export(model, (x,), path, ["x"], ["scores"],
            {"x": {0: "batch", 1: "time"}, "scores": {0: "batch", 1: "time"} if frames else {0: "batch"}})
    return {"kind": "sequence", "state": None}


def export_step(model, path, graph: nn.Module | None = None) -> dict:
    """Streaming step graph with explicit state inputs/outputs; returns the manifest ``state``.

    ``graph`` is the module to trace (default ``StepGraph(model)``; export.onnx_decomposed passes
    its gate-by-gate variant, which keeps the same inputs and outputs)."""
    spec = model.spec
    names = state_names(spec)
    frame = torch.zeros(2, spec.input_size)
    states = tuple(torch.zeros(2, h) for _, _, h in names)
    ins = ["frame"] + [n[0] for n in names]
    outs = ["scores"] + [n[1] for n in names]
    axes = {n: {0: "batch"} for n in ins + outs}
    _export(graph if graph is not None else StepGraph(model), (frame, *states), path, ins, outs, axes)
    return {"kind": "step", "state": state_description(spec)}
