"""What the Raspberry Pi runs: Python version, wheel platform tags and pinned packages.

Raspberry Pi OS 64-bit (bookworm) is Debian 12 on arm64 with Python 3.11 and glibc 2.36. The pins
come from pyproject.toml (the single source of truth for versions), so the Pi runs exactly the
versions the tests ran on the host.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from runtime.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Raspberry Pi OS 64-bit = Debian bookworm: CPython 3.11, glibc 2.36, aarch64.
PI_SUITE = "bookworm"
PI_PYTHON = "3.11"
PI_GLIBC = (2, 36)

#: Every platform tag an aarch64 wheel for glibc <= 2.36 may carry. pip's --platform takes the
#: exact tags; leave one out (e.g. manylinux_2_27, which ai-edge-litert 2.3 uses) and pip silently
#: falls back to an old release that has a tag it was given.
PI_PLATFORM_TAGS = ["manylinux2014_aarch64"] + [
    f"manylinux_2_{minor}_aarch64" for minor in range(17, PI_GLIBC[1] + 1)]

#: Which pip package each runtime (manifest "runtime" field) needs on the Pi.
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert"}


def pyproject_pins(pyproject: Path = REPO_ROOT / "pyproject.toml") -> dict[str, str]:
    """{package name: exact version} for every ``name==version`` pin in pyproject.toml."""
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read the version pins in {pyproject}: {e}; run from a checkout of rnn-edge")
    project = data.get("project", {})
    specs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    pins = {}
    for spec in specs:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", spec)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def pi_requirements(runtimes) -> list[str]:
    """Pinned requirement lines for the Pi: numpy plus the package of each runtime in ``runtimes``."""
    pins = pyproject_pins()
    names = ["numpy"] + sorted({RUNTIME_PACKAGES[r] for r in runtimes if r in RUNTIME_PACKAGES})
    missing = [n for n in names if n not in pins]
    if missing:
        raise UserError(f"pyproject.toml pins no version of {', '.join(missing)}; pin it (name==version)")
    return [f"{n}=={pins[n]}" for n in names]


def pip_platform_args() -> list[str]:
    """pip options that select CPython 3.11 aarch64 wheels for the Pi (use with --target/--dest)."""
    args = ["--only-binary=:all:", "--python-version", PI_PYTHON, "--implementation", "cp",
            "--abi", "cp" + PI_PYTHON.replace(".", "")]
    for tag in PI_PLATFORM_TAGS:
        args += ["--platform", tag]
    return args
