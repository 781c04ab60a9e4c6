"""Reliability: the generated C fuzzed with random weights, shapes and inputs under ASan + UBSan.

- libFuzzer (clang): random models, int8 and float32, ~40 s in the default tier and 10 minutes
  under ``-m slow`` (``tests/fuzz/c_fuzz.py``; properties in ``tests/fuzz/fuzz_target.c``).
  A planted out-of-bounds read proves the set-up can fail.
- hypothesis (gcc only, always runs): random models through the sanitized file harness, with
  random and extreme frames; the scores equal the numpy reference bit for bit (int8) or within
  float rounding (float32).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.errors import UserError

_spec = importlib.util.spec_from_file_location("c_fuzz", Path(__file__).parent / "fuzz" / "c_fuzz.py")
c_fuzz = sys.modules.setdefault("c_fuzz", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(c_fuzz)

needs_clang = pytest.mark.skipif(shutil.which("clang") is None, reason="libFuzzer needs clang (apt-get install clang)")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@needs_clang
def test_libfuzzer_random_models(tmp_path):
    results = c_fuzz.fuzz_random_models(seconds=40, models=4, seed=2026, workdir=tmp_path)
    found = [r for r in results if not r.ok]
    assert not found, "\n".join(f"{r.model} {r.precision}: {r.detail}" for r in found)
    assert {r.precision for r in results} == {"int8", "float32"}
    assert all(r.runs > 50 for r in results), [(r.model, r.runs) for r in results]


@needs_clang
@pytest.mark.slow
def test_libfuzzer_random_models_long(tmp_path):
    results = c_fuzz.fuzz_random_models(seconds=600, models=20, seed=7, workdir=tmp_path)
    found = [r for r in results if not r.ok]
    assert not found, "\n".join(f"{r.model} {r.precision}: {r.detail}" for r in found)


@needs_clang
def test_libfuzzer_finds_a_planted_bug(tmp_path):
    """The same set-up on a library whose ``_run`` reads one frame too many: AddressSanitizer must say so."""
    rng = np.random.default_rng(0)
    fm = c_fuzz.random_model(rng)
    lib = c_fuzz.generate(fm, "float32", tmp_path / "bug", rng)
    src = lib.folder / f"{lib.prefix}.c"
    text = src.read_text()
    assert "for (t = 0; t < steps; ++t)" in text
    src.write_text(text.replace("for (t = 0; t < steps; ++t)", "for (t = 0; t <= steps; ++t)"))
    r = c_fuzz.libfuzz(lib, seconds=10)
    assert not r.ok and "heap-buffer-overflow" in r.detail, r.detail[-1500:]


# --- hypothesis: differential fuzzing through the sanitized harness (gcc) ----------------------------

@st.composite
def model_and_inputs(draw):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    precision = draw(st.sampled_from(["int8", "float32"]))
    steps = draw(st.integers(1, 24))
    n = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["random", "extreme", "zeros"]))
    return seed, precision, n, steps, kind


def frames(rng, precision: str, n: int, steps: int, c: int, kind: str) -> np.ndarray:
    if precision == "int8":
        if kind == "extreme":
            return rng.choice(np.array([-128, 127], np.int8), (n, steps, c))
        if kind == "zeros":
            return np.zeros((n, steps, c), np.int8)
        return rng.integers(-128, 128, (n, steps, c)).astype(np.int8)
    if kind == "extreme":
        return rng.choice(np.array([-1e4, 1e4, -1e-38, 0.0], np.float32), (n, steps, c))
    if kind == "zeros":
        return np.zeros((n, steps, c), np.float32)
    return rng.normal(0, 3, (n, steps, c)).astype(np.float32)


@needs_gcc
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(model_and_inputs())
def test_generated_c_equals_reference_under_sanitizers(tmp_path_factory, case):
    seed, precision, n, steps, kind = case
    rng = np.random.default_rng(seed)
    fm = c_fuzz.random_model(rng)
    try:
        lib = c_fuzz.generate(fm, precision, tmp_path_factory.mktemp("hyp"), rng)
    except UserError as e:  # weights too large for the int8 bounds proof: refused up front, correctly
        assert "overflow" in str(e) or "too large" in str(e)
        return
    x = frames(rng, precision, n, steps, fm["input_size"], kind)
    got, want = c_fuzz.run_differential(lib, x)  # the harness raises if a sanitizer fired
    assert got.shape == want.shape
    if precision == "int8":
        np.testing.assert_array_equal(got, want, err_msg=c_fuzz.describe(fm))
    else:
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(want).max())),
                                   err_msg=c_fuzz.describe(fm))
