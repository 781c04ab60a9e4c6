"""TensorFlow Lite Micro (the microcontroller interpreter, built for the host).

TFLM runs integer models and float32 graphs made of kernels it has; it refuses float16 and
dynamic-range models, and a float GRU exported as a WHILE loop hangs it (shared/NOTES.md), so
those combinations are not cells here (they are not runtime x precision pairs that exist).
"""

from __future__ import annotations

from parity.providers._runtime import runtime_cell

NAME = "tflm"
INTEGER = ("int8", "int16x8")


def runs_on_tflm(entry: dict) -> bool:
    """Whether TFLM can run this .tflite at all (decided from the manifest's op list and precision)."""
    if entry.get("runtime") == "tflm":
        return True
    precision = entry.get("precision")
    if precision in INTEGER:
        return True
    ops = entry.get("ops") or {}
    return precision == "float32" and bool(ops) and not any(o.upper() == "WHILE" for o in ops)


def cells(ctx) -> list:
    return [runtime_cell(ctx, e, "tflm", what=f"{e.get('file')} in TFLite Micro's arena interpreter")
            for e in ctx.entries(format="tflite") if runs_on_tflm(e)]
