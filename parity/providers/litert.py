"""LiteRT (the TFLite interpreter): every .tflite artifact, all precisions, whole and streaming."""

from __future__ import annotations

from parity.providers._runtime import runtime_cell

NAME = "litert"


def cells(ctx) -> list:
    return [runtime_cell(ctx, e, "litert") for e in ctx.entries(format="tflite")]
