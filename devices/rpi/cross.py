"""The generated C for a Raspberry Pi, built on this host: aarch64 cross compiler + qemu-user.

Raspberry Pi OS 64-bit is Debian bookworm on arm64, so Debian's own cross toolchain
(``gcc-aarch64-linux-gnu``, glibc 2.36 like the Pi) builds libraries the Pi loads as they are.
``PI4`` builds for the Pi 4's Cortex-A72 (``-mcpu``; the code runs on the Pi 3's A53 and the Pi 5's
A76 too). The generated source takes its NEON kernel there (``<PREFIX>_USE_NEON``: SMLAL), and
``<PREFIX>_PORTABLE`` keeps the portable loop; both must compute exactly the integers of
``export.c.reference.int_run``. Test executables are linked statically and run under
``qemu-aarch64-static`` with the same CPU as the emulated Pi (``devices/rpi/emulated_root.py``).
"""

from __future__ import annotations

from pathlib import Path

from devices.rpi.emulated_root import QEMU_CPU
from export.c.build import Toolchain, build_shared

PI4 = Toolchain(
    name="aarch64 (Raspberry Pi)",
    cc="aarch64-linux-gnu-gcc",
    package="gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    cflags=(f"-mcpu={QEMU_CPU}",),
    exe_flags=("-static",),
    runner=("qemu-aarch64-static", "-cpu", QEMU_CPU),
    runner_package="qemu-user-static",
)


def pi_library(lib_dir, prefix: str, out_so, precision: str) -> Path:
    """``lib_dir/<prefix>.c`` -> an aarch64 shared library for the Pi's C backend (``runtime/backends/c.py``)."""
    return build_shared(lib_dir, prefix, out_so, precision, toolchain=PI4)
