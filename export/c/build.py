"""Build a generated library on the host with gcc: a shared library (ctypes) or the harness."""

from __future__ import annotations

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


def build_shared(lib_dir, prefix: str, out_so, precision: str, opt: str = "-O2", defines: tuple[str, ...] = ()) -> Path:
    """``lib_dir/<prefix>.c`` -> shared library for ctypes (``defines`` as in ``build_harness``)."""
    cc = find_tool("gcc", "gcc")
    out_so = Path(out_so)
    out_so.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, *WARN, opt, *(f"-D{d}" for d in defines), "-fPIC", "-shared", str(Path(lib_dir) / f"{prefix}.c"),
           "-o", str(out_so)]
    run_checked(cmd + (["-lm"] if precision == "float32" else []), "host build of the C model")
    return out_so


def build_harness(lib_dir, prefix: str, precision: str, exe, sanitize: bool = False, opt: str = "-O2",
                  defines: tuple[str, ...] = ()) -> Path:
    """The test harness (``harness.py``) linked with the model into a host executable (``defines``:
    preprocessor names to set, e.g. ``<PREFIX>_PORTABLE`` for the portable kernel)."""
    cc = find_tool("gcc", "gcc")
    exe = Path(exe)
    exe.parent.mkdir(parents=True, exist_ok=True)
    harness_c = exe.parent / f"harness_{prefix}.c"
    harness_c.write_text(HN.harness_source(prefix, precision))
    cmd = [cc, *WARN, opt, *(f"-D{d}" for d in defines), "-I", str(lib_dir), str(Path(lib_dir) / f"{prefix}.c"),
           str(harness_c), "-o", str(exe)]
    cmd += SANITIZE if sanitize else []
    run_checked(cmd + ["-lm"], "host build of the C harness")
    return exe


def run_harness(exe, x: np.ndarray, precision: str, stream: bool = False, workdir=None, timeout: float = 120) -> np.ndarray:
    """Run the host harness on frames ``x`` [n, steps, C]; returns its scores."""
    workdir = Path(workdir or Path(exe).parent)
    inp, out = workdir / "input.bin", workdir / "output.bin"
    HN.write_input(inp, x, precision, stream)
    p = subprocess.run([str(exe), str(inp), str(out)], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"harness exited with {p.returncode}: {(p.stderr or p.stdout)[-2000:]}")
    return HN.read_output(out, precision)
