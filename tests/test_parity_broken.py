"""A deliberately broken artifact (or runtime) must make the parity suite FAIL and name the cell.

Each test copies the fixture artifact folder, breaks one thing, re-hashes what it changed (so the
failure is numerical, not a refused sha256), runs only the relevant providers, and checks that the
expected cells fail while an untouched cell still passes.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from parity.cells import FAIL, PASS, SKIP
from runtime.manifest import Manifest, sha256_of


def _copy(folder, tmp_path):
    """A private copy of an artifact folder whose manifest points at the original checkpoint."""
    dst = tmp_path / "broken"
    shutil.copytree(folder, dst)
    data = json.loads((dst / "manifest.json").read_text())
    data["checkpoint"]["file"] = str(Manifest.read(folder).checkpoint_path().resolve())
    (dst / "manifest.json").write_text(json.dumps(data, indent=2))
    return dst, data


def _save(dst, data):
    (dst / "manifest.json").write_text(json.dumps(data, indent=2))


def _entry(data, **match):
    for a in data["artifacts"]:
        if a.get("status", "ok") == "ok" and all(a.get(k) == v for k, v in match.items()):
            return a
    raise AssertionError(f"no artifact with {match} in the fixture manifest")


def _run(folder, providers, **kw):
    from parity.matrix import run_matrix
    return run_matrix(folder, progress=False, max_test=64, providers=tuple(f"parity.providers.{p}" for p in providers), **kw)


def _status(matrix) -> dict:
    return {r.id: r.status for r in matrix.results}


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_perturbed_weights_fail_the_float_cells(fixture_artifacts, tmp_path, arch):
    """Recurrent weights of the float ONNX graph scaled by 3% (file re-hashed): both ONNX float runtimes fail."""
    import onnx
    from onnx import numpy_helper
    dst, data = _copy(fixture_artifacts(arch), tmp_path)
    entry = _entry(data, format="onnx", precision="float32", kind="sequence")
    model = onnx.load(str(dst / entry["file"]))
    rnn_inputs = {i for n in model.graph.node if n.op_type in ("LSTM", "GRU") for i in n.input[1:3]}
    assert rnn_inputs, "the float ONNX graph has no LSTM/GRU node"
    for init in model.graph.initializer:
        if init.name in rnn_inputs:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.03), init.name))
    onnx.save(model, str(dst / entry["file"]))
    entry["sha256"] = sha256_of(dst / entry["file"])
    _save(dst, data)
    m = _run(dst, ["torch", "onnxruntime", "onnx_reference"], only=[f"{arch}-float32-*"])
    st = _status(m)
    assert st[f"{arch}-float32-onnxruntime"] == FAIL, st
    assert st[f"{arch}-float32-onnx-reference"] == FAIL, st
    assert st[f"{arch}-float32-torch"] == PASS, st  # the reference path itself is untouched
    assert f"{arch}-float32-onnxruntime" in [r.id for r in m.failed]
    assert any("max abs error" in f for f in m.result(f"{arch}-float32-onnxruntime").failures)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_wrong_input_scale_in_manifest_fails_the_int8_c_cell(fixture_artifacts, tmp_path, arch):
    """The C int8 entry's input scale doubled in manifest.json: the runtime quantizes with it, the C does not."""
    dst, data = _copy(fixture_artifacts(arch), tmp_path)
    for e in data["artifacts"]:
        if e.get("format") == "c" and e.get("precision") == "int8":
            e["inputs"][0]["quant"]["scale"] *= 2.0
    _save(dst, data)
    m = _run(dst, ["c", "c_reference"], only=[f"{arch}-int8-c", f"{arch}-int8-c-reference"])
    st = _status(m)
    assert st[f"{arch}-int8-c"] == FAIL, st
    failures = " ".join(m.result(f"{arch}-int8-c").failures)
    assert "LSB from" in failures and "not bit-exact" in failures, failures
    assert st[f"{arch}-int8-c-reference"] == PASS, st  # the calibration record itself is intact


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_state_not_reset_fails_the_stateful_cells(fixture_artifacts, tmp_path, monkeypatch, arch):
    """Backends whose reset between sequences does nothing: the cells that keep state must fail."""
    from runtime.backends.c import CBackend
    from runtime.backends.litert import LiteRTBackend
    from runtime.backends.tflm import TFLMBackend
    for cls in (CBackend, LiteRTBackend, TFLMBackend):
        monkeypatch.setattr(cls, "reset_variables", lambda self: None)
    m = _run(fixture_artifacts(arch), ["onnxruntime", "c", "litert", "tflm"],
             only=[f"{arch}-*-c", f"{arch}-*-c-stream", f"{arch}-float32-onnxruntime", f"{arch}-int8-litert",
                   f"{arch}-int8-tflm"])
    st = _status(m)
    for cell in (f"{arch}-float32-c", f"{arch}-float32-c-stream", f"{arch}-int8-c-stream"):
        assert st[cell] == FAIL, st
    if arch == "lstm":  # the fused TFLite LSTM keeps h and c in variable tensors
        assert st[f"{arch}-int8-litert"] == FAIL, st
        assert st[f"{arch}-int8-tflm"] == FAIL, st
    assert st[f"{arch}-float32-onnxruntime"] == PASS, st  # explicit state: nothing to forget


def test_missing_runtime_is_skipped_not_passed(fixture_artifacts, monkeypatch):
    from runtime.backends.tflm import TFLMBackend
    from runtime.errors import MissingDependency

    def missing(cls):
        raise MissingDependency(TFLMBackend.what, TFLMBackend.install)
    monkeypatch.setattr(TFLMBackend, "library", classmethod(missing))
    m = _run(fixture_artifacts("gru"), ["tflm"])
    assert m.results and all(r.status == SKIP for r in m.results)
    assert "not installed" in m.results[0].failures[0]
    assert m.ok and m.count(PASS) == 0


def test_cli_names_failing_cells_and_exits_nonzero(fixture_artifacts, tmp_path, capsys):
    from parity.__main__ import main
    dst, data = _copy(fixture_artifacts("gru"), tmp_path)
    for e in data["artifacts"]:
        if e.get("format") == "c" and e.get("precision") == "int8":
            e["inputs"][0]["quant"]["scale"] *= 2.0
    _save(dst, data)
    rc = main([str(dst), "--golden-only", "--quiet", "--only", "gru-int8-c*", "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "gru-int8-c:" in err and "PARITY FAILED" in err
    report = json.loads((tmp_path / "report" / "parity.json").read_text())
    assert report["ok"] is False and "gru-int8-c" in report["matrices"][0]["failed"]
    assert (tmp_path / "report" / "parity.md").read_text().count("gru-int8-c") >= 1
    assert (tmp_path / "report" / "errors-gru.png").stat().st_size > 1000


def test_cli_bad_folder_is_one_line(tmp_path, capsys):
    from parity.__main__ import main
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "manifest.json" in err[0]


def test_two_folders_of_one_arch_get_a_plot_each_and_bad_counts_are_refused(fixture_artifacts, tmp_path, capsys):
    """Audit: two GRU folders wrote one errors-gru.png (the second over the first), shown twice in parity.md;
    --sample-rows -5 silently ran 3 rows, --max-test -1 dropped a row."""
    from parity.__main__ import main
    a, _ = _copy(fixture_artifacts("gru"), tmp_path / "a")
    b, _ = _copy(fixture_artifacts("gru"), tmp_path / "b")
    b = b.rename(b.with_name("other"))
    rc = main([str(a), str(b), "--golden-only", "--quiet", "--only", "gru-float32-onnxruntime", "--out", str(tmp_path / "r")])
    assert rc == 0, capsys.readouterr().err
    md = (tmp_path / "r" / "parity.md").read_text()
    for name in ("errors-gru-broken.png", "errors-gru-other.png"):
        assert (tmp_path / "r" / name).stat().st_size > 1000 and md.count(name) == 1
    for flag in ("--sample-rows", "--max-test"):
        assert main([str(a), flag, "-1", "--quiet"]) == 2
        assert f"error: {flag} -1: pass 0 or more" in capsys.readouterr().err
