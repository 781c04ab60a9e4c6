"""export/c/reference.py: the numpy twin of the generated int8 C, from the checkpoint's weights.

It rebuilds the integer model from the training checkpoint and the C entry's calibration record
(``quant``), then runs the same integer operations in numpy. The generated C must match it bit
for bit (runtime/tolerances.py ``LSB_RULES``): a C file whose weights or scales drifted from the
checkpoint, or a runtime that quantizes inputs differently, fails that comparison.
"""

from __future__ import annotations

import numpy as np

from parity.cells import STREAM, WHOLE, Cell, Outputs, cell_id
from runtime.manifest import output_scale

NAME = "c-reference"


def _missing() -> str | None:
    import importlib.util
    if importlib.util.find_spec("export") is None or importlib.util.find_spec("export.c.reference") is None:
        return "the export package (export/c/reference.py) is not installed: run `pip install -e '.[export]'`"
    return None


def cells(ctx) -> list:
    out = []
    # A frames model: the C library is streaming-only (export/c), so the twin streams too and
    # is compared, every frame, with the C step cell.
    frames = ctx.heldout.head == "frames"
    for entry in ctx.entries(format="c", precision="int8", kind="step" if frames else "sequence"):
        def run(x_raw: np.ndarray, entry=entry) -> Outputs:
            from export.c import quantize as Q
            from export.c import reference as R
            quant = entry.get("quant")
            if not quant:
                raise ValueError(f"C entry {entry['name']} has no 'quant' calibration record")
            qm = Q.quantize(Q.float_weights(ctx.model), quant)
            mean, std = (np.asarray(v, np.float32) for v in ctx.manifest.preprocess)
            x = ((x_raw - mean) / std).astype(np.float32)
            y = R.dequantize_scores(R.int_run(qm, R.quantize_input(x, quant["input"]["scale"]), stream=frames))
            return Outputs(scores=y, stream=y) if frames else Outputs(scores=y)

        out.append(Cell(cell_id(ctx.arch, "int8", NAME, "stream" if frames else None), ctx.arch, NAME, "int8",
                        STREAM if frames else WHOLE, NAME, artifact=entry["name"], file=entry.get("file"),
                        what="export/c/reference.py integer model rebuilt from the checkpoint + quant record",
                        output_scale=output_scale(entry), inputs="sample" if frames else "all", skip=_missing(), run=run))
    return out
