"""Cortex-M4 instructions per MAC of the int8 C kernels, on random-weight GRU and LSTM 6->32->32->7.

    python -m bench.m4_kernel

One whole-sequence inference of 100 steps per architecture, counted exactly under QEMU
(``devices.cortex_m.report.measure``, which also checks the guest's scores against the host build).
The weights are random (``bench.scaling.random_model``): the count depends on the shapes and on
which matrices need a left shift, not on the values, so this is the quick figure to compare two
versions of the kernels with (docs/microcontrollers.md, the table of kernel changes).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def measure_arch(arch: str, work: Path, hidden: int = 32, steps: int = 100) -> dict:
    from bench.scaling import generate_c, random_model
    from devices.cortex_m.report import measure
    from devices.targets import get_target
    from export.c import reference as R
    model = random_model(hidden, arch=arch)
    rec, quant = generate_c(model, work / arch)
    x = np.random.default_rng(1).standard_normal((1, steps, model.spec.input_size)).astype(np.float32)
    xq = R.quantize_input(x, quant["input"]["scale"])
    facts = {"arch": arch, "input_size": model.spec.input_size, "hidden_sizes": list(model.spec.hidden_sizes),
             "num_classes": model.spec.num_classes}
    rep = measure(work / arch / rec["c"]["dir"], rec["c"]["prefix"], "int8", facts, get_target("cortex-m4"), xq,
                  work / arch / "m4")
    return {"instructions": rep["instructions"]["per_inference"], "per_mac": rep["instructions"]["per_mac"],
            "flash": rep["flash"]["model_total"], "host_identical": rep["host_identical"]}


def main() -> int:
    identical = True
    with tempfile.TemporaryDirectory(prefix="m4-kernel-") as tmp:
        for arch in ("gru", "lstm"):
            r = measure_arch(arch, Path(tmp))
            print(f"{arch.upper()} 6->32->32->7 int8, Cortex-M4, 100 steps: {r['instructions']} instructions, "
                  f"{r['per_mac']:.3f} per MAC, flash {r['flash']} B, bit-identical with the host build: "
                  f"{r['host_identical']}")
            identical = identical and r["host_identical"]
    return 0 if identical else 1  # a kernel whose guest scores differ from the host build's is broken


if __name__ == "__main__":
    sys.exit(main())
