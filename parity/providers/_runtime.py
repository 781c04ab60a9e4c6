"""Cells that run a manifest entry through ``runtime.load`` - shared by the runtime providers.

The parity suite never wraps an inference library itself: it loads each artifact exactly as a
user would (``runtime.load(folder, backend=..., artifact=...)``), with raw features in and float
scores out, so the runtime's own normalization, quantization and state handling are under test.
"""

from __future__ import annotations

import numpy as np

from parity.cells import STREAM, WHOLE, Cell, Outputs, cell_id
from runtime.errors import MissingDependency, UserError
from runtime.manifest import output_scale

# Words of an artifact name that the cell id already says (format, runtime, precision, kind).
_NOISE = {"onnx", "tflite", "c", "litert", "tflm", "onnxruntime", "ort", "float32", "fp32", "float16", "fp16",
          "int8", "int16x8", "16x8", "dynamic-range", "dynamic", "range", "dr", "step", "sequence", "seq", "model"}


def variant_of(entry: dict, extra: str | None = None) -> str | None:
    """What tells this entry apart from others of the same runtime and precision (e.g. ``qdq``)."""
    words = [w for w in str(entry.get("name", "")).replace("_", "-").split("-") if w and w.lower() not in _NOISE]
    if entry.get("precision") == "int8" and "dynamic" in str(entry.get("name", "")) and entry.get("format") == "onnx":
        words.insert(0, "dynamic")  # ONNX int8 dynamic vs static (QDQ) are different quantizations
    if entry.get("kind") == "step":
        words.append("stream")
    if extra:
        words.append(extra)
    return "-".join(words) or None


def missing_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run here (its library is not installed), or None."""
    from runtime.backends import backend_class
    try:
        backend_class(backend).library()
    except MissingDependency as e:
        return str(e)
    except UserError as e:
        return str(e)
    return None


def halves(n: int) -> list[tuple[int, int]]:
    """Row ranges of two equal halves (plus one leftover row when ``n`` is odd).

    Cells feed their rows in these calls to ONE loaded model: equal batch sizes make a runtime
    that keeps state between calls without resetting it carry the first half's state into the
    second half, where it shows up as an error instead of hiding behind a re-allocation.
    """
    half = max(1, n // 2)
    return [(a, min(a + half, n)) for a in range(0, n, half)]


def stream_rows(model, x_raw: np.ndarray) -> Outputs:
    """Stream ``x_raw [N, T, C]`` frame by frame through ONE stepper, half after half (``run``
    resets between them), so a state that is not reset between sequences shows up."""
    stepper = model.stream()
    stream = np.concatenate([stepper.run(x_raw[a:b]) for a, b in halves(len(x_raw))], axis=0).astype(np.float32)
    # a frames model's whole-sequence output is every step's scores; otherwise the last step's
    return Outputs(scores=stream if getattr(model, "frames", False) else stream[:, -1], stream=stream)


def predict_rows(model, x_raw: np.ndarray) -> Outputs:
    """Whole-sequence scores of ``x_raw`` from ONE model, half after half (see ``halves``)."""
    return Outputs(scores=np.concatenate([np.asarray(model.predict(x_raw[a:b]), np.float32)
                                          for a, b in halves(len(x_raw))], axis=0))


def runtime_cell(ctx, entry: dict, backend: str, *, label: str | None = None, what: str = "",
                 inputs: str = "all", skip: str | None = None, extra: str | None = None, **options) -> Cell:
    """The cell that runs manifest ``entry`` on ``backend`` via ``runtime.load``."""
    mode = STREAM if entry.get("kind") == "step" else WHOLE
    name = entry["name"]

    def run(x_raw: np.ndarray) -> Outputs:
        import runtime
        model = runtime.load(ctx.folder, backend=backend, artifact=name, **options)
        return stream_rows(model, x_raw) if mode == STREAM else predict_rows(model, x_raw)

    return Cell(id=cell_id(ctx.arch, entry.get("precision", "?"), label or backend, variant_of(entry, extra)),
                arch=ctx.arch, runtime=label or backend, precision=entry.get("precision", "?"), mode=mode,
                provider=label or backend, artifact=name, file=entry.get("file"),
                what=what or f"{entry.get('file')} on {backend} ({entry.get('quantized') or entry.get('precision')})",
                output_scale=output_scale(entry), inputs="sample" if mode == STREAM else inputs,
                skip=skip if skip is not None else missing_reason(backend), run=run)
