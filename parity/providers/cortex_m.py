"""The generated C on Cortex-M cores under QEMU (devices/cortex_m): one cell per core x C precision.

Each cell cross-compiles the artifact's C library for the core (arm-none-eabi-gcc), runs it under
qemu-system-arm with semihosting on the golden rows, and reads the scores back. The frames are
prepared as the runtime prepares them for the host C: the manifest's preprocessing, then the C
entry's input quantization (runtime.quant); int8 scores are dequantized with its output scale.
M4 runs the DSP (SMLAD) dot products, M3 the portable loop without FPU: both must equal the host
C bit for bit (runtime/tolerances.py LSB_RULES).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from parity.cells import STREAM, WHOLE, Cell, Outputs, cell_id
from runtime.manifest import output_scale

NAME = "cortex-m"
# (core, precisions): M4 = DSP + single-precision FPU; M3 = no DSP, no FPU (soft float).
TARGETS = (("cortex-m4", ("int8", "float32")), ("cortex-m3", ("int8",)))
TIMEOUT_S = 300


def _missing() -> str | None:
    try:
        from devices.cortex_m import firmware  # noqa: F401
    except ImportError as e:
        return f"devices.cortex_m is not available in this checkout ({e})"
    for tool, pkg in (("arm-none-eabi-gcc", "gcc-arm-none-eabi"), ("qemu-system-arm", "qemu-system-arm")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: run `sudo apt-get install {pkg}`"
    return None


def _device_frames(ctx, entry: dict, x_raw: np.ndarray) -> np.ndarray:
    from runtime.backends.base import Quant
    from runtime.quant import quantize
    mean, std = (np.asarray(v, np.float32) for v in ctx.manifest.preprocess)
    x = ((x_raw - mean) / std).astype(np.float32)
    q = Quant.from_json((entry.get("inputs") or [{}])[0].get("quant"))
    return quantize(x, q, "int8") if entry.get("precision") == "int8" else x


def cells(ctx) -> list:
    out = []
    skip = _missing()
    # A frames model: the C library is streaming-only (export/c), so the firmware streams the step
    # function and returns every frame's scores (cells ``<arch>-<p>-<core>-stream``).
    frames = ctx.heldout.head == "frames"
    for core, precisions in TARGETS:
        for entry in ctx.entries(format="c", kind="step" if frames else "sequence"):
            if entry.get("precision") not in precisions:
                continue

            def run(x_raw: np.ndarray, entry=entry, core=core) -> Outputs:
                from devices.cortex_m import firmware as F
                from devices.targets import get_target
                from runtime.backends.base import Quant
                from runtime.quant import dequantize
                work = Path(tempfile.mkdtemp(prefix=f"parity-{core}-"))
                try:  # built from checked copies of the listed C files only
                    fw = F.build(ctx.manifest.verified_c(entry, work / "verified-c"), entry["c"]["prefix"],
                                 entry["precision"], get_target(core), work)
                    res = F.run(fw, _device_frames(ctx, entry, x_raw), stream=frames, timeout=TIMEOUT_S, count=False)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                scores = res.scores
                if entry["precision"] == "int8":
                    scores = dequantize(scores, Quant.from_json(entry["outputs"][0]["quant"]))
                scores = np.asarray(scores, np.float32)
                return Outputs(scores=scores, stream=scores) if frames else Outputs(scores=scores)

            out.append(Cell(cell_id(ctx.arch, entry["precision"], core, "stream" if frames else None), ctx.arch, core,
                            entry["precision"], STREAM if frames else WHOLE,
                            NAME, artifact=entry["name"], file=entry.get("file"),
                            what=f"{entry.get('file')} cross-compiled for {core}, run under qemu-system-arm",
                            output_scale=output_scale(entry), inputs="sample", skip=skip, run=run))
    return out
