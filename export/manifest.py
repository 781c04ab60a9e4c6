"""The artifact folder's index: records, io descriptions, golden samples, ``manifest.json``.

Format: docs/contracts.md (``rnn-edge-artifacts/1``). Every file is written through
runtime.atomic; sha256 and sizes are computed from the files as they lie in the folder.
"""

from __future__ import annotations

import datetime
import errno
import io
from pathlib import Path

import numpy as np

from runtime.atomic import write_bytes, write_json
from training.checkpoint import file_sha256

FORMAT = "rnn-edge-artifacts/1"
MANIFEST = "manifest.json"
GOLDEN = "golden.npz"

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 10: "float16"}
# A write that failed for want of room (disk full, quota, file size limit): no other artifact can be
# written either, so the export stops with one line rather than recording a failed artifact.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def out_of_room(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _NO_ROOM


def new_record(name: str, file: str, *, format: str, runtime: str, precision: str, kind: str) -> dict:
    """A record with every contract field present (filled in as the artifact is made and checked)."""
    return {"name": name, "file": file, "sha256": None, "size_bytes": None, "format": format, "runtime": runtime,
            "precision": precision, "kind": kind, "inputs": [], "outputs": [], "state": None, "ops": {},
            "quantized": None, "accuracy": None, "metrics": {}, "status": "failed", "error": None}


def failed_record(name: str, error: str, **fields) -> dict:
    """A record for an artifact that could not be made or run; ``error`` is one line."""
    rec = new_record(name, fields.pop("file", None), format=fields.pop("format", None),
                     runtime=fields.pop("runtime", None), precision=fields.pop("precision", None),
                     kind=fields.pop("kind", None))
    rec.update(fields)
    rec["status"], rec["error"] = "failed", " ".join(str(error).split())
    return rec


def onnx_io(model) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of an ONNX graph: name, shape (None for symbolic dims), dtype, quant."""
    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            out.append({"name": v.name, "shape": shape, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)),
                        "quant": None})
        return out
    return describe(model.graph.input), describe(model.graph.output)


def finalize(records: list[dict], folder: Path) -> list[dict]:
    """Fill ``sha256``/``size_bytes`` from the files in ``folder``; a listed file that is missing fails."""
    for rec in records:
        if not rec.get("file"):
            continue
        path = folder / rec["file"]
        if path.is_file():
            rec["sha256"], rec["size_bytes"] = file_sha256(path), path.stat().st_size
        elif rec.get("status") != "failed":
            rec["status"], rec["error"] = "failed", f"{rec['name']}: file {rec['file']} was not written"
            rec["sha256"] = rec["size_bytes"] = None
        else:
            rec["sha256"] = rec["size_bytes"] = None
    return records


def write_golden(folder: Path, reference) -> dict:
    """``golden.npz``: a few held-out windows raw and normalized, labels, PyTorch scores per window and step."""
    idx = reference.golden_idx
    pos = {int(i): k for k, i in enumerate(reference.stream_idx)}
    buf = io.BytesIO()
    np.savez(buf, x_raw=reference.x_raw[idx], x=reference.x[idx], y=reference.y[idx],
             scores=reference.scores[idx].astype(np.float32),
             stream_scores=reference.stream_scores[[pos[int(i)] for i in idx]].astype(np.float32))
    path = folder / GOLDEN
    write_bytes(path, buf.getvalue())
    return {"file": GOLDEN, "sha256": file_sha256(path), "examples": int(len(idx))}


def build(*, checkpoint: Path, model, meta: dict, reference, golden: dict, records: list[dict]) -> dict:
    spec = model.spec
    return {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": {"file": str(checkpoint), "sha256": file_sha256(checkpoint)},
        "task": meta.get("task"),
        "class_names": list(meta.get("class_names", [])),
        "model": {"arch": spec.arch, "input_size": spec.input_size, "hidden_sizes": list(spec.hidden_sizes),
                  "num_classes": spec.num_classes, "seq_len": int(meta.get("seq_len") or reference.x.shape[1]),
                  **({"head": "forecast", "forecast": meta.get("forecast")} if spec.head == "forecast" else {}),
                  **({"head": "frames", "frames": meta.get("frames")} if spec.head == "frames" else {})},
        "preprocess": {"mean": [float(v) for v in meta["input_mean"]], "std": [float(v) for v in meta["input_std"]],
                       # the audio front-end the model was trained on (kws): a device app must use the same
                       **({"features": dict(features)} if (features := (meta.get("dataset") or {}).get("features"))
                          else {})},
        "reference": {"accuracy": reference.accuracy, "test_examples": int(len(reference.y)), "runtime": "pytorch",
                      **({"forecast": reference.forecast} if reference.forecast else {})},
        "golden": golden,
        "artifacts": records,
    }


def write(folder: Path, manifest: dict) -> Path:
    path = folder / MANIFEST
    write_json(path, _jsonable(manifest))
    return path


def _jsonable(obj):
    """numpy scalars/arrays and tuples -> plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
