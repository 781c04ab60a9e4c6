"""The generated C for a Raspberry Pi, built on this host: aarch64 cross compiler + qemu-user.

Raspberry Pi OS 64-bit is Debian bookworm on arm64, so Debian's own cross toolchain
(``gcc-aarch64-linux-gnu``, glibc 2.36 like the Pi) builds libraries the Pi loads as they are.
``PI4`` builds for plain ARMv8-A tuned for the Pi 4's Cortex-A72 (``-march=armv8-a -mtune``), so
the same library runs on the Pi 3's A53 and the Pi 5's A76 (the tests run it as an A72 and an A53).
The generated source takes its NEON kernel there (``<PREFIX>_USE_NEON``: SMLAL), and
``<PREFIX>_PORTABLE`` keeps the portable loop; both must compute exactly the integers of
``export.c.reference.int_run``. Test executables are linked statically and run under
``qemu-aarch64-static`` with the same CPU as the emulated Pi (``devices/rpi/emulated_root.py``).

``add_pi_libraries`` is how a C artifact travels to a Pi (bundle and emulated-Pi parity): its
library is built here, put beside the source and recorded in the manifest entry with its sha256
(``c.prebuilt``), so the Pi's C backend loads it after checking that sha256 and needs no compiler.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from devices.rpi.emulated_root import QEMU_CPU
from export.c import harness as HN
from export.c.build import Toolchain, build_harness, build_shared, find_tool
from runtime.errors import UserError
from runtime.manifest import copy_verified_c, sha256_of

PI_MACHINE = "aarch64"  # platform.machine() on Raspberry Pi OS 64-bit

PI4 = Toolchain(
    name="aarch64 (Raspberry Pi)",
    cc="aarch64-linux-gnu-gcc",
    package="gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    cflags=("-march=armv8-a", f"-mtune={QEMU_CPU}"),
    exe_flags=("-static",),
    lib_flags=("-s",),
    runner=("qemu-aarch64-static", "-cpu", QEMU_CPU),
    runner_package="qemu-user-static",
)


def cross_compiler_missing() -> str | None:
    """Why Pi libraries cannot be built here, or None."""
    if shutil.which(PI4.cc) is None:
        return f"{PI4.cc} is not installed: run `sudo apt-get install {PI4.package}`"
    return None


def pi_library(lib_dir, prefix: str, out_so, precision: str) -> Path:
    """``lib_dir/<prefix>.c`` -> an aarch64 shared library for the Pi's C backend (``runtime/backends/c.py``)."""
    return build_shared(lib_dir, prefix, out_so, precision, toolchain=PI4)


def add_pi_libraries(folder: Path, entries: list[dict]) -> list[Path]:
    """For every C entry among ``entries`` whose source (and header) already lie in ``folder`` (an
    artifact folder being staged for a Pi): build its aarch64 library next to the source, as
    ``aarch64/lib<prefix>.so``, and record it in the entry (``c.prebuilt.aarch64``: file relative to
    the source, sha256). Entries are updated in place; returns the libraries built."""
    built: dict[Path, str] = {}
    for entry in entries:
        if entry.get("format") != "c":
            continue
        c = entry.get("c") or {}
        source = Path(folder) / entry["file"]
        rel = f"{PI_MACHINE}/lib{c['prefix']}.so"
        so = source.parent / rel
        if so not in built:
            with tempfile.TemporaryDirectory(prefix="rnn-edge-pi-c-") as tmp:  # checked copies of the listed files
                pi_library(copy_verified_c(Path(folder), entry, Path(tmp)), c["prefix"], so, entry.get("precision", "int8"))
            built[so] = sha256_of(so)
        entry["c"] = {**c, "prebuilt": {**(c.get("prebuilt") or {}), PI_MACHINE: {"file": rel, "sha256": built[so]}}}
    return list(built)


def count_instructions(lib_dir, prefix: str, precision: str, x: np.ndarray, work_dir,
                       defines: tuple[str, ...] = ()) -> tuple[int, np.ndarray]:
    """Exact aarch64 instructions of one whole-sequence inference (the harness's first, between its
    ``bench_begin``/``bench_end`` markers) and the scores of every sequence of ``x``.

    The static harness runs under ``qemu-aarch64`` (Debian's dynamically linked qemu-user, which
    loads TCG plugins; qemu-aarch64-static cannot) with the instruction-counting plugin of
    ``devices/cortex_m/icount_plugin.c``. A count, not a time: it says nothing of the Pi's caches or
    its out-of-order core, but it is exact and repeatable."""
    from devices.cortex_m.firmware import plugin_path, symbol
    qemu = find_tool("qemu-aarch64", "qemu-user")
    work = Path(work_dir)
    exe = build_harness(lib_dir, prefix, precision, work / f"harness_{prefix}", defines=defines, toolchain=PI4)
    addr = {name: symbol(exe, name, ("aarch64-linux-gnu-nm", "binutils-aarch64-linux-gnu"))
            for name in ("bench_begin", "bench_end")}
    inp, out, counts = work / "input.bin", work / "output.bin", work / "icount.txt"
    counts.unlink(missing_ok=True)
    HN.write_input(inp, x, precision, False)
    plugin = f"{plugin_path(work)},begin={addr['bench_begin']:#x},end={addr['bench_end']:#x},out={counts}"
    p = subprocess.run([qemu, "-cpu", QEMU_CPU, "-plugin", plugin, str(exe), str(inp), str(out)],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0 or not counts.is_file():
        raise UserError(f"the aarch64 harness exited with {p.returncode} under qemu-aarch64: {(p.stderr or p.stdout)[-300:]}")
    return int(counts.read_text().split()[0]), HN.read_output(out, precision)
