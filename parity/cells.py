"""What one cell of the parity matrix is, and what running it produced.

A *cell* is one (runtime, precision, artifact, mode) combination: the same held-out inputs go
through it and its scores are compared with the float PyTorch reference. Its id reads like the
test name CI shows, ``<arch>-<precision>-<runtime>[-<variant>]``, e.g. ``gru-int8-tflm`` or
``lstm-float32-onnxruntime-stream``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

WHOLE = "whole"  # the runtime classifies whole sequences: scores [N, K]
STREAM = "stream"  # the runtime consumes one frame at a time: scores after every frame [N, T, K]

PASS, FAIL, SKIP, ERROR = "pass", "fail", "skip", "error"


@dataclasses.dataclass
class Outputs:
    """What a cell returned for its inputs (rows ``rows`` of the held-out set)."""

    scores: np.ndarray  # [n, K] float32: whole-sequence scores, or the last step of a stream
    stream: np.ndarray | None = None  # [n, T, K] per-frame scores (stream cells only)


@dataclasses.dataclass
class Cell:
    """One runtime x precision x artifact combination, ready to run (or to be reported skipped)."""

    id: str
    arch: str
    runtime: str  # runtime or device as reported: onnxruntime, litert, tflm, c, torch, onnx-reference, ...
    precision: str  # a key of runtime.tolerances.POLICY
    mode: str  # WHOLE | STREAM
    provider: str  # the parity.providers module that made it
    artifact: str | None = None  # manifest entry name (None for cells not backed by one file)
    file: str | None = None  # artifact file, relative to the folder
    what: str = ""  # one line for the report: which library / device runs what
    output_scale: float | None = None  # LSB of integer outputs (for LSB comparisons), if integer
    inputs: str = "all"  # "all" (golden + test split), "sample" (golden + test rows spread over the split: streaming,
    # emulated devices) or "golden" (the golden file itself)
    skip: str | None = None  # reason the cell cannot run here (runtime not installed, ...)
    run: Callable[[np.ndarray], Outputs] | None = dataclasses.field(default=None, repr=False)
    # run(x_raw [n, T, C]) -> Outputs; raw (un-normalized) features, as a user would pass them

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("run")
        return d


@dataclasses.dataclass
class CellResult:
    cell: Cell
    status: str  # PASS | FAIL | SKIP | ERROR
    metrics: dict = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)  # why it failed, one line each
    seconds: float = 0.0
    n_inputs: int = 0
    errors: np.ndarray | None = dataclasses.field(default=None, repr=False)  # |score - ref|, for plots
    outputs: Outputs | None = dataclasses.field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.cell.id

    def to_json(self) -> dict:
        return {"id": self.cell.id, "status": self.status, "failures": self.failures,
                "metrics": self.metrics, "seconds": round(self.seconds, 3), "n_inputs": self.n_inputs,
                "cell": self.cell.to_json()}


def cell_id(arch: str, precision: str, runtime: str, variant: str | None = None) -> str:
    parts = [arch, precision, runtime] + ([variant] if variant else [])
    return "-".join(p for p in parts if p)
