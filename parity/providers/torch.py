"""PyTorch through ``runtime.load(backend="torch")``: the float model via the runtime's own plumbing
(manifest preprocessing, explicit-state stepping) - whole sequences and streaming."""

from __future__ import annotations

from parity.cells import STREAM, WHOLE, Cell, cell_id
from parity.providers._runtime import missing_reason, predict_rows, stream_rows

NAME = "torch"


def cells(ctx) -> list:
    def load():
        import runtime
        return runtime.load(ctx.folder, backend="torch")

    def whole(x_raw):
        return predict_rows(load(), x_raw)

    def stream(x_raw):
        return stream_rows(load(), x_raw)

    skip = missing_reason("torch")
    what = "training checkpoint through runtime.load(backend='torch')"
    return [Cell(cell_id(ctx.arch, "float32", "torch"), ctx.arch, "torch", "float32", WHOLE, NAME,
                 what=what, skip=skip, run=whole),
            Cell(cell_id(ctx.arch, "float32", "torch", "stream"), ctx.arch, "torch", "float32", STREAM, NAME,
                 what=what + ", one frame per step", inputs="sample", skip=skip, run=stream)]
