"""The C kernels of the int8 library, kept as C files and pasted into each generated source.

The layout follows TFLite Micro's: one portable reference kernel and, beside it, drop-in variants
optimized for a target, each computing exactly the same integers (``export/c/reference.py`` is
their numpy twin; tests run every variant against it: host SSE2 and portable, Cortex-M DSP and
M3 under QEMU, aarch64 NEON under qemu-aarch64).

- ``int8_select.h``: which variant a build takes (``PREFIX_USE_DSP``, ``_SSE2``, ``_NEON``; none
  of them, or ``PREFIX_PORTABLE`` defined, means the portable one)
- ``int8_primitives.h``: rounding shift, saturation, SMMULR, requantize, table sigmoid/tanh
- ``int8_layer.h``: the per-layer descriptor the generated ``LAYERS`` table fills
- ``dot4_portable.c``: the reference dot product of 4 weight rows (its comment is the contract)
- ``dot4_cortex_m_dsp.c``, ``dot4_x86_sse2.c``, ``dot4_aarch64_neon.c``: the variants
- ``matvec_q.c``, ``gru_cell_q.c``, ``lstm_cell_q.c``: matrix-vector product and the cells

Macros are written with the token ``PREFIX_``, replaced by the model's upper-case prefix (so that a
define such as ``-DWATCH_GRU_INT8_PORTABLE`` reaches one model of a firmware that links several);
functions are ``static``, private to the model's source. To add a variant: a
``dot4_<target>.c`` guarded by its own ``PREFIX_USE_<X>``, the selection in ``int8_select.h``,
the guard of ``dot4_portable.c``, and its name in ``DOT4_VARIANTS``.
"""

from __future__ import annotations

import re
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
DOT4_VARIANTS = ("dot4_cortex_m_dsp.c", "dot4_x86_sse2.c", "dot4_aarch64_neon.c", "dot4_portable.c")
_TOKEN = re.compile(r"\bPREFIX_")


def kernel_source(name: str, macro_prefix: str) -> str:
    """The kernel file ``name`` with ``PREFIX_`` replaced by ``<macro_prefix>_``, under a line naming
    its origin (the generated source says where each block comes from)."""
    text = (KERNEL_DIR / name).read_text()
    return f"/* ---- export/c/kernels/{name} ---- */\n" + _TOKEN.sub(f"{macro_prefix}_", text)


def kernel_sources(names, macro_prefix: str) -> str:
    """Several kernel files, in order, separated by a blank line."""
    return "\n".join(kernel_source(n, macro_prefix) for n in names)
