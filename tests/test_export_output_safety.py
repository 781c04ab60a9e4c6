"""Export never deletes what it did not write, and bad input is one line (black-box findings).

A folder holding a foreign manifest.json, or a user's files inside an artifact folder, was deleted by the
swap; a malformed checkpoint header, a full disk and the wrong kind of file gave tracebacks or misleading
lines.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export import pipeline
from export.cli import main

REPO = Path(__file__).resolve().parent.parent


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_temporaries(out: Path) -> bool:
    return not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def onnx_folder(fixture_run, tmp_path_factory):
    """An ONNX-only artifact folder of the fixture GRU (tests work on copies)."""
    out = tmp_path_factory.mktemp("safety") / "artifacts"
    pipeline.export_artifacts(fixture_run("gru"), out, kinds=["onnx"], progress=False)
    return out


@pytest.fixture
def artifacts(onnx_folder, tmp_path):
    out = tmp_path / "site" / "artifacts"
    shutil.copytree(onnx_folder, out)
    return out


def test_a_folder_with_a_foreign_manifest_is_not_replaced(fixture_run, tmp_path, monkeypatch, capsys):
    """A web app's manifest.json made the folder look like artifacts: every export family ran and the
    swap deleted index.html, NOTES.md and src/ (TFLite and C are stubbed here to keep it fast)."""
    monkeypatch.setattr(pipeline, "check_dependencies", lambda kinds: None)
    monkeypatch.setattr(pipeline, "_optional_exporter", lambda module, attr: lambda *a: [])
    app = tmp_path / "my-web-app"
    (app / "src").mkdir(parents=True)
    files = {"manifest.json": '{"name":"my-web-app"}', "index.html": "<html></html>", "NOTES.md": "notes",
             "src/background.js": "chrome.runtime;"}
    for rel, text in files.items():
        (app / rel).write_text(text)
    rc = main(["--checkpoint", str(fixture_run("gru")), "--out", str(app), "--no-progress"])
    assert rc == 2
    assert _error_line(capsys) == (f"error: output folder {app} is not an artifact folder (its manifest.json is not "
                                   f"an rnn-edge manifest) and holds NOTES.md: refusing to replace it; move its "
                                   f"files or choose another --out")
    assert _snapshot(app) == {rel: text.encode() for rel, text in files.items()}
    assert _no_temporaries(app)


@pytest.mark.parametrize("extra,named", [("NOTES.md", "NOTES.md"), ("recordings/a.csv", "recordings/")])
def test_user_files_inside_an_artifact_folder_are_not_deleted(artifacts, fixture_run, capsys, extra, named):
    """`--kinds onnx` over a real artifact folder silently deleted a user's NOTES.md and recordings/."""
    (artifacts / extra).parent.mkdir(parents=True, exist_ok=True)
    (artifacts / extra).write_text("mine")
    before = _snapshot(artifacts)
    rc = main(["--checkpoint", str(fixture_run("gru")), "--out", str(artifacts), "--kinds", "onnx", "--no-progress"])
    assert rc == 2
    assert _error_line(capsys) == (f"error: output folder {artifacts} holds {named}, which its manifest.json does "
                                   f"not list: refusing to replace the folder (that would delete it); move it or "
                                   f"choose another --out")
    assert _snapshot(artifacts) == before and (artifacts / extra).read_text() == "mine"
    moved = artifacts / Path(extra).parts[0]
    shutil.rmtree(moved) if moved.is_dir() else moved.unlink()  # moved away: the folder is replaced as before
    assert main(["--checkpoint", str(fixture_run("gru")), "--out", str(artifacts), "--kinds", "onnx",
                 "--no-progress"]) == 0


def test_files_of_a_family_that_failed_part_way_are_not_left_behind(artifacts, fixture_run, monkeypatch):
    """What no record lists is dropped before the swap, so the next export can still replace the folder."""
    import export.c

    def half_written(model, meta, data, out_dir):
        (Path(out_dir) / "c-int8").mkdir()
        (Path(out_dir) / "c-int8" / "model.c").write_text("/* half */")
        raise RuntimeError("codegen died (injected)")
    monkeypatch.setattr(export.c, "export_c", half_written)
    manifest = pipeline.export_artifacts(fixture_run("gru"), artifacts, kinds=["onnx", "c"], progress=False)
    assert {r["name"]: r["status"] for r in manifest["artifacts"]}["c"] == "failed"
    assert not (artifacts / "c-int8").exists()
    pipeline.check_output(artifacts)  # replaceable: nothing unlisted


def _with_meta(src: Path, dst: Path, **changes) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(src), framework="pt") as f:
        header, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    header["meta"] = json.dumps({**json.loads(header["meta"]), **changes})
    save_file(tensors, str(dst), metadata=header)
    return dst


@pytest.mark.parametrize("field,value,described", [
    ("class_names", 5, "int 5, expected a list of class names"),
    ("seq_len", "x", 'str "x", expected a whole number of frames'),
])
def test_malformed_checkpoint_metadata_is_one_line(fixture_run, tmp_path, capsys, field, value, described):
    """TypeError / ValueError tracebacks from export/manifest.py before."""
    bad = _with_meta(fixture_run("gru") / "model.safetensors", tmp_path / "model.safetensors", **{field: value})
    out = tmp_path / "out"
    rc = main(["--checkpoint", str(bad), "--out", str(out), "--kinds", "onnx", "--no-progress"])
    assert rc == 2
    assert _error_line(capsys) == (f"error: checkpoint {bad}: its metadata field {field} is malformed ({described}): "
                                   f"retrain it, or import it again if it came from --keras")
    assert not out.exists() and _no_temporaries(out)


def test_a_full_disk_is_one_line_and_keeps_the_old_folder(artifacts, fixture_run):
    """A file size limit (as `ulimit -f`) makes every write fail like a full disk: an OSError traceback before."""
    before = _snapshot(artifacts)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
    proc = subprocess.run([sys.executable, "-m", "export", "--checkpoint", str(fixture_run("gru")), "--out",
                           str(artifacts), "--kinds", "onnx", "--no-progress"], cwd=REPO, preexec_fn=limit,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == (f"error: cannot write the artifacts to {artifacts}: File too large; "
                                   f"free space or choose another --out")
    assert _snapshot(artifacts) == before
    assert _no_temporaries(artifacts)


@pytest.mark.parametrize("name", ["train_state.pt", "metrics.json"])
def test_the_wrong_file_of_a_run_is_named_as_such(fixture_run, tmp_path, capsys, name):
    """It said the file 'is corrupted or truncated ... retrain or restore it'."""
    wrong = fixture_run("gru") / name
    assert wrong.is_file()
    rc = main(["--checkpoint", str(wrong), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 2
    assert _error_line(capsys) == (f"error: {wrong} is not a model checkpoint: pass the run folder that "
                                   f"`invoke train` wrote or its model.safetensors")


def test_out_under_a_file_names_the_file(fixture_run, tmp_path, capsys):
    """It said 'cannot write ... (File exists)'."""
    (tmp_path / "afile").write_text("mine")
    rc = main(["--checkpoint", str(fixture_run("gru")), "--out", str(tmp_path / "afile" / "sub"), "--no-progress"])
    assert rc == 2
    assert _error_line(capsys) == (f"error: cannot write to output folder {tmp_path / 'afile' / 'sub'}: "
                                   f"{tmp_path / 'afile'} is a file, not a folder; choose another with --out")
    assert (tmp_path / "afile").read_text() == "mine"
