"""LiteRT on TFLite's reference kernels (``reference_kernels=True``): the integer .tflite files again.

The default interpreter hands fully-connected ops to XNNPACK, whose x86 and ARM kernels round
differently; the reference kernels are portable integer C++. Their cells give the parity suite a
runtime that must score the same file bit-identically on this host and on the emulated Raspberry Pi
(``rpi-litert-ref``, runtime/tolerances.py), whatever XNNPACK does on either CPU.
"""

from __future__ import annotations

from parity.providers._runtime import runtime_cell
from parity.providers.litert import litert_entries

NAME = "litert-ref"
PRECISIONS = ("int8", "int16x8")  # integer files: where "bit-identical" is the claim


def cells(ctx) -> list:
    return [runtime_cell(ctx, e, "litert", label=NAME, reference_kernels=True,
                         what=f"{e.get('file')} on LiteRT's reference kernels "
                              f"({e.get('quantized') or e.get('precision')})")
            for e in litert_entries(ctx) if e.get("precision") in PRECISIONS]
