"""Flash and RAM a generated C model will need, estimated from its shape alone (before generating it).

Used to refuse a model that cannot fit a target before anything is built. The estimate is an upper
bound of the data (exact sizes of the arrays the generator emits) plus a fixed allowance for code;
the measured figures come from ``arm-none-eabi-size`` and ``-fstack-usage`` after the build.
"""

from __future__ import annotations

from export.c.emit import pad4

CODE_ALLOWANCE = {"int8": 3072, "float32": 2048}  # bytes of machine code, measured ~1.5-2.5 KB at -O2
STACK_ALLOWANCE = 256  # call frames and saved registers beyond the scratch arrays


def estimate(arch: str, input_size: int, hidden: tuple[int, ...] | list[int], classes: int, precision: str) -> dict:
    """``{"flash": bytes, "ram": bytes, "state": bytes, "stack": bytes}`` for one model."""
    G = 4 if arch == "lstm" else 3
    flash = ram_state = 0
    n_in = input_size
    for h in hidden:
        rows = G * h
        if precision == "int8":
            flash += rows * (pad4(n_in) + pad4(h))  # int8 weights, padded columns
            flash += rows * 2 * (4 + 1) + rows * 4 + (4 * h if arch == "gru" else 0)  # mult, shift, bias
            ram_state += 2 * pad4(h) + (2 * h if arch == "lstm" else 0)
        else:
            flash += 4 * (rows * (n_in + h) + 2 * rows)
            ram_state += 4 * h * (2 if arch == "lstm" else 1)
        n_in = h
    if precision == "int8":
        flash += classes * (pad4(n_in) + 4 + 1 + 4) + 2 * 257 * 2  # head + sigmoid/tanh tables
        scratch = 4 * G * max(hidden) + 4 * max(hidden) + 2 * pad4(input_size)
    else:
        flash += 4 * classes * (n_in + 1)
        scratch = 2 * 4 * G * max(hidden)
    flash += CODE_ALLOWANCE[precision]
    stack = scratch + STACK_ALLOWANCE
    return {"flash": int(flash), "ram": int(ram_state + stack), "state": int(ram_state), "stack": int(stack)}
