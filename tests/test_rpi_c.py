"""The generated C on the Raspberry Pi's aarch64: cross-compiled here, run under qemu-aarch64.

The same checks as tests/test_c_codegen.py makes on the host, against the same references: the int8
library with its NEON kernel and with the portable loop gives the integers of
``export.c.reference.int_run`` bit for bit (whole sequences and streaming), and the float32 library
matches PyTorch. The Pi library that a bundle ships is an aarch64 ELF.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import numpy as np
import pytest
import torch

from devices.rpi.cross import PI4, pi_library
from export.c import build as HB
from export.c import reference as R

pytestmark = pytest.mark.skipif(
    shutil.which(PI4.cc) is None or shutil.which(PI4.runner[0]) is None,
    reason=f"needs the aarch64 cross compiler and qemu-user (apt: {PI4.package} {PI4.runner_package})")


def _lib(e, precision):
    rec = next(r for r in e["records"] if r["name"] == f"c-{precision}")
    return e["out"] / rec["c"]["dir"], rec["c"]["prefix"], rec


def _disassembly(exe) -> str:
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    return subprocess.run([objdump, "-d", str(exe)], capture_output=True, text=True, check=True).stdout


def test_int8_neon_and_portable_kernels_are_bit_exact_on_aarch64(arch, fixture_c_export, tmp_path):
    e = fixture_c_export(arch)
    lib, prefix, rec = _lib(e, "int8")
    assert "vmlal_s16" in (lib / f"{prefix}.c").read_text()
    x = R.quantize_input(e["test_windows"](24), rec["quant"]["input"]["scale"])
    want = R.int_run(e["qm"], x)
    for defines, kernel in (((), "neon"), ((f"{prefix.upper()}_PORTABLE",), "portable")):
        exe = HB.build_harness(lib, prefix, "int8", tmp_path / kernel / "h", defines=defines, toolchain=PI4)
        # the NEON build really multiplies with SMLAL; the portable one does not (gcc -O2 does not vectorize it)
        assert ("smlal" in _disassembly(exe)) == (kernel == "neon")
        got = HB.run_harness(exe, x, "int8", toolchain=PI4).astype(np.int64)
        np.testing.assert_array_equal(got, want, err_msg=f"{kernel} kernel on aarch64")
        stream = HB.run_harness(exe, x[:3], "int8", stream=True, toolchain=PI4).astype(np.int64)
        np.testing.assert_array_equal(stream, R.int_run(e["qm"], x[:3], stream=True),
                                      err_msg=f"{kernel} kernel on aarch64, streaming")
    # the same NEON executable on a Raspberry Pi 3's core (plain ARMv8-A code, tuned for the A72)
    pi3 = dataclasses.replace(PI4, runner=(PI4.runner[0], "-cpu", "cortex-a53"))
    exe = tmp_path / "neon" / "h"
    np.testing.assert_array_equal(HB.run_harness(exe, x, "int8", toolchain=pi3).astype(np.int64), want)


def test_float_c_matches_pytorch_on_aarch64(fixture_c_export, tmp_path):
    e = fixture_c_export("lstm")
    lib, prefix, _ = _lib(e, "float32")
    x = e["test_windows"](8)
    exe = HB.build_harness(lib, prefix, "float32", tmp_path / "h", toolchain=PI4)
    with torch.no_grad():
        want = e["model"](torch.from_numpy(x)).numpy()
    assert np.abs(HB.run_harness(exe, x, "float32", toolchain=PI4) - want).max() < 1e-4


def test_pi_library_is_an_aarch64_shared_object(fixture_c_export, tmp_path):
    e = fixture_c_export("gru")
    lib, prefix, _ = _lib(e, "int8")
    so = pi_library(lib, prefix, tmp_path / f"lib{prefix}.so", "int8")
    head = so.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[16] == 3  # ET_DYN
    assert int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    assert not list(tmp_path.glob(".*.tmp"))  # written under a temporary name, then renamed
