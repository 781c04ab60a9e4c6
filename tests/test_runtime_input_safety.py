"""Bad input to the on-device runtime gives one ``error:`` line, never a traceback or a hang.

Found by a black-box test of ``runtime/``: TFLite Micro chose a LiteRT float32 graph (a WHILE loop
it never finishes), manifest fields of the wrong type gave TypeError/AttributeError/KeyError
tracebacks, a WAV chunk declaring more bytes than the file holds gave a RuntimeError, ``listen``
took NaN, infinite and negative durations, and ``check`` misdescribed a manifest or model file
passed instead of its folder. The manifests here are written by hand: every case is refused before
a model file would be opened, so no trained model or inference library is needed.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import stat
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.__main__ import main
from runtime.backends import Backend, TensorSpec, backend_class
from runtime.errors import MissingDependency, UserError
from runtime.manifest import Manifest
from runtime.model import Graph, _pick
from runtime.wav import parse_wav_bytes, read_wav, wav_bytes

SHA = "0" * 64


def entry(name: str, file: str, fmt: str, runtime_: str, precision: str, kind: str = "sequence", **more) -> dict:
    return {"name": name, "file": file, "sha256": SHA, "format": fmt, "runtime": runtime_, "precision": precision,
            "kind": kind, "inputs": [{"name": "x", "shape": [None, None, 6], "dtype": "float32", "quant": None}],
            "outputs": [{"name": "scores", "shape": [None, 3], "dtype": "float32", "quant": None}],
            "state": None, "status": "ok", "error": None, **more}


STEP_STATE = {"mode": "explicit", "inputs": ["state_in_0"], "outputs": ["state_out_0"], "shapes": [[1, 8]]}
MANIFEST = {
    "format": "rnn-edge-artifacts/1", "task": "watch", "class_names": ["a", "b", "c"],
    "checkpoint": {"file": "model.safetensors", "sha256": SHA},
    "model": {"arch": "gru", "input_size": 6, "hidden_sizes": [8], "num_classes": 3, "seq_len": 10},
    "preprocess": {"mean": [0.0] * 6, "std": [1.0] * 6},
    "golden": {"file": "golden.npz", "sha256": SHA},
    "artifacts": [
        entry("onnx-float32", "model.onnx", "onnx", "onnxruntime", "float32"),
        entry("onnx-float32-step", "model_step.onnx", "onnx", "onnxruntime", "float32", "step", state=STEP_STATE),
        # listed first for its format, as in a real export: the WHILE-loop graph made for LiteRT
        entry("tflite-float32", "model_float32.tflite", "tflite", "litert", "float32", ops={"WHILE": 2}),
        entry("tflite-int8", "model_int8.tflite", "tflite", "litert", "int8"),
        entry("tflm-int8", "model_int8.tflite", "tflite", "tflm", "int8", arena_bytes=100000),
        entry("tflm-int8-step", "model_step_int8.tflite", "tflite", "tflm", "int8", "step", state=STEP_STATE,
              arena_bytes=20000),
        entry("c-float32", "c-float32/m.c", "c", "c", "float32",
              c={"prefix": "m", "dir": "c-float32", "header": "m.h", "source": "m.c",
                 "files": ["c-float32/m.c", "c-float32/m.h"],
                 "file_sha256": {"c-float32/m.c": SHA, "c-float32/m.h": SHA}}),
        {"name": "tflite-float16", "file": None, "format": "tflite", "runtime": "litert", "precision": None,
         "kind": None, "status": "failed", "error": "conversion failed"},
    ],
}


def write_folder(path, data=MANIFEST):
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps(data))
    return path


def run_cli(capsys, *argv) -> tuple[int, str]:
    """``python -m runtime ARGV`` in this process: (exit code, the last stderr line). A traceback
    would be an exception raised here."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def assert_one_error(rc: int, line: str, *parts: str) -> None:
    assert rc == 2 and line.startswith("error: "), (rc, line)
    for part in parts:
        assert part in line, line


# -- 1. a backend only chooses artifacts exported for it ------------------------------------------

def test_tflm_chooses_its_own_artifact_not_a_litert_graph(tmp_path):
    man = Manifest.read(write_folder(tmp_path / "a"))
    backend, chosen = _pick(man, "tflm", None)
    assert (backend, chosen["name"]) == ("tflm", "tflm-int8")  # was tflite-float32: a WHILE loop TFLM never ends
    assert [a["name"] for a in man.candidates("tflm", ("tflite",))] == ["tflm-int8", "tflm-int8-step"]
    assert man.companion(chosen, "step", "tflm", ("tflite",))["name"] == "tflm-int8-step"
    assert _pick(man, "litert", "int8")[1]["name"] == "tflite-int8"


def test_a_device_with_only_tflm_installed_chooses_tflm_int8(tmp_path, monkeypatch):
    def missing(cls):
        raise MissingDependency(cls.what, cls.install)
    for name in ("onnxruntime", "litert", "c"):
        monkeypatch.setattr(backend_class(name), "library", classmethod(missing))
    monkeypatch.setattr(backend_class("tflm"), "library", classmethod(lambda cls: object()))
    man = Manifest.read(write_folder(tmp_path / "a"))
    backend, chosen = _pick(man, None, None)
    assert (backend, chosen["name"]) == ("tflm", "tflm-int8")


@pytest.mark.parametrize("app", ["bench", "predict", "check"])
def test_naming_an_artifact_the_backend_is_not_listed_for_is_one_line(tmp_path, capsys, app):
    folder = write_folder(tmp_path / "a")
    np.savez(tmp_path / "x.npz", x_raw=np.zeros((1, 10, 6), np.float32))
    extra = {"bench": [], "predict": ["--input", tmp_path / "x.npz"], "check": []}[app]
    rc, line = run_cli(capsys, app, folder, "--backend", "tflm", "--artifact", "tflite-float32", *extra)
    assert_one_error(rc, line, "'tflite-float32' was exported for litert, not tflm", "tflm-int8, tflm-int8-step")


# -- 2. manifest fields of the wrong type are refused when the manifest is read -------------------

def with_field(path: str, value) -> dict:
    """MANIFEST with ``path`` (dotted; ``@name`` is an artifact entry, a number a list index) set to ``value``."""
    data = copy.deepcopy(MANIFEST)
    *parents, last = path.split(".")
    obj = data
    for k in parents:
        obj = next(a for a in obj["artifacts"] if a["name"] == k[1:]) if k.startswith("@") else \
            obj[int(k)] if k.isdigit() else obj[k]
    obj[last] = value
    return data


BAD_FIELDS = [
    ("@onnx-float32.sha256", 5, "(onnx-float32).sha256 must be a sha256"),
    ("golden.sha256", 5, "field golden.sha256 must be a sha256"),
    ("class_names", 5, "field class_names must be a list of strings"),
    ("golden", "golden.npz", "field golden must be an object"),
    ("@onnx-float32.inputs", "x", "(onnx-float32).inputs must be a list of objects"),
    ("@onnx-float32-step.state", "explicit", "(onnx-float32-step).state must be an object"),
    ("@c-float32.c", "x", "(c-float32).c must be an object"),
    ("@c-float32.c.file_sha256", ["c-float32/m.c"], "(c-float32).c.file_sha256 must be an object"),
    ("@onnx-float32.inputs", [{}], 'each with a string "name"'),
    ("@onnx-float32.precision", "int4", "(onnx-float32).precision must be one of float32"),
    ("@onnx-float32.precision", None, "(onnx-float32).precision must be one of float32"),
    ("preprocess.mean", ["a"] * 6, "field preprocess.mean must be a list of numbers"),
    ("@tflm-int8.arena_bytes", "big", "(tflm-int8).arena_bytes must be a positive integer"),
    ("@tflm-int8.arena_bytes", -100000, "(tflm-int8).arena_bytes must be a positive integer"),
    ("@onnx-float32.inputs.0.quant", {"scale": "x"}, "inputs[0].quant must be null or"),
    ("model.seq_len", "100", "field model.seq_len must be a positive integer"),
]


@pytest.mark.parametrize("path,value,message", BAD_FIELDS, ids=[f"{p}={json.dumps(v)}" for p, v, _ in BAD_FIELDS])
def test_a_field_of_the_wrong_type_is_one_line(tmp_path, capsys, path, value, message):
    folder = write_folder(tmp_path / "a", with_field(path, value))
    with pytest.raises(UserError) as e:
        runtime.load(folder)
    msg = str(e.value)
    assert "\n" not in msg and f"{folder}/manifest.json" in msg and message in msg and "re-export" in msg, msg
    for argv in (["check", folder], ["bench", folder, "--artifact", "tflm-int8"]):
        rc, line = run_cli(capsys, *argv)
        assert_one_error(rc, line, message)
        assert "corrupted" not in line  # the arena size, not the model file, is wrong


def test_the_exported_shapes_still_read(tmp_path):
    """Nulls where export writes them (a failed entry's precision and kind, no state) stay valid."""
    man = Manifest.read(write_folder(tmp_path / "a"))
    assert man.names()[-1] == "tflite-float16"


# -- 3. a WAV chunk larger than the file -------------------------------------------------------------

def _oversized_wavs() -> dict[str, bytes]:
    good = wav_bytes(np.zeros(1600, np.float32))
    junk = b"JUNK" + struct.pack("<I", 0x7FFFFFF0) + b"\0" * 16
    return {"junk-chunk": good[:12] + junk + good[12:],
            "fmt-chunk": good[:16] + struct.pack("<I", 0x7FFFFFF0) + good[20:]}


@pytest.mark.parametrize("name", ["junk-chunk", "fmt-chunk"])
def test_a_wav_chunk_larger_than_the_file_is_one_line(tmp_path, name):
    data = _oversized_wavs()[name]
    path = tmp_path / f"{name}.wav"
    path.write_bytes(data)
    for read in (lambda: read_wav(path), lambda: parse_wav_bytes(data)):
        with pytest.raises(UserError, match="a chunk declares more bytes than the file holds") as e:
            read()
        assert "\n" not in str(e.value)


# -- 4. listen's numeric options ---------------------------------------------------------------------

@pytest.mark.parametrize("option,value", [("--seconds", "-1"), ("--seconds", "0"), ("--seconds", "nan"),
                                          ("--chunk-ms", "nan"), ("--chunk-ms", "inf"), ("--chunk-ms", "-5"),
                                          ("--refractory-ms", "nan"), ("--tolerance-ms", "-inf")])
def test_listen_refuses_non_finite_or_non_positive_durations(tmp_path, capsys, option, value):
    wav = tmp_path / "two.wav"
    wav.write_bytes(wav_bytes(np.zeros(32000, np.float32)))  # 2 s: --seconds -1 silently dropped the last second
    rc, line = run_cli(capsys, "listen", "--model", write_folder(tmp_path / "a"), "--wav", wav, f"{option}={value}")
    assert_one_error(rc, line, f"{option} must be a finite number")


# -- 5. check names what was passed instead of an artifact folder ------------------------------------

def test_check_says_what_was_passed_instead_of_a_folder(tmp_path, capsys):
    folder = write_folder(tmp_path / "a")
    (folder / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "notes.txt").write_text("x")
    cases = {folder / "manifest.json": f"is the manifest file itself: pass its folder, {folder}",
             folder / "model.onnx": f"is a file inside the artifact folder {folder}: pass the folder",
             tmp_path / "notes.txt": "is a file, not an artifact folder",
             tmp_path / "nowhere": "does not exist",
             tmp_path: "has no manifest.json"}
    for arg, message in cases.items():
        rc, line = run_cli(capsys, "check", arg)
        assert_one_error(rc, line, f"{arg} {message}")
        assert "single .onnx/.tflite file" not in line  # check needs the folder: its golden samples and sha256s


def test_the_checkpoint_a_manifest_names_is_found_from_another_folder(fixture_artifacts, tmp_path, monkeypatch):
    """Audit: `invoke parity` from a subfolder found the repository's artifacts but not the checkpoint
    their manifest names relative to the repository root."""
    import shutil
    from runtime.manifest import Manifest
    src = Path(fixture_artifacts("gru"))
    repo = tmp_path / "repo"
    shutil.copytree(src, repo / "artifacts" / "m")
    checkpoint = Manifest.read(src).checkpoint_path()
    (repo / "runs" / "m").mkdir(parents=True)
    shutil.copy(checkpoint, repo / "runs" / "m" / "model.safetensors")
    data = json.loads((repo / "artifacts" / "m" / "manifest.json").read_text())
    data["checkpoint"]["file"] = "runs/m/model.safetensors"
    (repo / "artifacts" / "m" / "manifest.json").write_text(json.dumps(data))
    (repo / "docs").mkdir()
    monkeypatch.chdir(repo / "docs")
    assert Manifest.read(repo / "artifacts" / "m").checkpoint_path().resolve() == (repo / "runs" / "m" / "model.safetensors").resolve()


# -- 6. a second black-box pass of runtime/ (reliability rows 68-80) ----------------------------------

class _Accumulator(Backend):
    """A step graph whose state adds up x * x and whose scores are that state: a frame of 1e30
    overflows float32, so its scores, and every later frame's if the state is kept, are inf.
    ``variables``: the state is kept inside the graph (as the C backend does), else it is explicit."""

    name, formats, install, what = "fake", ("fake",), "nothing", "a fake"

    def __init__(self, variables: bool = False, time=None, path=None):
        self.path = path or "fake.graph"
        x = TensorSpec("x", (None, time, 2) if time else (None, 2), "float32")
        self.inputs = [x] if variables or time else [x, TensorSpec("state_in_0", (None, 2), "float32")]
        self.outputs = [TensorSpec("scores", (None, 2), "float32")] + \
            [TensorSpec("state_out_0", (None, 2), "float32")] * (len(self.inputs) - 1)
        self.has_variables, self.kept = variables, None

    @classmethod
    def library(cls):
        return None

    def reset_variables(self):
        self.kept = None

    def run(self, feeds):
        x = feeds[0].reshape(len(feeds[0]), -1, 2)
        state = self.kept if self.has_variables and self.kept is not None else \
            feeds[1] if len(feeds) > 1 else np.zeros_like(x[:, 0])
        with np.errstate(over="ignore"):
            for t in range(x.shape[1]):
                state = state + x[:, t] * x[:, t]
        self.kept = state if self.has_variables else None
        return [state.copy(), state]


def _fake_model(variables: bool = False) -> runtime.Model:
    step = Graph(_Accumulator(variables), None, "step")
    return runtime.Model(sequence=None, step=step, channels=2, classes=2, preprocess=None, precision="float32",
                         backend="fake", artifact="fake-step", step_artifact="fake-step")


def test_a_refused_frame_leaves_the_streams_state_as_it_was():
    """Audit: the state of a frame whose scores were refused (LiteRT float GRU fed 1e30: NaN) was kept,
    so every later normal frame was refused as "far outside the training range" until reset()."""
    s = _fake_model().stream()
    first = s.step([1.0, 2.0])
    with pytest.raises(UserError, match="NaN/Inf scores"):
        s.step([1e30, 0.0])
    np.testing.assert_array_equal(s.step([1.0, 2.0]), 2 * first)  # as if the refused frame never came
    inside = _fake_model(variables=True).stream()  # a state inside the graph cannot be rolled back: say so
    inside.step([1.0, 2.0])
    with pytest.raises(UserError, match=r"state is now spoiled: call reset\(\) before the next frame") as e:
        inside.step([1e30, 0.0])
    assert "\n" not in str(e.value)
    inside.reset()
    np.testing.assert_array_equal(inside.step([1.0, 2.0]), first)


def test_the_fixed_length_error_names_the_sequence_graph():
    """Audit: a step artifact loaded with its fixed-T sequence companion blamed the step artifact."""
    seq = Graph(_Accumulator(time=100), {"name": "tflite-float32"}, "sequence")
    step = Graph(_Accumulator(), {"name": "tflite-float32-step", "state": STEP_STATE}, "step")
    m = runtime.Model(sequence=seq, step=step, channels=2, classes=2, preprocess=None, precision="float32",
                      backend="fake", artifact="tflite-float32-step", step_artifact="tflite-float32-step")
    with pytest.raises(UserError, match=r"but tflite-float32 is built for T=100: pass \[N, 100, 2\] or stream"):
        m.predict(np.zeros((1, 15, 2), np.float32))


def test_missing_cache_folders_are_made_private_whatever_the_umask(tmp_path, monkeypatch):
    """Audit: parents made by mkdir(parents=True) got the umask's 0775 (umask 002, Debian's default for
    users), and the check then refused the cache folder it had just made."""
    from runtime.cache import private_dir
    monkeypatch.setenv("RNN_EDGE_CACHE", str(tmp_path / "new" / "rnn-edge"))
    old = os.umask(0o002)
    try:
        made = private_dir("c")
    finally:
        os.umask(old)
    for folder in (tmp_path / "new", tmp_path / "new" / "rnn-edge", made):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_stale_checkpoint_copy_does_not_hide_a_matching_one(tmp_path, monkeypatch):
    """Audit: the first file with the checkpoint's name was verified and refused even when a copy
    further down the list matched the manifest's sha256."""
    good = b"the checkpoint the artifacts were exported from"
    data = with_field("checkpoint", {"file": "runs/m/model.safetensors", "sha256": hashlib.sha256(good).hexdigest()})
    folder = write_folder(tmp_path / "artifacts" / "m", data)
    (folder / "model.safetensors").write_bytes(good)  # the last place looked in
    stale = tmp_path / "elsewhere" / "runs" / "m" / "model.safetensors"  # found first, from the current folder
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an older training run")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert Manifest.read(folder).checkpoint_path() == folder / "model.safetensors"
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match=f"checkpoint {stale} failed sha256 verification"):
        Manifest.read(folder).checkpoint_path()


def _npy(shape, data: bytes) -> bytes:
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return head.getvalue() + data


@pytest.mark.parametrize("name,message", [
    ("huge.npz", "declares an array larger than this machine's memory"),
    ("huge.npy", "declares an array larger than this machine's memory"),
    ("short.npz", "is cut short or damaged"),
    ("short.npy", "is cut short or damaged"),
])
def test_an_input_file_declaring_more_than_it_holds_is_one_line(tmp_path, capsys, name, message):
    """Audit: read_input used np.load itself: a header declaring 4 EiB was a MemoryError traceback,
    a member cut short was called a pickling problem."""
    blob = _npy((1 << 60,) if name.startswith("huge") else (2, 100, 6), b"\0" * 2400)
    path = tmp_path / name
    if name.endswith(".npz"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x_raw.npy", blob)
    else:
        path.write_bytes(blob)
    rc, line = run_cli(capsys, "predict", write_folder(tmp_path / "a"), "--input", path)
    assert_one_error(rc, line, f"{path} is not a readable numpy file: it {message}")
    assert "pickled objects" not in line


def test_a_csv_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    """Audit: a spreadsheet's UTF-8 byte order mark made the first row look like a header; it was dropped."""
    from runtime.apps.common import read_csv_sequence
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(read_csv_sequence(path), [[[1, 2, 3], [4, 5, 6]]])


@pytest.mark.parametrize("path,value,message", [
    ("features", {"n_mels": 6, "hop": "160"}, 'field features.hop must be a positive integer, got "160"'),
    ("preprocess.features", {"n_mels": 6.0}, "field preprocess.features.n_mels must be a positive integer, got 6.0"),
    ("dataset", {"features": {"fmin": "20"}}, "field dataset.features.fmin must be a number"),
])
def test_listen_refuses_a_front_end_field_of_the_wrong_type(tmp_path, capsys, path, value, message):
    """Audit: "hop": "160" or n_mels: 6.0 in a manifest were TypeError tracebacks in listen."""
    wav = tmp_path / "one.wav"
    wav.write_bytes(wav_bytes(np.zeros(16000, np.float32)))
    rc, line = run_cli(capsys, "listen", "--model", write_folder(tmp_path / "a", with_field(path, value)), "--wav", wav)
    assert_one_error(rc, line, "manifest.json is damaged: " + message, "re-export")


@pytest.mark.parametrize("damage", ["no x_raw", "cut short"])
def test_bench_reads_the_golden_file_as_check_does(tmp_path, damage):
    """Audit: bench read golden.npz with np.load: a KeyError (or BadZipFile) traceback."""
    import types
    from runtime.apps.bench import sample_input
    golden = tmp_path / "golden.npz"
    np.savez(golden, x=np.zeros((2, 10, 6), np.float32))
    if damage == "cut short":
        golden.write_bytes(golden.read_bytes()[:100])
    folder = write_folder(tmp_path, with_field("golden.sha256", hashlib.sha256(golden.read_bytes()).hexdigest()))
    model = types.SimpleNamespace(manifest=Manifest.read(folder), channels=6)
    with pytest.raises(UserError, match="lacks x_raw" if damage == "no x_raw" else "cut short") as e:
        sample_input(model, 10)
    assert "\n" not in str(e.value) and f"golden file {golden}" in str(e.value)


def test_listen_mic_stops_after_the_seconds_asked_for(tmp_path, monkeypatch):
    """Audit: arecord -d takes whole seconds, so --seconds 1.2 processed 2 s of audio."""
    from runtime.apps.listen import mic_chunks
    fake = tmp_path / "arecord"  # writes -d seconds of samples at -r Hz, as arecord does
    fake.write_text(f"#!{sys.executable}\nimport sys\na = sys.argv\n"
                    "sys.stdout.buffer.write(b'\\x10\\x00' * int(a[a.index('-r') + 1]) * int(a[a.index('-d') + 1]))\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert sum(len(c) for c in mic_chunks(16000, 1600, 1.2)) == 19200
    assert sum(len(c) for c in mic_chunks(16000, 1000, 2.0)) == 32000


@pytest.mark.parametrize("kwargs,asked", [({"precision": "int8"}, "precision 'int8'"),
                                          ({"artifact": "tflm-int8"}, "artifact 'tflm-int8'")])
def test_the_torch_backend_refuses_a_precision_or_artifact_it_does_not_run(tmp_path, kwargs, asked):
    """Audit: backend="torch", precision="int8" silently gave the float32 PyTorch model."""
    folder = write_folder(tmp_path / "a")
    with pytest.raises(UserError, match=f"backend 'torch' runs the float32 training checkpoint, not {asked}"):
        runtime.load(folder, backend="torch", **kwargs)
    with pytest.raises(UserError, match="checkpoint model.safetensors named in .* was not found"):
        runtime.load(folder, backend="torch", precision="float32")  # still the way to the reference


@pytest.mark.parametrize("names", [["a", "b"], ["a", "b", "c", "d"]])
def test_class_names_and_classes_must_agree(tmp_path, capsys, names):
    """Audit: 2 class names for 7 classes was an IndexError traceback in predict."""
    folder = write_folder(tmp_path / "a", with_field("class_names", names))
    with pytest.raises(UserError, match=f"manifest.json is damaged: class_names has {len(names)} names for 3 classes"):
        Manifest.read(folder)
    rc, line = run_cli(capsys, "check", folder)
    assert_one_error(rc, line, f"class_names has {len(names)} names for 3 classes")


def test_a_finite_value_beyond_float32_is_not_called_nan(recwarn):
    """Audit: 1e39 (finite in float64) was reported as NaN or infinity, with a RuntimeWarning."""
    from runtime.validate import features
    x = np.zeros((1, 10, 6))
    x[0, 3, 2] = -1e39
    with pytest.raises(UserError, match=r"holds -1e\+39 \(first at index \[0, 3, 2\]\), beyond float32's range"):
        features(x, (3,), 6, "x", "[N, T, C]")
    assert not recwarn.list
    x[0, 3, 2] = np.nan
    with pytest.raises(UserError, match="contains NaN or infinity"):
        features(x, (3,), 6, "x", "[N, T, C]")


@pytest.mark.parametrize("argv,selection", [
    (["--artifact", "tflite-float16"], "--artifact tflite-float16"),  # an export that failed
    (["--backend", "torch"], "--backend torch"),  # check compares with the reference; it runs no torch entry
])
def test_check_says_when_the_selection_leaves_nothing_to_run(tmp_path, capsys, argv, selection):
    """Audit: both said "install one, e.g. pip install ..." although nothing was missing."""
    folder = tmp_path / "a"
    folder.mkdir()
    np.savez(folder / "golden.npz", x_raw=np.zeros((1, 10, 6), np.float32), scores=np.zeros((1, 3)), y=[0])
    (folder / "model.onnx").write_bytes(b"")
    data = copy.deepcopy(MANIFEST)
    data["golden"]["sha256"] = hashlib.sha256((folder / "golden.npz").read_bytes()).hexdigest()
    data["artifacts"] = [entry("onnx-float32", "model.onnx", "onnx", "onnxruntime", "float32",
                               sha256=hashlib.sha256(b"").hexdigest()), MANIFEST["artifacts"][-1]]
    rc = main(["check", str(write_folder(folder, data)), *argv])
    out, err = capsys.readouterr()
    assert_one_error(rc, err.strip(), f"no artifact selected by {selection} can run",
                     "can are for onnxruntime (float32);", "drop the selection")
    assert "install" not in err
    if "tflite-float16" in argv:  # its export failed, so its precision is null: was a TypeError in the skip line
        assert out.split() == ["skip", "tflite-float16", "?", "export", "status", "failed:", "conversion", "failed"]


# -- sense on a trained model (the fixture GRU) ------------------------------------------------------

def _imu_csv(folder, frames: int) -> str:
    x = np.load(folder / "golden.npz")["x_raw"][0, :frames]
    return "\n".join(",".join(f"{v:.7g}" for v in row) for row in x) + "\n"


def test_sense_keeps_the_first_row_of_a_csv_with_a_byte_order_mark(fixture_artifacts, tmp_path, capsys, monkeypatch):
    """Audit: a spreadsheet's byte order mark made the first row a header: 99 frames of 100, silently."""
    folder = fixture_artifacts("gru")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + _imu_csv(folder, 5).encode())
    sense = ["sense", "--model", folder, "--window", "5", "--lanes", "1"]
    assert run_cli(capsys, *sense, "--csv", bom)[1].startswith("5 frames, ")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(bom.read_bytes())))
    assert run_cli(capsys, *sense, "--csv", "-")[1].startswith("5 frames, ")


def test_sense_refuses_a_window_of_0_as_it_refuses_minus_1(fixture_artifacts, tmp_path, capsys):
    """Audit: --window 0 silently meant the training window."""
    folder = fixture_artifacts("gru")
    rows = tmp_path / "rows.csv"
    rows.write_text(_imu_csv(folder, 5))
    for window in ("0", "-1"):
        rc, line = run_cli(capsys, "sense", "--model", folder, "--csv", rows, "--window", window)
        assert_one_error(rc, line, f"invalid windowing: window={window} frames")


def test_sense_stopped_with_ctrl_c_ends_with_its_summary(fixture_artifacts):
    """Audit: Ctrl-C on `sense --csv -` was a KeyboardInterrupt traceback without the summary line."""
    import signal
    import subprocess
    import threading
    root = Path(__file__).resolve().parent.parent
    p = subprocess.Popen([sys.executable, "-m", "runtime", "sense", "--model", str(fixture_artifacts("gru")),
                          "--csv", "-", "--window", "2", "--lanes", "1", "--threshold", "0.01", "--smooth", "1",
                          "--refractory", "0", "--jsonl"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=root,
                         env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root)))
    guard = threading.Timer(120, p.kill)  # never hang the suite
    guard.start()
    try:
        p.stdin.write(_imu_csv(fixture_artifacts("gru"), 4))
        p.stdin.flush()
        detections = [p.stdout.readline() for _ in range(2)]  # both windows decided: sense waits for rows
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        guard.cancel()
    assert all(json.loads(d)["frame"] in (1, 3) for d in detections), (detections, out, err)
    assert p.returncode == 0 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "4 frames, 2 detection(s)", err
