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
import json
import struct
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.__main__ import main
from runtime.backends import backend_class
from runtime.errors import MissingDependency, UserError
from runtime.manifest import Manifest
from runtime.model import _pick
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
