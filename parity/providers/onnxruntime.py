"""ONNX Runtime (CPU): every ONNX artifact - float32, int8 dynamic, int8 QDQ, decomposed, step graphs."""

from __future__ import annotations

from parity.providers._runtime import runtime_cell

NAME = "onnxruntime"


def cells(ctx) -> list:
    return [runtime_cell(ctx, e, "onnxruntime") for e in ctx.entries(format="onnx")]
