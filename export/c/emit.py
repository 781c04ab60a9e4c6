"""Small helpers that format C source: arrays as const initializers, identifiers, comments."""

from __future__ import annotations

import re

import numpy as np

C_TYPES = {"int8_t": (-128, 127), "int16_t": (-32768, 32767), "int32_t": (-2 ** 31, 2 ** 31 - 1)}


def identifier(name: str) -> str:
    """A valid, lowercase C identifier from any name (``watch-gru`` -> ``watch_gru``)."""
    s = re.sub(r"[^0-9a-zA-Z_]", "_", name).lower().strip("_") or "model"
    return "m_" + s if s[0].isdigit() else s


def c_string(text: str) -> str:
    """A C string literal of ``text`` (UTF-8 bytes; quotes, backslashes and non-printable bytes as
    octal escapes, so that any label is a valid literal)."""
    out = []
    for b in str(text).encode("utf-8"):
        ch = chr(b)
        out.append(ch if 32 <= b < 127 and ch not in '"\\?' else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def c_float(v: float) -> str:
    """A float32 literal that round-trips exactly (9 significant digits)."""
    v = float(np.float32(v))
    text = f"{v:.9g}"
    if "e" not in text and "." not in text and "inf" not in text and "nan" not in text:
        text += ".0"
    return text + "f"


def array(ctype: str, name: str, values, comment: str = "", per_line: int = 16, static: bool = True,
          attribute: str = "") -> str:
    """``static const <ctype> name[N] = {...};`` with ``per_line`` values a line and a comment above
    (``attribute``, e.g. an alignment macro, goes after the declarator)."""
    flat = np.asarray(values).reshape(-1)
    if ctype == "float":
        items = [c_float(v) for v in flat]
        per_line = min(per_line, 8)
    else:
        lo, hi = C_TYPES[ctype]
        ints = flat.astype(np.int64)
        if ints.size and (ints.min() < lo or ints.max() > hi):
            raise ValueError(f"{name}: values outside {ctype}")
        # INT32_MIN cannot be written as a literal; it never occurs (bounds are checked) but be safe
        items = [str(int(v)) if int(v) != -2 ** 31 else "(-2147483647 - 1)" for v in ints]
    lines = ["    " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line)] or ["    0"]
    head = (f"/* {comment} */\n" if comment else "") + f"{'static ' if static else ''}const {ctype} {name}[{max(1, len(items))}]{' ' + attribute if attribute else ''} = {{"
    return head + "\n" + "\n".join(lines) + "\n};\n"


def pad_cols(w: np.ndarray, multiple: int = 4) -> np.ndarray:
    """Zero-pad the columns of ``w`` to a multiple of ``multiple``."""
    rows, cols = w.shape
    padded = -(-cols // multiple) * multiple
    out = np.zeros((rows, padded), w.dtype)
    out[:, :cols] = w
    return out


def interleave_for_sxtb16(w: np.ndarray) -> np.ndarray:
    """Reorder each group of 4 columns ``a b c d`` -> ``a c b d``.

    SXTB16 sign-extends bytes 0 and 2 of a word into two halfwords (and, after a rotate by 8,
    bytes 1 and 3), so the stored order ``a c b d`` yields the pairs ``(a, b)`` and ``(c, d)``
    that line up with two consecutive int16 activation pairs for SMLAD.
    """
    rows, cols = w.shape
    assert cols % 4 == 0
    return w.reshape(rows, cols // 4, 4)[:, :, [0, 2, 1, 3]].reshape(rows, cols)


def pad4(n: int) -> int:
    return -(-n // 4) * 4


def group_rows4(w: np.ndarray) -> np.ndarray:
    """The int8 weight layout of the generated C: ``[rows/4][cols/4][4 rows][4 bytes a c b d]``.

    Rows and columns are zero-padded to multiples of 4. A group of 4 rows is stored block by
    block so the kernel reads it with one moving pointer while sharing each activation load
    among the 4 rows.
    """
    rows = pad4(w.shape[0])
    padded = np.zeros((rows, pad4(w.shape[1])), w.dtype)
    padded[: w.shape[0], : w.shape[1]] = w
    x = interleave_for_sxtb16(padded)
    return x.reshape(rows // 4, 4, -1, 4).transpose(0, 2, 1, 3).reshape(-1)


def unit_major(a, gates: int) -> np.ndarray:
    """Gate-major rows (PyTorch's order: all of gate 0, then gate 1, ...) -> unit-major (row
    ``gates * j + g`` is gate g of unit j), so that a cell reads one unit's pre-activations from
    consecutive words. Any trailing axes (a weight row, a (ls, rs) pair) move with their row."""
    a = np.asarray(a)
    return a.reshape(gates, a.shape[0] // gates, *a.shape[1:]).swapaxes(0, 1).reshape(a.shape)
