"""Describe the machine a benchmark ran on: CPU, memory, load, tool and package versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess

PACKAGES = ("numpy", "torch", "onnxruntime", "ai-edge-litert", "tflite-micro", "tensorflow")
TOOLS = (("gcc", ["gcc", "--version"]), ("arm-none-eabi-gcc", ["arm-none-eabi-gcc", "--version"]),
         ("qemu-system-arm", ["qemu-system-arm", "--version"]),
         ("aarch64-linux-gnu-gcc", ["aarch64-linux-gnu-gcc", "--version"]), ("qemu-aarch64", ["qemu-aarch64", "--version"]))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what platform reports)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> float | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def _first_line(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0].strip() if out else None


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe() -> dict:
    """A dict describing this machine (taken at the start of a run; load average is sampled again at the end)."""
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_model(),
        "cpu_count": os.cpu_count(), "memory_gb": _mem_total_gb(), "load_avg_start": round(os.getloadavg()[0], 2),
        "threads": 1, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "packages": {p: _version(p) for p in PACKAGES},
        "tools": {name: _first_line(cmd) for name, cmd in TOOLS},
    }
