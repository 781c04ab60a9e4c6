"""TensorFlow Lite Micro (the microcontroller interpreter, built for the host).

Cells: every entry export made for TFLM (``runtime: tflm``, the int8 graphs), plus float32 .tflite
graphs whose ops TFLM has (no WHILE loop: a float GRU exported as a WHILE loop hangs TFLM, see
shared/NOTES.md). TFLM refuses float16 and dynamic-range models: those pairs do not exist.
"""

from __future__ import annotations

from parity.providers._runtime import runtime_cell

NAME = "tflm"


def runs_on_tflm(entry: dict) -> bool:
    """Whether TFLM can run this .tflite at all (decided from the manifest's op list and precision)."""
    if entry.get("runtime") == "tflm":
        return True
    ops = entry.get("ops") or {}
    return entry.get("precision") == "float32" and bool(ops) and not any(o.upper() == "WHILE" for o in ops)


def cells(ctx) -> list:
    entries = ctx.entries(format="tflite")
    tflm_files = {e.get("file") for e in entries if e.get("runtime") == "tflm"}
    return [runtime_cell(ctx, e, "tflm", what=f"{e.get('file')} in TFLite Micro's arena interpreter")
            for e in entries if runs_on_tflm(e) and (e.get("runtime") == "tflm" or e.get("file") not in tflm_files)]
