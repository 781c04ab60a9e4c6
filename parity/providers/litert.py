"""LiteRT (the TFLite interpreter): every .tflite file, all precisions, whole and streaming.

A file listed twice (once for LiteRT, once for TFLite Micro) is one LiteRT cell.
"""

from __future__ import annotations

from parity.providers._runtime import runtime_cell

NAME = "litert"


def litert_entries(ctx) -> list[dict]:
    """The .tflite entries LiteRT runs: its own, plus files made only for another runtime."""
    entries = ctx.entries(format="tflite")
    own_files = {e.get("file") for e in entries if e.get("runtime") == "litert"}
    return [e for e in entries if e.get("runtime") == "litert" or e.get("file") not in own_files]


def cells(ctx) -> list:
    return [runtime_cell(ctx, e, "litert") for e in litert_entries(ctx)]
