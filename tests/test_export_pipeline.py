"""export_artifacts and `python -m export`: manifest, golden data, atomic swap, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from export import pipeline
from export.pipeline import export_artifacts
from runtime.errors import MissingDependency, UserError
from training.checkpoint import file_sha256

ONNX_NAMES = {"onnx-float32", "onnx-float32-step", "onnx-dynamic-int8", "onnx-qdq-int8",
              "onnx-decomposed-step", "onnx-decomposed-step-int8"}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported(fixture_run, tmp_path_factory):
    """ONNX + C artifacts of the fixture models (TFLite is covered by the slow test below)."""
    cache = {}

    def get(arch):
        if arch not in cache:
            out = tmp_path_factory.mktemp(f"export-{arch}") / "artifacts"
            manifest = export_artifacts(fixture_run(arch) / "model.safetensors", out, task="fixture",
                                        kinds={"onnx", "c"}, progress=False)
            cache[arch] = (out, manifest)
        return cache[arch]
    return get


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_manifest(out: Path, ckpt: Path):
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "rnn-edge-artifacts/1"
    assert manifest["checkpoint"]["sha256"] == file_sha256(ckpt)
    assert manifest["golden"]["sha256"] == file_sha256(out / manifest["golden"]["file"])
    for rec in manifest["artifacts"]:
        assert rec["status"] in ("ok", "out-of-tolerance", "failed", "unsupported"), rec
        if rec["status"] == "failed":
            assert rec["error"] and "\n" not in rec["error"] and rec["name"] in rec["error"]
            continue
        if rec["status"] == "unsupported":  # a documented converter limitation, with its message; no file
            assert rec["error"] and "not yet supported" in rec["error"] and rec["file"] is None, rec
            continue
        path = out / rec["file"]
        assert rec["sha256"] == file_sha256(path), rec["name"]
        assert rec["size_bytes"] == path.stat().st_size
        for key in ("format", "runtime", "precision", "kind", "inputs", "outputs", "ops", "quantized"):
            assert rec[key] is not None, (rec["name"], key)
        assert "accuracy" in rec and (rec["format"] != "onnx" or rec["accuracy"] is not None)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temp leftovers
    return manifest


def test_manifest_matches_files_and_pytorch(exported, fixture_run, arch):
    out, manifest = exported(arch)
    on_disk = _check_manifest(out, fixture_run(arch) / "model.safetensors")
    assert on_disk["artifacts"] == json.loads(json.dumps(manifest["artifacts"]))
    recs = {r["name"]: r for r in manifest["artifacts"]}
    assert ONNX_NAMES <= set(recs)
    assert any(r["format"] == "c" for r in recs.values())  # the C family ran through the pipeline
    for name in ONNX_NAMES:
        rec = recs[name]
        assert rec["status"] in ("ok", "out-of-tolerance"), (name, rec["error"])
        assert rec["metrics"]["latency_ms"] > 0
    for name in ("onnx-float32", "onnx-float32-step", "onnx-decomposed-step"):
        assert recs[name]["status"] == "ok", recs[name]["error"]
        assert recs[name]["metrics"]["max_abs_err"] <= 1e-5
    for name in ("onnx-float32-step", "onnx-decomposed-step"):
        assert recs[name]["metrics"]["stream_vs_sequence_max_abs"] <= 1e-5
        state = recs[name]["state"]
        assert state["mode"] == "explicit" and [i["name"] for i in recs[name]["inputs"]] == ["frame", *state["inputs"]]
    assert recs["onnx-float32-step"]["metrics"]["stream_vs_own_sequence_max_abs"] <= 1e-5  # same kernels
    seq = recs["onnx-float32"]
    assert [i["name"] for i in seq["inputs"]] == ["x"] and seq["inputs"][0]["shape"][:2] == [None, None]
    assert seq["outputs"][0]["name"] == "scores" and seq["outputs"][0]["dtype"] == "float32"
    expected = "DynamicQuantizeLSTM" if arch == "lstm" else "GRU x2"
    assert expected in recs["onnx-dynamic-int8"]["quantized"]

    from training.checkpoint import load_model
    model, _ = load_model(fixture_run(arch) / "model.safetensors")
    g = np.load(out / "golden.npz")
    with torch.no_grad():
        assert np.max(np.abs(model(torch.from_numpy(g["x"])).numpy() - g["scores"])) < 1e-6
        assert np.max(np.abs(model.stream(torch.from_numpy(g["x"])).numpy() - g["stream_scores"])) < 1e-6
    mean, std = np.array(manifest["preprocess"]["mean"]), np.array(manifest["preprocess"]["std"])
    assert np.allclose((g["x_raw"] - mean) / std, g["x"], atol=1e-5)
    assert len(np.unique(g["y"])) == len(manifest["class_names"])  # golden covers every class


def test_failed_export_leaves_previous_folder_intact(exported, fixture_run, monkeypatch):
    out, _ = exported("gru")
    before = _snapshot(out)

    def boom(*a, **k):
        raise OSError("disk full (injected)")
    monkeypatch.setattr(pipeline.M, "write", boom)
    with pytest.raises(OSError, match="injected"):
        export_artifacts(fixture_run("gru"), out, kinds=["onnx"], progress=False)
    assert _snapshot(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_one_artifact_failing_is_recorded_and_the_rest_written(fixture_run, tmp_path, monkeypatch):
    from export import onnx_quant

    def crash(*a, **k):
        raise RuntimeError("quantizer exploded (injected)")
    monkeypatch.setattr(onnx_quant, "quantize_dynamic_onnx", crash)
    import export.c
    monkeypatch.setattr(export.c, "export_c", lambda *a, **k: (_ for _ in ()).throw(ValueError("codegen bug")))
    manifest = export_artifacts(fixture_run("gru"), tmp_path / "a", kinds=("onnx", "c"), progress=False)
    recs = {r["name"]: r for r in manifest["artifacts"]}
    assert recs["onnx-dynamic-int8"]["status"] == "failed"
    assert recs["onnx-dynamic-int8"]["error"].startswith("onnx-dynamic-int8: RuntimeError: quantizer exploded")
    assert recs["c"]["status"] == "failed" and "codegen bug" in recs["c"]["error"]
    assert recs["onnx-float32"]["status"] == "ok" and (tmp_path / "a" / "model.onnx").is_file()
    _check_manifest(tmp_path / "a", fixture_run("gru") / "model.safetensors")
    from export.summary import problems, table
    assert "onnx-dynamic-int8" in table(manifest) and len(problems(manifest)) == 2


def _bidirectional_checkpoint(src: Path, dst: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(src), framework="pt") as f:
        header, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    spec = json.loads(header["spec"])
    spec["bidirectional"] = True
    header["spec"] = json.dumps(spec)
    tensors["layers.0.weight_ih_l0_reverse"] = tensors["layers.0.weight_ih_l0"].clone()
    save_file(tensors, str(dst), metadata=header)
    return dst


def test_bad_input_one_line_and_nothing_lost(exported, fixture_run, tmp_path, monkeypatch, capsys):
    from export.cli import main
    out, _ = exported("gru")
    before = _snapshot(out)
    gru = fixture_run("gru") / "model.safetensors"
    bidir = _bidirectional_checkpoint(gru, tmp_path / "bidir.safetensors")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("mine")
    cases = [
        (["--checkpoint", str(bidir)], "bidirectional"),
        (["--checkpoint", str(gru), "--arch", "lstm"], "is a gru model, not lstm"),
        (["--checkpoint", str(gru), "--arch", "rnn"], "unsupported architecture"),
        (["--checkpoint", str(gru), "--task", "watch"], "trained on task 'fixture'"),
        (["--checkpoint", str(tmp_path / "nope.safetensors")], "no checkpoint"),
        (["--checkpoint", str(gru), "--kinds", "onnx,coreml"], "unknown artifact kind"),
        (["--checkpoint", str(gru), "--out", str(tmp_path / "a-file" / "out")], "cannot write to output folder"),
        (["--checkpoint", str(gru), "--out", str(tmp_path / "precious")], "not an artifact folder"),
    ]
    for argv, expected in cases:
        rc = main(argv + ["--out", str(out), "--no-progress"] if "--out" not in argv else argv + ["--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, argv
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], (argv, err)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "mine"

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # TensorFlow not installed
    with pytest.raises(MissingDependency, match=r"pip install -e '\.\[export\]'"):
        export_artifacts(gru, out, kinds=["onnx", "tflite"], progress=False)
    rc = main(["--checkpoint", str(gru), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "TensorFlow" in err[0]
    assert _snapshot(out) == before


def test_partial_export_keeps_the_other_families(exported, fixture_run, tmp_path):
    """`--kinds onnx` over a full export of the same checkpoint replaces the ONNX files and keeps the
    C package byte for byte (found by an audit: it deleted every other family); over another
    checkpoint's folder it is refused and the folder is left as it was."""
    import shutil

    import runtime
    src, full = exported("gru")
    out = tmp_path / "artifacts"
    shutil.copytree(src, out)
    c_files = {k: v for k, v in _snapshot(out).items() if k.startswith("c-")}
    ckpt = fixture_run("gru") / "model.safetensors"
    manifest = export_artifacts(ckpt, out, kinds=["onnx"], progress=False)
    assert {r["name"] for r in manifest["artifacts"]} == {r["name"] for r in full["artifacts"]}
    assert manifest["kinds"] == ["onnx", "c"]
    assert {k: v for k, v in _snapshot(out).items() if k.startswith("c-")} == c_files
    _check_manifest(out, ckpt)
    assert runtime.load(out, artifact="c-int8").predict(np.zeros((1, 5, 3), np.float32)).shape[0] == 1

    before = _snapshot(out)
    with pytest.raises(UserError, match="holds c artifacts of another checkpoint") as e:
        export_artifacts(fixture_run("lstm") / "model.safetensors", out, kinds=["onnx"], progress=False)
    assert "leave out --kinds" in str(e.value) and "\n" not in str(e.value)
    assert _snapshot(out) == before


@pytest.mark.parametrize("damage", ["arduino source", "selftest header", "quant.json", "out-of-tolerance onnx"])
def test_partial_export_refuses_to_carry_a_damaged_file(exported, fixture_run, tmp_path, damage):
    """`--kinds` over a folder checked only a kept record's .c and header, and only for ok records: a
    damaged Arduino source, selftest header or quant.json of the C package, or the file of an
    out-of-tolerance record, was carried over (and hashed afresh into the new manifest)."""
    import shutil
    src, _ = exported("gru")
    out = tmp_path / "artifacts"
    shutil.copytree(src, out)
    man = json.loads((out / "manifest.json").read_text())
    c_int8 = next(a for a in man["artifacts"] if a["name"] == "c-int8")
    files = c_int8["c"]["files"]
    if damage == "out-of-tolerance onnx":
        rec = next(a for a in man["artifacts"] if a["name"] == "onnx-qdq-int8")
        rec["status"], rec["error"] = "out-of-tolerance", "onnx-qdq-int8: (simulated)"
        (out / "manifest.json").write_text(json.dumps(man))
        target, kinds = rec["file"], ["c"]
    else:
        pick = {"arduino source": lambda f: "/arduino/" in f and f.endswith(".c"),
                "selftest header": lambda f: f.endswith("_selftest.h"), "quant.json": lambda f: f.endswith("quant.json")}
        target, kinds = next(f for f in files if pick[damage](f)), ["onnx"]
    with open(out / target, "ab") as f:
        f.write(b"\n/* tampered */\n")
    before = _snapshot(out)
    with pytest.raises(UserError, match="differs from its sha256") as e:
        export_artifacts(fixture_run("gru") / "model.safetensors", out, kinds=kinds, progress=False)
    assert target in str(e.value) and "\n" not in str(e.value)
    assert _snapshot(out) == before


@pytest.mark.parametrize("meta,expected", [("[]", "meta is a list"), ("drop-mean", "meta.input_mean must list")])
def test_damaged_checkpoint_meta_is_one_line(fixture_run, tmp_path, capsys, meta, expected):
    """A header whose meta is valid JSON of the wrong shape (audit: AttributeError / KeyError tracebacks)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from export.cli import main
    src = fixture_run("gru") / "model.safetensors"
    with safe_open(str(src), framework="pt") as f:
        header, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    m = json.loads(header["meta"])
    m.pop("input_mean")
    header["meta"] = meta if meta == "[]" else json.dumps(m)
    bad = tmp_path / "model.safetensors"
    save_file(tensors, str(bad), metadata=header)
    rc = main(["--checkpoint", str(bad), "--out", str(tmp_path / "out"), "--kinds", "onnx", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "damaged header" in err[0] and expected in err[0], err
    assert not (tmp_path / "out").exists()


def test_cli_trains_the_default_when_no_checkpoint(tmp_path, monkeypatch, capsys):
    from export.cli import main
    monkeypatch.chdir(tmp_path)
    rc = main(["--task", "fixture", "--arch", "gru", "--kinds", "onnx", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "training the default fixture-gru model" in captured.err
    assert (tmp_path / "runs" / "fixture-gru" / "model.safetensors").is_file()
    manifest = json.loads((tmp_path / "artifacts" / "fixture-gru" / "manifest.json").read_text())
    assert {r["name"] for r in manifest["artifacts"]} == ONNX_NAMES
    assert "onnx-decomposed-step-int8" in captured.out and "max err vs float" in captured.out


def test_cli_subprocess_exit_status_and_summary(fixture_run, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "export", "--checkpoint", str(fixture_run("lstm")),
                           "--out", str(tmp_path / "out"), "--kinds", "onnx", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "onnx-dynamic-int8" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_all_families_through_the_shared_fixture(fixture_artifacts, fixture_run, arch):
    """The full export (ONNX, TFLite in child processes, C) as the parity suite sees it."""
    out = fixture_artifacts(arch)
    manifest = _check_manifest(out, fixture_run(arch) / "model.safetensors")
    formats = {r["format"] for r in manifest["artifacts"] if r["status"] != "failed"}
    assert {"onnx", "tflite", "c"} <= formats


def test_a_c_step_record_takes_the_status_of_its_library():
    """c-int8-step runs the library of c-int8 but carries no metrics of its own: it was recorded ok
    next to an out-of-tolerance c-int8 (a reviewer's model with large recurrent weights), so
    runtime.load gave no warning for it and `runtime check` then failed a record export called ok."""
    from runtime.metrics import compare
    rng = np.random.default_rng(0)
    ref, y = rng.standard_normal((64, 4)).astype(np.float32), rng.integers(0, 4, 64)
    bad = compare(ref + rng.standard_normal(ref.shape).astype(np.float32), ref, y)
    good = compare(ref + 1e-7, ref, y)
    records = [{"name": "c-float32", "file": "c-float32/m.c", "precision": "float32", "metrics": good},
               {"name": "c-float32-step", "file": "c-float32/m.c", "precision": "float32"},
               {"name": "c-int8", "file": "c-int8/m.c", "precision": "int8", "metrics": bad},
               {"name": "c-int8-step", "file": "c-int8/m.c", "precision": "int8"}]
    for r in records:
        r["status"] = "ok"  # (as the exporters write them, before the policy)
    pipeline._judge_records(records)
    status = {r["name"]: r["status"] for r in records}
    assert status == {"c-float32": "ok", "c-float32-step": "ok", "c-int8": "out-of-tolerance",
                      "c-int8-step": "out-of-tolerance"}
    assert records[3]["error"].startswith("c-int8-step: runs the library of c-int8: int8 outside tolerance")


def test_data_with_other_channels_than_the_model_is_one_line(fixture_run, tmp_path):
    """A data file rewritten with another channel count since training: the PyTorch reference
    broadcast the model's mean/std against it first, a ValueError traceback (a reviewer's .npz)."""
    import dataclasses

    from training.data import load_task
    d = load_task("fixture")
    wider = dataclasses.replace(d, **{k: np.concatenate([getattr(d, k), getattr(d, k)[..., :1]], -1)
                                      for k in ("X_train", "X_val", "X_test")})
    with pytest.raises(UserError, match=r"the data has \d+ channels but the model expects \d+"):
        export_artifacts(fixture_run("gru") / "model.safetensors", tmp_path / "out", kinds=["onnx", "c"],
                         progress=False, data=wider)
    assert not (tmp_path / "out").exists()
