"""The C export on the host: float C == PyTorch, int8 C == numpy reference bit for bit, streaming,
sanitizers, packaging, the runtime's C backend, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from export.c import build as HB
from export.c import export_c, prepare
from export.c import reference as R
from runtime.errors import MissingDependency, UserError

torch.set_num_threads(1)
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (apt: gcc)")


@pytest.fixture(scope="module")
def fixture_data(fixture_c_export):
    return fixture_c_export("gru")["data"]


@pytest.fixture(scope="module")
def c_export(fixture_c_export):
    """``c_export(arch)`` -> the session's C export (tests/conftest.py) with x: 48 normalized test windows."""
    def get(arch):
        e = fixture_c_export(arch)
        return {**e, "x": e["test_windows"](48)}
    return get


def _lib(e, precision):
    rec = next(r for r in e["records"] if r["name"] == f"c-{precision}")
    return e["out"] / rec["c"]["dir"], rec["c"]["prefix"], rec


def _torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_float_c_matches_pytorch(arch, c_export, tmp_path):
    e = c_export(arch)
    lib, prefix, _ = _lib(e, "float32")
    exe = HB.build_harness(lib, prefix, "float32", tmp_path / "h")  # -Wall -Wextra -Werror -pedantic
    got = HB.run_harness(exe, e["x"], "float32")
    assert np.abs(got - _torch(e["model"], e["x"])).max() < 1e-4
    stream = HB.run_harness(exe, e["x"][:4], "float32", stream=True)
    with torch.no_grad():
        ref_stream = e["model"].stream(torch.from_numpy(e["x"][:4])).numpy()
    assert np.abs(stream - ref_stream).max() < 1e-4


def test_int8_c_is_bit_exact_with_reference_and_streams(arch, c_export, tmp_path):
    e = c_export(arch)
    lib, prefix, rec = _lib(e, "int8")
    # both requantization paths are exercised: rows with a left shift (layer 0's W_ih, as on the
    # watch models) and matrices without one (the C then gets no ls table)
    shifts = [L[k][:, 0] for L in e["qm"]["layers"] for k in ("wx_shift", "wh_shift")]
    assert any(s.any() for s in shifts) and not all(s.any() for s in shifts)
    source = (lib / f"{prefix}.c").read_text()
    assert "L0_WX_LS" in source and "L0_WH_LS" not in source
    xq = R.quantize_input(e["x"], rec["quant"]["input"]["scale"])
    exe = HB.build_harness(lib, prefix, "int8", tmp_path / "h")
    got = HB.run_harness(exe, xq, "int8")
    np.testing.assert_array_equal(got.astype(np.int64), R.int_run(e["qm"], xq))
    stream = HB.run_harness(exe, xq[:6], "int8", stream=True)
    np.testing.assert_array_equal(stream.astype(np.int64), R.int_run(e["qm"], xq[:6], stream=True))
    np.testing.assert_array_equal(stream[:, -1], got[:6])  # streaming == whole sequence
    # and it still classifies like the float model
    agree = np.mean(R.dequantize_scores(got).argmax(1) == _torch(e["model"], e["x"]).argmax(1))
    assert agree >= 0.9


def test_sanitizers_clean(arch, c_export, tmp_path):
    e = c_export(arch)
    for precision in ("int8", "float32"):
        lib, prefix, rec = _lib(e, precision)
        exe = HB.build_harness(lib, prefix, precision, tmp_path / precision / "h", sanitize=True, opt="-O1")
        x = e["x"][:8]
        if precision == "int8":
            x = R.quantize_input(x, rec["quant"]["input"]["scale"])
            np.testing.assert_array_equal(HB.run_harness(exe, x, precision).astype(np.int64), R.int_run(e["qm"], x))
        else:
            assert np.abs(HB.run_harness(exe, x, precision) - _torch(e["model"], e["x"][:8])).max() < 1e-4


def test_simd_and_portable_kernels_compute_the_same_integers(arch, c_export, tmp_path):
    """On this x86-64 host the dot products run on SSE2 (PMADDWD); with <PREFIX>_PORTABLE defined
    the portable loop (the one a core without SIMD runs) must give the very same integers."""
    e = c_export(arch)
    lib, prefix, rec = _lib(e, "int8")
    source = (lib / f"{prefix}.c").read_text()
    assert "_mm_madd_epi16" in source and f"{prefix.upper()}_PORTABLE" in source
    x = R.quantize_input(e["x"][:8], rec["quant"]["input"]["scale"])
    want = R.int_run(e["qm"], x)
    for defines in ((), (f"{prefix.upper()}_PORTABLE",)):
        exe = HB.build_harness(lib, prefix, "int8", tmp_path / ("portable" if defines else "simd") / "h", defines=defines)
        np.testing.assert_array_equal(HB.run_harness(exe, x, "int8").astype(np.int64), want)


def test_kernel_files_are_pasted_whole_under_the_model_prefix(c_export):
    """The generated source carries every kernel file of export/c/kernels/ its architecture uses, each
    under a line naming it, with the PREFIX_ token replaced by the model's prefix; no file is unused."""
    from export.c.kernels import DOT4_VARIANTS, KERNEL_DIR
    used = set()
    for arch in ("gru", "lstm"):
        e = c_export(arch)
        lib, prefix, _ = _lib(e, "int8")
        source = (lib / f"{prefix}.c").read_text()
        names = ["int8_select.h", "int8_layer.h", "int8_primitives.h", *DOT4_VARIANTS, "matvec_q.c", f"{arch}_cell_q.c"]
        for name in names:
            assert source.count(f"/* ---- export/c/kernels/{name} ---- */") == 1, name
            body = (KERNEL_DIR / name).read_text().replace("PREFIX_", f"{prefix.upper()}_")
            assert body in source, name
        assert "PREFIX_" not in source
        assert source.count("_INLINE const int8_t *dot4(") == len(DOT4_VARIANTS)  # one per variant, each behind its guard
        used.update(names)
    assert used == {f.name for f in KERNEL_DIR.iterdir() if f.suffix in (".c", ".h")}


def test_per_layer_sizes_and_odd_widths(tmp_path):
    """Three layers of different, non-multiple-of-4 widths: padding and per-layer descriptors."""
    from training.models import ModelSpec, SequenceModel
    from training.data.base import SequenceData
    torch.manual_seed(0)
    for arch in ("gru", "lstm"):
        model = SequenceModel(ModelSpec(arch, 5, (7, 13, 6), 3)).eval()
        rng = np.random.default_rng(1)
        X = rng.standard_normal((40, 12, 5)).astype(np.float32)
        data = SequenceData("t", ["a", "b", "c"], X, rng.integers(0, 3, 40), X[:8], np.zeros(8), X[:8], np.zeros(8))
        meta = {"task": "odd", "input_mean": [0.0] * 5, "input_std": [1.0] * 5}
        recs = export_c(model, meta, data, tmp_path / arch)
        _, quant, qm = prepare(model, meta, quant=recs[2]["quant"])
        for rec in recs[::2]:
            lib, prefix = tmp_path / arch / rec["c"]["dir"], rec["c"]["prefix"]
            exe = HB.build_harness(lib, prefix, rec["precision"], tmp_path / arch / "b" / prefix)
            if rec["precision"] == "int8":
                xq = R.quantize_input(X[:10], quant["input"]["scale"])
                np.testing.assert_array_equal(HB.run_harness(exe, xq, "int8").astype(np.int64), R.int_run(qm, xq))
            else:
                assert np.abs(HB.run_harness(exe, X[:10], "float32") - _torch(model, X[:10])).max() < 1e-4


def test_int8_source_uses_no_float_and_no_libm(c_export, tmp_path):
    e = c_export("lstm")
    lib, prefix, _ = _lib(e, "int8")
    src = (lib / f"{prefix}.c").read_text()
    assert "math.h" not in src and "float" not in src.split("#include")[-1].split("*/", 1)[-1].replace("float32", "")
    obj = tmp_path / "m.o"
    # -mgeneral-regs-only: any floating-point operation is a compile error
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-mgeneral-regs-only", "-c",
                    str(lib / f"{prefix}.c"), "-o", str(obj)], check=True)
    undefined = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split()
    assert not [s for s in undefined if s not in ("U",) and s != "memcpy"], undefined


def test_records_and_quant_stored(c_export):
    e = c_export("gru")
    names = [r["name"] for r in e["records"]]
    assert names == ["c-float32", "c-float32-step", "c-int8", "c-int8-step"]
    rec = e["records"][2]
    assert rec["format"] == "c" and rec["runtime"] == "c" and rec["precision"] == "int8"
    assert rec["quant"]["scheme"] and rec["inputs"][0]["quant"]["scale"] == rec["quant"]["input"]["scale"]
    assert json.loads((e["out"] / "c-int8" / "quant.json").read_text()) == rec["quant"]
    assert rec["state"]["mode"] == "variables"
    # the stored record alone rebuilds the same integer model (no recalibration)
    _, _, qm2 = prepare(e["model"], e["meta"], quant=rec["quant"])
    np.testing.assert_array_equal(qm2["layers"][0]["wx"], e["qm"]["layers"][0]["wx"])
    assert 0 <= rec["metrics"]["accuracy"] <= 1 and rec["metrics"]["top1_agreement"] >= 0.9


def test_runtime_c_backend(arch, c_export, tmp_path, monkeypatch):
    """runtime.backends.c: gcc + ctypes; sequence and step records; states per batch row."""
    monkeypatch.setenv("RNN_EDGE_CACHE", str(tmp_path / "cache"))
    from runtime.backends import backend_class
    from runtime.quant import quantize
    cls = backend_class("c")
    e = c_export(arch)
    for rec in e["records"]:
        be = cls(e["out"] / rec["file"], entry=rec)
        x = e["x"][:5]
        if rec["precision"] == "int8":
            x = quantize(x, be.inputs[0].quant, "int8")
            np.testing.assert_array_equal(x, R.quantize_input(e["x"][:5], rec["quant"]["input"]["scale"]))
        if rec["kind"] == "sequence":
            y = be.run([x])[0]
        else:  # stream frame by frame, state kept in the backend between calls
            be.reset_variables()
            for t in range(x.shape[1]):
                y = be.run([x[:, t]])[0]
        if rec["precision"] == "int8":
            np.testing.assert_array_equal(y.astype(np.int64), R.int_run(e["qm"], x))
        else:
            assert np.abs(y - _torch(e["model"], e["x"][:5])).max() < 1e-4


def test_runtime_c_backend_loads_a_prebuilt_library_only_after_its_sha256(c_export, tmp_path, monkeypatch):
    """An entry with a library prebuilt for this machine (as a Pi bundle ships them) loads without
    any compiler; a library whose sha256 differs from the entry's is refused in one clear line."""
    import platform
    from runtime.backends import backend_class
    from runtime.manifest import sha256_of
    monkeypatch.setenv("RNN_EDGE_CACHE", str(tmp_path / "cache"))
    e = c_export("gru")
    lib, prefix, rec = _lib(e, "int8")
    so = HB.build_shared(lib, prefix, lib / "prebuilt-test" / f"lib{prefix}.so", "int8")
    entry = {**rec, "c": {**rec["c"], "prebuilt": {platform.machine(): {"file": f"prebuilt-test/lib{prefix}.so",
                                                                       "sha256": sha256_of(so)}}}}
    cls = backend_class("c")
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no compiler on this "device"
    with pytest.raises(MissingDependency):
        cls.library_for(rec)
    cls.library_for(entry)
    be = cls(e["out"] / rec["file"], entry=entry)
    x = R.quantize_input(e["x"][:4], rec["quant"]["input"]["scale"])
    np.testing.assert_array_equal(be.run([x])[0].astype(np.int64), R.int_run(e["qm"], x))
    assert not list((tmp_path / "cache").glob("**/lib*.so"))  # nothing was compiled (the prebuilt one is copied, checked)
    data = so.read_bytes()
    so.unlink()  # a new file: the loaded library's mapping keeps the old one (rewriting it in place would crash)
    so.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(UserError, match="failed sha256 verification"):
        cls(e["out"] / rec["file"], entry=entry)
    shutil.rmtree(so.parent)


def test_packaging_builds_with_make_and_cmake(c_export, tmp_path):
    e = c_export("gru")
    lib, prefix, _ = _lib(e, "int8")
    work = tmp_path / "pkg"
    shutil.copytree(lib, work)
    subprocess.run(["make", "-s", "all", "shared"], cwd=work, check=True, capture_output=True)
    assert (work / f"lib{prefix}.a").is_file() and (work / f"lib{prefix}.so").is_file()
    ard = next((work / "arduino").iterdir())
    props = (ard / "library.properties").read_text()
    assert "name=" in props and f"includes={prefix}.h" in props
    assert (ard / "src" / f"{prefix}.c").read_text() == (lib / f"{prefix}.c").read_text()
    ino = ard / "examples" / f"{prefix}_demo" / f"{prefix}_demo.ino"
    assert f"{prefix}_step(&state, frame, scores)" in ino.read_text()
    # the header is C++-clean (Arduino sketches are C++)
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", "-fsyntax-only", "-x", "c++", "-I", str(lib), "-"],
                   input=f'#include "{prefix}.h"\nint main() {{ {prefix}_state s; {prefix}_init(&s); return 0; }}\n',
                   text=True, check=True, capture_output=True)
    if shutil.which("cmake"):
        b = tmp_path / "cmake-build"
        subprocess.run(["cmake", "-S", str(work), "-B", str(b)], check=True, capture_output=True)
        subprocess.run(["cmake", "--build", str(b)], check=True, capture_output=True)
        assert list(b.glob(f"lib{prefix}.a"))


@pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang (apt: clang)")
@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_package_builds_with_clang_through_its_own_makefile(arch, c_export, tmp_path, precision):
    """`make CC=clang` (cc is clang on macOS and FreeBSD) with the Makefile's -Wall -Wextra -Werror: the
    GRU int8 package failed on the integer primitive it does not use (sat16, -Wunused-function)."""
    lib, prefix, _ = _lib(c_export(arch), precision)
    work = tmp_path / "pkg"
    shutil.copytree(lib, work)
    p = subprocess.run(["make", "-s", "all", "CC=clang"], cwd=work, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (work / f"lib{prefix}.a").is_file()


def test_quantized_tables_dequantize_to_the_pytorch_weights(arch, c_export):
    """The int8 tables, read back through their own scales, are PyTorch's parameters within half a
    quantization step. Independent of export/c/quantize.py's code (test-suite audit: the C and its
    numpy twin share the quantized model, so a dropped bias or a wrong bias scale passed bit-exactness)."""
    from export.c.reference import GATE_FRAC, SCORE_FRAC, STATE_FRAC
    e = c_export(arch)
    qm = e["qm"]
    sd = {k: v.detach().double().numpy() for k, v in e["model"].state_dict().items()}

    def weights(wq, mult, shift, in_scale, out_frac):
        real = mult / 2.0 ** 32 * 2.0 ** shift[:, 0] / 2.0 ** shift[:, 1]  # the row's requantization factor
        step = real / (in_scale * 2.0 ** out_frac)  # = the row's weight scale
        return wq * step[:, None], step

    in_scale = qm["input_scale"]
    for i, L in enumerate(qm["layers"]):
        H, p = L["hidden"], f"layers.{i}."
        for name, wq, mult, shift, scale in (("ih", L["wx"], L["wx_mult"], L["wx_shift"], in_scale),
                                             ("hh", L["wh"], L["wh_mult"], L["wh_shift"], 2.0 ** -STATE_FRAC)):
            w, step = weights(wq.astype(np.float64)[:, :sd[p + f"weight_{name}_l0"].shape[1]], mult, shift, scale, GATE_FRAC)
            assert np.all(np.abs(w - sd[p + f"weight_{name}_l0"]) <= 0.5 * step[:, None] * (1 + 1e-6)), (i, name)
        b_ih, b_hh = sd[p + "bias_ih_l0"], sd[p + "bias_hh_l0"]
        bias = L["bias"] / 2.0 ** GATE_FRAC
        if arch == "lstm":
            np.testing.assert_allclose(bias, b_ih + b_hh, atol=2.0 ** -(GATE_FRAC + 1) + 1e-12)
        else:  # r, z: both biases; n: b_in here, b_hn inside r * (W_hn h + b_hn)
            np.testing.assert_allclose(bias[:2 * H], (b_ih + b_hh)[:2 * H], atol=2.0 ** -(GATE_FRAC + 1) + 1e-12)
            np.testing.assert_allclose(bias[2 * H:], b_ih[2 * H:], atol=2.0 ** -(GATE_FRAC + 1) + 1e-12)
            np.testing.assert_allclose(L["bias_hn"] / 2.0 ** GATE_FRAC, b_hh[2 * H:], atol=2.0 ** -(GATE_FRAC + 1) + 1e-12)
        in_scale = 2.0 ** -STATE_FRAC
    w, step = weights(qm["head_w"].astype(np.float64), qm["head_mult"], qm["head_shift"], 2.0 ** -STATE_FRAC, SCORE_FRAC)
    assert np.all(np.abs(w - sd["head.weight"]) <= 0.5 * step[:, None] * (1 + 1e-6))
    np.testing.assert_allclose(qm["head_bias"] / 2.0 ** SCORE_FRAC, sd["head.bias"], atol=2.0 ** -(SCORE_FRAC + 1) + 1e-12)


def test_the_bias_folded_into_the_requantization_word_adds_exactly_the_bias():
    """The C adds each row's bias inside requantize's rounding (word = (1 + 2 b) * 256 + rs - 1):
    the same integers as requantize + b, over the whole range of shifts, signs and bias sizes."""
    rng = np.random.default_rng(0)
    n = 200_000
    rs = rng.integers(1, 32, n)
    ls = np.where(rng.random(n) < 0.2, rng.integers(0, 3, n), 0)
    acc = rng.integers(-2 ** 28, 2 ** 28, n)
    mult = rng.integers(2 ** 30, 2 ** 31, n)
    bias = rng.integers(-2 ** 21, 2 ** 21, n)
    bias[:8] = [0, 1, -1, 2 ** 21, -2 ** 21, 4095, -4096, 7]
    expected = R.requantize(acc, mult, np.stack([ls, rs], 1)) + bias
    np.testing.assert_array_equal(R.requantize_word(acc, mult, ls, R.requant_word(rs, bias)), expected)
    # the word's low byte is the shift, the rest the rounding term
    w = R.requant_word(rs, bias)
    np.testing.assert_array_equal(w & 255, rs - 1)
    np.testing.assert_array_equal(w >> 8, 1 + 2 * bias)


def test_the_packed_tables_look_up_the_same_integers_as_the_sampled_ones():
    """The C's tables pack {hi - lo, lo} per interval and take u = v + 32768 (the origin rides in the
    gate rows' requantization words): the same Q0.15 values as lut(table, v) for every v, saturated
    ones far outside [-8, 8) included."""
    v = np.concatenate([np.arange(-70000, 70000), [-2 ** 30, 2 ** 30 - 1 - R.LUT_ORIGIN]])
    for table in (R.SIGMOID_TABLE, R.TANH_TABLE):
        words = R.pack_table(table)
        assert words.shape == (256,) and words.min() >= -2 ** 31 and words.max() < 2 ** 31
        np.testing.assert_array_equal(R.lut_packed(words, v + R.LUT_ORIGIN), R.lut(table, v))


def test_the_cell_state_reaches_the_tanh_table_as_in_the_reference():
    """The C turns the LSTM cell state c (Q(15-cf).cf) into tanh's table input with one shift up,
    one down and a rounding add that also carries the origin; saturated as the lookup saturates it,
    that is the reference's c12 (rshift_round or a saturating shift) plus 32768, for every c and cf."""
    c = np.arange(-32768, 32768)
    for cf in range(4, 16):
        c12 = R.rshift_round(c, cf - R.GATE_FRAC) if cf > R.GATE_FRAC else R.sat16(c << (R.GATE_FRAC - cf))
        expected = R.sat16(c12) + R.LUT_ORIGIN
        np.testing.assert_array_equal(np.clip(R.cell_table_input(c, cf), 0, 65535), expected, err_msg=f"cf={cf}")


def test_a_q15_product_by_smmulr_is_the_rounded_shift():
    """The DSP build rounds a gate times a value, (a b + 2^14) >> 15, as SMMULR(a 2^16, 2 b): the same
    integer for every gate 0 <= a < 2^15, for the cells' |b| < 2^16 and the GRU's r * gh_n (|2 gh_n| < 2^31)."""
    rng = np.random.default_rng(0)
    a = np.concatenate([[0, 1, 32767], rng.integers(0, 32768, 100_000)])
    for bound in (2 ** 16, 2 ** 30):
        b = np.concatenate([[-bound + 1, bound - 1, 0], rng.integers(-bound + 1, bound, 100_000)])
        np.testing.assert_array_equal(R.smmulr(a * 65536, b * 2), R.rshift_round(a * b, 15))


def test_a_bias_too_large_for_the_requantization_word_is_refused(c_export):
    from export.c import quantize as Q
    e = c_export("gru")
    qm = Q.quantize(Q.float_weights(e["model"]), e["quant"])
    qm["layers"][0]["bias"] = qm["layers"][0]["bias"].copy()
    qm["layers"][0]["bias"][0] = 2 ** 23  # 2048 in Q3.12: (1 + 2 b) * 256 no longer fits int32
    with pytest.raises(UserError, match="layer 0: worst-case accumulator"):
        Q.check_bounds(qm)


ARDUINO_STUB = """#pragma once
#include <stdint.h>
struct SerialStub { void begin(long) {} template <class T> void print(T) {} template <class T> void println(T, int = 2) {} };
static SerialStub Serial;
static inline void delay(unsigned long) {}
"""


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_header_carries_the_inputs_recipe(c_export, tmp_path, precision):
    """A firmware engineer gets the normalization, the window and the class names from the header
    alone (C-user audit: only manifest.json had them), and the Arduino example uses them."""
    e = c_export("gru")
    lib, prefix, rec = _lib(e, precision)
    P, meta = prefix.upper(), e["meta"]
    prog = tmp_path / "show.c"
    prog.write_text(f"""#include <stdio.h>
#include "{prefix}.h"
static const float mean[] = {P}_INPUT_MEAN;
static const float stdev[] = {P}_INPUT_STD;
static const char *const names[] = {P}_CLASS_NAMES;
int main(void) {{
    int c;
    for (c = 0; c < {P}_INPUT_SIZE; ++c) printf("%.9g %.9g\\n", mean[c], stdev[c]);
    printf("%d\\n", {P}_SEQ_LEN);
    for (c = 0; c < {P}_NUM_CLASSES; ++c) printf("%s\\n", names[c]);
    return 0;
}}
""")
    exe = tmp_path / "show"
    subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-I", str(lib), str(prog), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    C = len(meta["input_mean"])
    got = np.array([[float(v) for v in line.split()] for line in out[:C]], np.float32)
    np.testing.assert_array_equal(got[:, 0], np.float32(meta["input_mean"]))
    np.testing.assert_array_equal(got[:, 1], np.float32(meta["input_std"]))
    assert int(out[C]) == meta["seq_len"] and out[C + 1:] == list(meta["class_names"])
    # the Arduino example (C++) compiles against a stub core, warnings as errors
    ino = next((lib / "arduino").glob("*/examples/*/*.ino"))
    (tmp_path / "Arduino.h").write_text(ARDUINO_STUB)
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-x", "c++", "-include", "Arduino.h",
                    "-I", str(tmp_path), "-I", str(lib), str(ino)], check=True, capture_output=True, text=True)


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_selftest_header_passes_and_catches_a_wrong_score(arch, c_export, tmp_path, precision):
    """<prefix>_selftest.h (validation on target): 0 on a correct build; one changed expected score
    is counted. The Cortex-M run of it is in tests/test_cortex_m.py."""
    e = c_export(arch)
    lib, prefix, rec = _lib(e, precision)
    header = lib / f"{prefix}_selftest.h"
    assert f"{rec['c']['dir']}/{header.name}" in rec["c"]["file_sha256"]  # verified like the rest of the package
    main = tmp_path / "main.c"
    main.write_text(f'#include <stdio.h>\n#include "{prefix}_selftest.h"\nint main(void) {{ printf("%d", {prefix}_selftest()); return 0; }}\n')

    def wrong_scores(include_dir) -> int:
        exe = tmp_path / "selftest"
        subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-I", str(include_dir),
                        str(main), str(lib / f"{prefix}.c"), "-o", str(exe), "-lm"], check=True, capture_output=True, text=True)
        return int(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)

    assert wrong_scores(lib) == 0
    bad = tmp_path / "bad"
    shutil.copytree(lib, bad)
    text = header.read_text()
    start = text.index("_SELFTEST_SCORES[")
    start = text.index("{", start) + 1
    first = text.index(",", start)
    value = text[start:first].strip()
    changed = str(int(value) + 1) if precision == "int8" else f"{float(value.rstrip('f')) + 1.0:.9g}f"
    (bad / header.name).write_text(text[:start] + "\n    " + changed + text[first:])
    assert wrong_scores(bad) == 1


def test_any_label_is_a_valid_c_string(tmp_path):
    from export.c.emit import c_string
    labels = ['say "yes"', "back\\slash", "caf\u00e9", "??=", "tab\there", ""]
    prog = tmp_path / "s.c"
    prog.write_text("#include <stdio.h>\nstatic const char *const n[] = {" + ", ".join(map(c_string, labels)) + "};\n"
                    "int main(void) { int i; for (i = 0; i < 6; ++i) printf(\"%s|\", n[i]); return 0; }\n")
    subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", str(prog), "-o", str(tmp_path / "s")],
                   check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "s")], check=True, capture_output=True).stdout
    assert out.decode("utf-8") == "".join(f"{label}|" for label in labels)


def test_bad_input_is_a_user_error(c_export, tmp_path, monkeypatch):
    e = c_export("gru")
    with pytest.raises(UserError, match="calibration data"):
        export_c(e["model"], e["meta"], None, tmp_path / "x")
    from export.c import quantize as Q
    bad = dict(e["quant"], scheme="other/0")
    with pytest.raises(UserError, match="scheme"):
        Q.quantize(Q.float_weights(e["model"]), bad)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingDependency, match="apt-get install gcc"):
        HB.find_tool("gcc", "gcc")


def test_runtime_load_predict_and_stream(c_export, tmp_path, monkeypatch):
    """runtime.load over a manifest holding the C records: raw features in, float scores out."""
    import runtime
    from runtime.atomic import write_json
    monkeypatch.setenv("RNN_EDGE_CACHE", str(tmp_path / "cache"))
    e = c_export("lstm")
    m = e["meta"]
    spec = e["model"].spec
    write_json(e["out"] / "manifest.json", {
        "format": "rnn-edge-artifacts/1", "task": "fixture", "class_names": m["class_names"],
        "model": {"arch": spec.arch, "input_size": spec.input_size, "hidden_sizes": list(spec.hidden_sizes),
                  "num_classes": spec.num_classes},
        "preprocess": {"mean": m["input_mean"], "std": m["input_std"]}, "artifacts": e["records"]})
    raw = e["x"][:4] * np.array(m["input_std"], np.float32) + np.array(m["input_mean"], np.float32)
    rec = e["records"][2]
    model = runtime.load(e["out"], backend="c", precision="int8")
    xn = model.normalize(raw)  # the runtime's own float32 normalization, then the reference's quantizer
    want = R.dequantize_scores(R.int_run(e["qm"], R.quantize_input(xn, rec["quant"]["input"]["scale"])))
    got = model.predict(raw)
    np.testing.assert_array_equal(got, want)  # the same integers, dequantized the same way
    stream = model.stream().run(raw)
    np.testing.assert_allclose(stream[:, -1], got, atol=1e-6)
    f = runtime.load(e["out"], backend="c", precision="float32").predict(raw)
    assert np.abs(f - _torch(e["model"], e["x"][:4])).max() < 1e-4


def test_model_prefix_of_a_data_path_is_its_folder_name_however_typed():
    """`invoke export` from another folder records the data path absolute: the C names stay the same."""
    from export.c import model_prefix
    spellings = ["data/csv", "./data/csv/", "/home/me/data/csv"]
    assert {model_prefix({"task": t}, "gru", "int8") for t in spellings} == {"csv_gru_int8"}
    assert model_prefix({"task": "watch"}, "lstm", "float32") == "watch_lstm_float32"
    assert model_prefix({}, "gru", "int8") == "model_gru_int8"


def test_an_int8_limit_fails_only_the_int8_library(fixture_run, tmp_path):
    """A head bias of +70 scores is beyond the int8 library's int32 bounds, not the float32 one's: the
    whole C family failed as one record and c-float32 was not written; the error blamed the weights."""
    import copy

    from training.checkpoint import load_model
    from training.data import load_task
    model, meta = load_model(fixture_run("gru"))
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.head.bias.add_(70.0)
    records = export_c(model, meta, load_task("fixture"), tmp_path)
    status = {r["name"]: r["status"] for r in records}
    assert status == {"c-float32": "ok", "c-float32-step": "ok", "c-int8": "failed", "c-int8-step": "failed"}
    int8 = next(r for r in records if r["name"] == "c-int8")
    assert "the head bias is too large" in int8["error"] and "\n" not in int8["error"]
    assert (tmp_path / "c-float32").is_dir() and not (tmp_path / "c-int8").exists()


def test_the_package_names_a_data_path_task_by_its_folder_only(fixture_run, tmp_path):
    """The Arduino library.properties (and the header comment) carried the data path as typed: an
    absolute path of the machine that exported it."""
    from training.checkpoint import load_model
    from training.data import load_task
    model, meta = load_model(fixture_run("gru"))
    export_c(model, dict(meta, task="/home/someone/private/data/csv"), load_task("fixture"), tmp_path,
             precisions=("float32",))
    text = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".properties", ".h", ".c"))
    assert "/home/someone" not in text and "csv" in text
