"""ONNX Runtime, LiteRT and the generated C on an emulated Raspberry Pi 4 (aarch64 Cortex-A72 under qemu-user).

The C runs as a bundle ships it: its library cross-compiled here for aarch64 (NEON kernel),
loaded by the runtime's C backend on the Pi after a sha256 check (devices/rpi/cross.py).
Uses devices/rpi/parity.py: ``PiScores`` copies the folder's ONNX/TFLite/C files and the ``runtime``
package into the emulated Pi and scores them there with ``runtime.load``, all entries in ONE
emulated process (the first cell asks for every entry; later cells read the cache). Cells run on
the golden rows. Their ids say the device: ``gru-int8-rpi-litert``. Integer outputs must stay
within the LSB rule against the same file on this host (runtime/tolerances.py). Integer .tflite
files run a second time on LiteRT's reference kernels (``rpi-litert-ref``, entry ``NAME:ref`` in
devices/rpi/pi_scores.py), which must match the host's reference kernels bit for bit.
"""

from __future__ import annotations

import shutil

import numpy as np

from parity.cells import STREAM, WHOLE, Cell, Outputs, cell_id
from parity.providers._runtime import variant_of
from parity.providers.litert_ref import PRECISIONS as REF_PRECISIONS
from runtime.backends.litert import REFERENCE_SUFFIX
from runtime.manifest import output_scale

NAME = "rpi"
RUNTIMES = ("onnxruntime", "litert", "c")


def _missing(runtime: str) -> str | None:
    try:
        from devices.rpi import parity  # noqa: F401
        from devices.rpi.cross import cross_compiler_missing
    except ImportError as e:
        return f"devices.rpi.parity is not available in this checkout ({e})"
    for tool, pkg in (("qemu-aarch64-static", "qemu-user-static"), ("mmdebstrap", "mmdebstrap"),
                      ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (emulated Raspberry Pi): run `sudo apt-get install {pkg}`"
    return cross_compiler_missing() if runtime == "c" else None


def cells(ctx) -> list:
    entries = [e for e in ctx.entries() if e.get("runtime") in RUNTIMES and e.get("format") in ("onnx", "tflite", "c")]
    if not entries:
        return []
    runs = [(e, e["name"], f"rpi-{e['runtime']}") for e in entries]
    runs += [(e, e["name"] + REFERENCE_SUFFIX, "rpi-litert-ref") for e in entries
             if e.get("runtime") == "litert" and e.get("precision") in REF_PRECISIONS]
    names = [name for e, name, _ in runs if not _missing(e["runtime"])]
    session: dict = {}

    def pi():
        if "pi" not in session:
            from devices.rpi.parity import PiScores
            session["pi"] = PiScores(ctx.folder, progress=False)
            ctx.cleanup.append(session["pi"].close)
        return session["pi"]

    out = []
    for e, name, label in runs:
        mode = STREAM if e.get("kind") == "step" else WHOLE

        def run(x_raw: np.ndarray, name=name, mode=mode) -> Outputs:
            got = pi().scores(names, x_raw)  # every entry in one emulated run, cached per input
            err = got.get("error:" + name)
            if err is not None:
                raise RuntimeError(f"on the emulated Pi: {err}")
            y = np.asarray(got[name], np.float32)
            if ctx.heldout.head == "frames":  # every step is an output: [N, T, K] both ways
                y = y.reshape(len(y), -1, ctx.heldout.reference.shape[-1])
                return Outputs(scores=y, stream=y) if mode == STREAM else Outputs(scores=y)
            return Outputs(scores=y[:, -1], stream=y) if mode == STREAM else Outputs(scores=y)

        kernels = (" (reference kernels)" if name.endswith(REFERENCE_SUFFIX)
                   else " (cross-compiled aarch64 library)" if e["runtime"] == "c" else "")
        out.append(Cell(cell_id(ctx.arch, e.get("precision", "?"), label, variant_of(e)), ctx.arch, label,
                        e.get("precision", "?"), mode, NAME, artifact=e["name"], file=e.get("file"),
                        what=f"{e.get('file')} on {e['runtime']}{kernels} inside an emulated Raspberry Pi 4 "
                             f"(aarch64, qemu-user)",
                        output_scale=output_scale(e), inputs="sample", skip=_missing(e["runtime"]), run=run))
    return out
