"""The generated C library (float32 and integer-only int8), compiled for this host and called via ctypes."""

from __future__ import annotations

from parity.providers._runtime import runtime_cell

NAME = "c"


def cells(ctx) -> list:
    return [runtime_cell(ctx, e, "c", what=f"{e.get('file')} built with host gcc, called via ctypes")
            for e in ctx.entries(format="c")]
