"""Reliability: hostile inputs at every entry point (docs/reliability.md).

- NaN / +Inf / -Inf: refused with one ``UserError`` line by every backend, whole-sequence and
  streaming, and by the CLIs (exit 2).
- Out-of-range finite inputs: int8 graphs saturate (any value past the input quantizer's limit
  gives exactly the scores of the limit); float graphs follow the float reference, and where a
  graph overflows (NaN/Inf scores) or the normalization overflows float32, the runtime refuses
  with one line instead of returning NaN.
- Wrong shapes and dtypes: Python API, CLIs, the ctypes C backend, the C API's ``steps`` length
  argument and the C harness's length fields (under AddressSanitizer + UBSan).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.backends import backend_class
from runtime.errors import UserError

ROOT = Path(__file__).resolve().parent.parent

# one float and one int8 artifact per backend (torch: the float reference from the checkpoint)
ARTIFACTS = ("onnx-float32", "onnx-float32-step", "onnx-qdq-int8", "tflite-float32", "tflite-int8",
             "tflite-float32-step", "tflm-int8", "c-float32", "c-int8", "torch")
INT8_INPUT = ("tflite-int8", "tflm-int8", "c-int8", "c-int8-step", "tflite-int16x8")
FLOAT = ("onnx-float32", "onnx-float32-step", "tflite-float32", "tflite-float32-step", "c-float32", "torch")


@pytest.fixture(scope="module")
def folder(fixture_artifacts, tmp_path_factory):
    # a private build cache for this module only: a plain os.environ assignment would leak into
    # every later test module (the loopback sshd keeps its keys under the cache folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNN_EDGE_CACHE", str(tmp_path_factory.mktemp("c-cache")))
        yield fixture_artifacts("gru")


@pytest.fixture(scope="module")
def x_raw(folder):
    return np.load(folder / "golden.npz")["x_raw"][:3].astype(np.float32)


def load(folder, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-tolerance artifacts still run
        if name == "torch":
            return runtime.load(folder, backend="torch")
        man = json.loads((folder / "manifest.json").read_text())
        entry = next((a for a in man["artifacts"] if a["name"] == name), None)
        if entry is None or entry.get("status") not in ("ok", "out-of-tolerance"):
            pytest.skip(f"no usable {name} artifact in this export")
        if not backend_class(entry["runtime"]).available():
            pytest.skip(f"{entry['runtime']} not installed")
        return runtime.load(folder, artifact=name)


def scores(model, x):
    return model.predict(x) if model.sequence_graph is not None else model.stream().run(x)[:, -1]


def one_line(e) -> str:
    assert str(e.value) and "\n" not in str(e.value)
    return str(e.value)


# --- NaN and infinity -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", ARTIFACTS)
def test_nan_and_inf_are_refused(folder, x_raw, name, bad):
    model = load(folder, name)
    x = x_raw.copy()
    x[1, 5, 2] = bad
    if model.sequence_graph is not None:
        with pytest.raises(UserError, match="NaN or infinity .first at index \\[1, 5, 2\\]") as e:
            model.predict(x)
        one_line(e)
    if model.can_stream:
        s = model.stream()
        s.step(x_raw[:, 0])
        with pytest.raises(UserError, match="NaN or infinity") as e:
            s.step(x[:, 5])
        one_line(e)
        with pytest.raises(UserError, match="NaN or infinity"):
            s.run(x)


# --- out-of-range finite values ----------------------------------------------------------------------

@pytest.mark.parametrize("name", INT8_INPUT)
def test_int8_inputs_saturate(folder, x_raw, name):
    """Any input past the quantizer's limit gives the scores of the limit itself, bit for bit."""
    model = load(folder, name)
    g = model.sequence_graph or model.step_graph
    if not (model.quant and model.quant["input"]) or not np.issubdtype(np.dtype(g.x_file.dtype), np.integer):
        pytest.skip(f"{name} takes float input (quantized inside the graph)")
    q = model.quant["input"]
    info = np.iinfo(g.x_file.dtype)
    lo, hi = (info.min - q.zero_point) * q.scale, (info.max - q.zero_point) * q.scale  # normalized limits
    sign = np.where(np.arange(x_raw.size).reshape(x_raw.shape) % 3 == 0, -1.0, 1.0).astype(np.float32)
    at_limit_n = np.where(sign > 0, hi + 0.3 * q.scale, lo - 0.3 * q.scale)  # just past the limit: clipped too
    at_limit = (at_limit_n * model.std + model.mean).astype(np.float32)
    want = scores(model, at_limit)
    assert np.all(np.isfinite(want))
    for big in (1e3, 1e6, 1e30):
        np.testing.assert_array_equal(scores(model, (sign * big).astype(np.float32)), want, err_msg=f"{name} at {big}")


@pytest.mark.parametrize("name", FLOAT)
def test_float_out_of_range_follows_the_reference_or_is_refused(folder, x_raw, name):
    model = load(folder, name)
    ref = runtime.load(folder, backend="torch")
    sign = np.where(np.arange(x_raw.size).reshape(x_raw.shape) % 3 == 0, -1.0, 1.0).astype(np.float32)
    seen = {}
    for big in (1e3, 1e6, 1e30):
        x = sign * np.float32(big)
        want = scores(ref, x)
        try:
            got = scores(model, x)
        except UserError as e:  # the graph overflowed: refused, never NaN handed back
            assert "NaN/Inf scores for finite inputs" in str(e), e
            seen[big] = "refused"
            continue
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, atol=1e-3, err_msg=f"{name} at {big}")
        seen[big] = "matches"
    assert seen[1e3] == seen[1e6] == "matches", seen  # far outside training data, still well defined
    with pytest.raises(UserError, match="overflow float32 once normalized") as e:
        scores(model, sign * np.float32(3e38))
    one_line(e)


# --- wrong shapes and dtypes: Python API -------------------------------------------------------------

def _api_cases(x):
    n, t, c = x.shape
    return {
        "2-D": (x[0], "expected \\[N, T, C\\]"),
        "4-D": (x[None], "expected \\[N, T, C\\]"),
        "wrong channels": (np.zeros((n, t, c + 1), np.float32), f"has {c + 1} channels"),
        "no sequences": (np.zeros((0, t, c), np.float32), "is empty"),
        "no time steps": (np.zeros((n, 0, c), np.float32), "is empty"),
        "int32": (x.astype(np.int32), "integer dtype int32"),
        "int8": (x.astype(np.int8), "integer dtype int8"),
        "bool": (x > 0, "dtype bool"),
        "complex": (x.astype(np.complex64), "dtype complex64"),
        "strings": (np.full((n, t, c), "1.0"), "dtype <U3"),
        "objects": (np.array([[[None] * c] * t] * n, dtype=object), "dtype object"),
        "ragged list": ([[[0.0] * c] * t, [[0.0] * c] * (t - 1)], "numeric array"),
        "scalar": (3.0, "expected \\[N, T, C\\]"),
        "None": (None, "is None: pass a numeric array"),
    }


@pytest.mark.parametrize("name", ARTIFACTS)
def test_wrong_shapes_and_dtypes_python_api(folder, x_raw, name):
    model = load(folder, name)
    for case, (x, match) in _api_cases(x_raw).items():
        entry = model.predict if model.sequence_graph is not None else model.stream().run
        with pytest.raises(UserError, match=match) as e:
            entry(x)
        assert "\n" not in str(e.value), case
    good = scores(model, x_raw)
    for dtype in (np.float64, np.float16):  # other float dtypes are accepted and converted
        np.testing.assert_allclose(scores(model, x_raw.astype(dtype)), scores(model, x_raw.astype(dtype).astype(np.float32)))
    assert good.shape == (len(x_raw), model.classes)


@pytest.mark.parametrize("name", ["onnx-float32-step", "tflite-float32-step", "c-int8", "torch"])
def test_wrong_frames_when_streaming(folder, x_raw, name):
    model = load(folder, name)
    s = model.stream()
    c = x_raw.shape[2]
    for frame, match in [(np.zeros(c + 2, np.float32), "channels"), (x_raw[:, :2], "expected"),
                         (np.zeros((2, 0), np.float32), "channels"), (np.zeros(c, np.int16), "integer dtype")]:
        with pytest.raises(UserError, match=match) as e:
            s.step(frame)
        one_line(e)
    s.step(x_raw[:, 0])  # a batch of 3 ...
    with pytest.raises(UserError, match="differs from this stream's batch 3: call reset"):
        s.step(x_raw[:2, 1])  # ... cannot become 2 mid-stream
    s.reset()
    assert s.step(x_raw[:2, 0]).shape == (2, model.classes)


def test_fixed_length_graph_refuses_other_lengths(folder, x_raw):
    model = load(folder, "tflm-int8")
    t = model.input_spec.shape[1]
    assert t == x_raw.shape[1]
    with pytest.raises(UserError, match=f"built for T={t}"):
        model.predict(np.concatenate([x_raw, x_raw], axis=1))


def test_unknown_backend_precision_and_options(folder):
    with pytest.raises(UserError, match="unknown backend 'tensorrt'"):
        runtime.load(folder, backend="tensorrt")
    with pytest.raises(UserError, match="no usable artifact for backend 'onnxruntime' at precision 'int4'"):
        runtime.load(folder, backend="onnxruntime", precision="int4")
    with pytest.raises(UserError, match="is None: pass a numeric array"):  # audit: said "dtype object"
        runtime.load(folder, artifact="onnx-float32").predict(None)
    with pytest.raises(UserError, match="has precision 'float32', not 'int8'"):
        runtime.load(folder, artifact="onnx-float32", precision="int8")
    with pytest.raises(UserError, match="does not exist"):
        runtime.load(folder / "nope")


# --- the CLIs -----------------------------------------------------------------------------------------

def cli(*args, stdin=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "runtime", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=180, env=env, cwd=ROOT)


def assert_exit_2(p, match):
    assert p.returncode == 2, (p.stdout[-1000:], p.stderr[-2000:])
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and match in last and "Traceback" not in p.stderr, p.stderr[-2000:]


def test_cli_hostile_inputs(folder, x_raw, tmp_path):
    c = x_raw.shape[2]
    cases = {
        "nan.npz": (dict(x_raw=np.where(np.arange(x_raw.size).reshape(x_raw.shape) == 7, np.nan, x_raw)),
                    "NaN or infinity"),
        "channels.npz": (dict(x_raw=np.zeros((2, 5, c + 1), np.float32)), f"has {c + 1} channels"),
        "ints.npz": (dict(x_raw=np.zeros((2, 5, c), np.int64)), "integer dtype"),
        "4d.npz": (dict(x_raw=np.zeros((1, 2, 5, c), np.float32)), "expected [N, T, C]"),
        "empty.npz": (dict(x_raw=np.zeros((0, 5, c), np.float32)), "is empty"),
        "huge.npz": (dict(x_raw=np.full((1, 5, c), 3e38, np.float32)), "overflow float32"),
        "two.npz": (dict(a=x_raw, b=x_raw), "name the raw features array"),
    }
    for name, (arrays, match) in cases.items():
        np.savez(tmp_path / name, **arrays)
        assert_exit_2(cli("predict", folder, "--input", tmp_path / name), match)
    csv = tmp_path / "inf.csv"
    csv.write_text("\n".join(",".join(["1.0"] * c) for _ in range(4)) + "\n" + ",".join(["inf"] * c) + "\n")
    assert_exit_2(cli("predict", folder, "--input", csv), "NaN or infinity")
    rows = "\n".join(",".join(["0.5"] * c) for _ in range(10)) + "\n" + ",".join(["nan"] * c) + "\n"
    assert_exit_2(cli("sense", "--model", folder, "--csv", "-", stdin=rows), "NaN or infinity")
    assert_exit_2(cli("sense", "--model", folder, "--csv", "-", stdin="1,2\n3,4,5,6\n"), "channels")
    assert_exit_2(cli("predict", folder, "--input", tmp_path / "nan.npz", "--backend", "tensorrt"), "unknown backend")
    p = cli("predict", folder)  # argparse: a usage error, exit 2, no traceback
    assert p.returncode == 2 and "--input" in p.stderr and "Traceback" not in p.stderr


# --- the C library: ctypes backend, the `steps` length argument, the harness's length fields ---------

def _c_lib(folder, precision, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    from runtime.backends.c import compile_shared
    man = json.loads((folder / "manifest.json").read_text())
    e = next(a for a in man["artifacts"] if a["name"] == f"c-{precision}")
    so = compile_shared(folder / e["file"], tmp_path / f"lib{e['c']['prefix']}.so", precision)
    return ctypes.CDLL(str(so)), e["c"]["prefix"], e


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_c_api_steps_argument(folder, tmp_path, precision):
    """``<prefix>_run(s, x, steps, scores)`` with steps <= 0 resets the state, reads no frame (x may be
    NULL) and leaves ``scores`` untouched; steps = 1 equals one ``_step``."""
    lib, p, e = _c_lib(folder, precision, tmp_path)
    xt, st = (ctypes.c_int8, ctypes.c_int32) if precision == "int8" else (ctypes.c_float, ctypes.c_float)
    run, step, size = getattr(lib, f"{p}_run"), getattr(lib, f"{p}_step"), getattr(lib, f"{p}_state_size")
    size.restype = ctypes.c_size_t
    run.argtypes = [ctypes.c_void_p, ctypes.POINTER(xt), ctypes.c_int32, ctypes.POINTER(st)]
    step.argtypes = [ctypes.c_void_p, ctypes.POINTER(xt), ctypes.POINTER(st)]
    c, k = e["inputs"][0]["shape"][-1], e["outputs"][0]["shape"][-1]
    state = ctypes.create_string_buffer(b"\x55" * size(), size())
    out = (st * k)(*([7] * k))
    for steps in (0, -1, -2 ** 31):
        run(state, None, steps, out)
        assert list(out) == [7] * k, steps
        assert state.raw == bytes(size()), "state not reset"
    frame = (xt * c)(*([3] * c))
    run(state, frame, 1, out)
    ref = (st * k)()
    state2 = ctypes.create_string_buffer(size())
    step(state2, frame, ref)
    assert list(out) == list(ref)


def test_c_backend_refuses_wrong_frames(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("RNN_EDGE_CACHE", str(tmp_path))
    model = load(folder, "c-int8")
    backend = model.sequence_graph.backend
    with pytest.raises(UserError, match="expects frames of 3 features"):
        backend.run([np.zeros((1, 4, 5), np.int8)])
    with pytest.raises(UserError, match="expects frames"):
        backend.run([np.zeros((4,), np.int8)])


def test_c_harness_length_fields_under_sanitizers(folder, tmp_path):
    """The file-driven C harness (host and Cortex-M) with lying headers, built with ASan + UBSan."""
    from export.c import build as HB
    from export.c.harness import MAGIC_IN, MAX_STEPS
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    man = json.loads((folder / "manifest.json").read_text())
    e = next(a for a in man["artifacts"] if a["name"] == "c-int8")
    exe = HB.build_harness(folder / e["c"]["dir"], e["c"]["prefix"], "int8", tmp_path / "h", sanitize=True, opt="-O1")
    c = e["inputs"][0]["shape"][-1]
    frames = np.ones((2, 4, c), np.int8).tobytes()

    def run(header, body=frames):
        inp, out = tmp_path / "in.bin", tmp_path / "out.bin"
        inp.write_bytes(np.array(header, "<i4").tobytes() + body)
        return subprocess.run([str(exe), str(inp), str(out)], capture_output=True, text=True, timeout=120)

    cases = {
        "bad magic": ([0, 2, 4, c, 0], "bad input header"),
        "zero steps": ([MAGIC_IN, 2, 0, c, 0], "does not match"),
        "negative steps": ([MAGIC_IN, 2, -5, c, 0], "does not match"),
        "steps past the buffer": ([MAGIC_IN, 1, MAX_STEPS + 1, c, 0], "does not match"),
        "wrong channels": ([MAGIC_IN, 2, 4, c + 1, 0], "does not match"),
        "more sequences than the file holds": ([MAGIC_IN, 1000, 4, c, 1], "short input"),
        "short header": ([MAGIC_IN, 2], "bad input header"),
    }
    for case, (hdr, match) in cases.items():
        p = run(hdr, b"" if case == "short header" else frames)
        assert p.returncode == 2 and match in p.stdout, (case, p.returncode, p.stdout, p.stderr[-2000:])
        assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, (case, p.stderr[-3000:])
    p = run([MAGIC_IN, -3, 4, c, 0])  # a negative count: nothing to run, an empty, valid output
    assert p.returncode == 0 and "Sanitizer" not in p.stderr, p.stderr[-2000:]
    p = run([MAGIC_IN, 2, 4, c, 1])
    assert p.returncode == 0 and "Sanitizer" not in p.stderr, p.stderr[-2000:]


@pytest.mark.parametrize("argv,expect", [
    (["train", "--procs", "abc"], "--procs 'abc' is not a whole number"),
    (["train", "--procs", "0"], "--procs 0 is too small"),
    (["fuzz", "--seconds", "soon"], "--seconds 'soon' is not a whole number"),
    (["kws-stream", "--keywords", "many"], "--keywords 'many' is not a whole number"),
    (["kws-stream", "--out", "/proc/rnn-edge/x.wav"], "cannot write /proc/rnn-edge/x.wav"),
    (["kws-stream", "--keywords", "1", "--out", "/tmp"], "/tmp is a folder: give a file path"),  # was IsADirectoryError
    (["parity", "--arch", "rnn"], "unknown architecture(s) rnn"),
    (["export", "--seq-len", "0"], "--seq-len 0: it sets a Keras model's open window length"),
    (["cv", "--dev", "--fold", "x"], "--fold 'x' is not a whole number"),
    (["cv", "--dev", "--fold", "9"], "--fold 9: choose 0 to 3"),
    (["compare", "--jsonl", "missing.jsonl", "--baseline", "a", "--candidate", "b"], "cannot read missing.jsonl"),
    (["deploy", "--host", "pi@x", "--bench-repeats", "abc"], "--bench-repeats 'abc' is not a whole number"),
])
def test_invoke_task_arguments_are_one_clear_error(argv, expect):
    """Bad arguments to the invoke tasks themselves (not only to the modules behind them)."""
    r = subprocess.run([sys.executable, "-m", "invoke", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], r.stderr
