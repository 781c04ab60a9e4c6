"""The golden file: the scores export stored in golden.npz against the live PyTorch reference.

Not a runtime - the record every other cell is traceable to. If the checkpoint changed after
export, or golden.npz was written by different code, this cell fails first.
"""

from __future__ import annotations

import numpy as np

from parity.cells import STREAM, Cell, Outputs, cell_id

NAME = "golden"


def cells(ctx) -> list:
    h = ctx.heldout

    def run(x_raw: np.ndarray) -> Outputs:
        if len(x_raw) != h.golden_rows:
            raise ValueError("the golden cell runs on the golden rows only")
        return Outputs(scores=h.golden_scores, stream=h.golden_stream)  # judged against the live stream

    return [Cell(cell_id(ctx.arch, "float32", "golden"), ctx.arch, "golden", "float32",
                 STREAM if h.golden_stream is not None else "whole", NAME, file="golden.npz",
                 what="scores stored in golden.npz at export time vs the live checkpoint", inputs="golden", run=run)]
