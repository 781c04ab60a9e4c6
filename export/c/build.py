"""Build a generated library with gcc: a shared library (ctypes) or the harness, for this host or,
through a ``Toolchain`` (a cross compiler and the emulator that runs what it builds), another
machine (``devices/rpi/cross.py``: the Raspberry Pi's aarch64)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np

from export.c import harness as HN
from runtime.errors import MissingDependency, UserError

WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]


def find_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise MissingDependency(name, f"sudo apt-get install {package}")
    return path


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """A C compiler for one kind of machine, and how to run the executables it builds."""

    name: str
    cc: str  # compiler command
    package: str  # apt package(s) providing it
    cflags: tuple[str, ...] = ()  # e.g. the -mcpu of the target
    exe_flags: tuple[str, ...] = ()  # for executables only (e.g. -static, so an emulator needs no sysroot)
    lib_flags: tuple[str, ...] = ()  # for shared libraries only (e.g. -s: no build paths in a shipped file)
    runner: tuple[str, ...] = ()  # command prefix that runs an executable (an emulator); empty: run it directly
    runner_package: str = ""

    def compiler(self) -> str:
        return find_tool(self.cc, self.package)

    def run_prefix(self) -> list[str]:
        if self.runner:
            return [find_tool(self.runner[0], self.runner_package), *self.runner[1:]]
        return []


HOST = Toolchain("host", "gcc", "gcc")


def run_checked(cmd: list[str], what: str, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
    """Run a build command; a failure is a UserError quoting the first compiler message."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what} did not finish within {timeout:.0f} s: {' '.join(cmd[:3])} ...") from None
    if p.returncode != 0:
        first = next((ln for ln in (p.stderr + p.stdout).splitlines() if "error" in ln), (p.stderr or p.stdout).strip()[:300])
        raise UserError(f"{what} failed: {first}")
    return p


def build_shared(lib_dir, prefix: str, out_so, precision: str, opt: str = "-O2", defines: tuple[str, ...] = (),
                 toolchain: Toolchain = HOST) -> Path:
    """``lib_dir/<prefix>.c`` -> shared library for ctypes (``defines`` as in ``build_harness``),
    written under a temporary name and renamed."""
    cc = toolchain.compiler()
    out_so = Path(out_so)
    out_so.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_so.with_name(f".{out_so.name}.tmp")
    cmd = [cc, *WARN, opt, *toolchain.cflags, *toolchain.lib_flags, *(f"-D{d}" for d in defines), "-fPIC", "-shared",
           str(Path(lib_dir) / f"{prefix}.c"), "-o", str(tmp)]
    try:
        run_checked(cmd + (["-lm"] if precision == "float32" else []), f"{toolchain.name} build of the C model")
        tmp.replace(out_so)
    finally:
        tmp.unlink(missing_ok=True)
    return out_so


def build_harness(lib_dir, prefix: str, precision: str, exe, sanitize: bool = False, opt: str = "-O2",
                  defines: tuple[str, ...] = (), toolchain: Toolchain = HOST) -> Path:
    """The test harness (``harness.py``) linked with the model into an executable for ``toolchain``'s
    machine (``defines``: preprocessor names to set, e.g. ``<PREFIX>_PORTABLE`` for the portable kernel)."""
    cc = toolchain.compiler()
    exe = Path(exe)
    exe.parent.mkdir(parents=True, exist_ok=True)
    harness_c = exe.parent / f"harness_{prefix}.c"
    harness_c.write_text(HN.harness_source(prefix, precision))
    cmd = [cc, *WARN, opt, *toolchain.cflags, *toolchain.exe_flags, *(f"-D{d}" for d in defines), "-I", str(lib_dir),
           str(Path(lib_dir) / f"{prefix}.c"), str(harness_c), "-o", str(exe)]
    cmd += SANITIZE if sanitize else []
    run_checked(cmd + ["-lm"], f"{toolchain.name} build of the C harness")
    return exe


def run_harness(exe, x: np.ndarray, precision: str, stream: bool = False, workdir=None, timeout: float = 120,
                toolchain: Toolchain = HOST) -> np.ndarray:
    """Run a harness built by ``build_harness`` (under ``toolchain``'s emulator, if it has one) on
    frames ``x`` [n, steps, C]; returns its scores."""
    workdir = Path(workdir or Path(exe).parent)
    inp, out = workdir / "input.bin", workdir / "output.bin"
    HN.write_input(inp, x, precision, stream)
    p = subprocess.run([*toolchain.run_prefix(), str(exe), str(inp), str(out)], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"harness exited with {p.returncode}: {(p.stderr or p.stdout)[-2000:]}")
    return HN.read_output(out, precision)
