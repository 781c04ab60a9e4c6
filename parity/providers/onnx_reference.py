"""``onnx.reference.ReferenceEvaluator``: the ONNX specification executed in plain numpy.

An independent float runtime for the float32 whole-sequence ONNX graphs: it shares no kernel
code with ONNX Runtime or PyTorch, so a graph that only "works" because of one runtime's quirk
disagrees here. It cannot run Microsoft's contrib ops (DynamicQuantizeLSTM), so quantized graphs
are not cells for it. The manifest's preprocessing is applied exactly as ``runtime`` documents
it ((x - mean) / std); the file is sha256-checked first.
"""

from __future__ import annotations

import numpy as np

from parity.cells import WHOLE, Cell, Outputs, cell_id
from parity.providers._runtime import variant_of

NAME = "onnx-reference"


def _missing() -> str | None:
    try:
        import onnx.reference  # noqa: F401
    except ImportError:
        return "onnx (for onnx.reference) is not installed: run `pip install onnx==1.23.2`"
    return None


def cells(ctx) -> list:
    out = []
    for entry in ctx.entries(format="onnx", precision="float32", kind="sequence"):
        def run(x_raw: np.ndarray, entry=entry) -> Outputs:
            import onnx
            from onnx.reference import ReferenceEvaluator
            from runtime.backends.base import Backend
            from runtime.errors import UserError
            path = ctx.manifest.verified(entry)
            # the bytes whose sha256 was checked, and nothing else (no external data files)
            proto = onnx.load_from_string(Backend.read_model(path, entry))
            if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
                raise UserError(f"{path} keeps weights in external files the manifest does not hash: re-export")
            sess = ReferenceEvaluator(proto)
            x = x_raw
            if ctx.manifest.preprocess is not None:
                mean, std = (np.asarray(v, np.float32) for v in ctx.manifest.preprocess)
                x = (x_raw - mean) / std
            x = x.astype(np.float32)
            name = (entry.get("inputs") or [{}])[0].get("name") or sess.input_names[0]
            shape = (entry.get("inputs") or [{}])[0].get("shape") or [None]
            if shape and shape[0] not in (None, -1):  # fixed batch: one row at a time
                rows = [sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))]
                return Outputs(scores=np.concatenate(rows).astype(np.float32))
            return Outputs(scores=np.asarray(sess.run(None, {name: x})[0], np.float32))

        out.append(Cell(cell_id(ctx.arch, "float32", NAME, variant_of(entry)), ctx.arch, NAME, "float32", WHOLE, NAME,
                        artifact=entry["name"], file=entry.get("file"),
                        what=f"{entry.get('file')} in onnx.reference (the ONNX spec in numpy)", skip=_missing(), run=run))
    return out
