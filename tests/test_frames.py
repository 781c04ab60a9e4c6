"""Per-step outputs (``head="frames"``, sequence labelling) through the pipeline: train -> export -> parity,
on the tiny ``fixture-frames`` task (24 frames, 3 channels, a label per frame, one change of class).

The model trains in seconds; the export (ONNX, TFLite, C) and the parity matrix run once per module.
Frames cells are judged by the classify rules applied to every frame (per-frame top-1 agreement,
frame-accuracy drop, error on every output); the whole-sequence outputs are ``[N, T, K]`` and the
step forms must reproduce them frame for frame. The C library is streaming-only for this head.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from parity.cells import FAIL, PASS, SKIP
from training import frames

DEVICE_RUNTIMES = ("cortex-m", "rpi-")


# -- pure functions ---------------------------------------------------------------------------------
def test_join_settled_mask_and_frame_metrics():
    rng = np.random.default_rng(0)
    a = np.zeros((30, 2), np.float32)
    b = np.ones((30, 2), np.float32)
    x, y = frames.join(a, b, 4, 6, length=10, change=3, rng=rng)
    assert x.shape == (10, 2) and y.tolist() == [4] * 3 + [6] * 7
    np.testing.assert_array_equal(x[:3], 0) and np.testing.assert_array_equal(x[3:], 1)
    x1, y1 = frames.join(a, None, 2, -1, length=10, change=10, rng=rng)
    assert x1.shape == (10, 2) and set(y1.tolist()) == {2}
    Y = np.array([[0, 0, 0, 0, 1, 1, 1, 1]])
    m = frames.settled_mask(Y, 2)
    assert m.tolist() == [[False, False, True, True, False, False, True, True]]
    scores = np.eye(2)[np.array([[1, 0, 0, 0, 0, 1, 1, 1]])]  # wrong at frame 0 and right after the change
    fm = frames.frame_metrics(scores, Y, ignore_frames=1, settle=2)
    assert fm["frame_acc"] == pytest.approx(6 / 7) and fm["frame_acc_all"] == pytest.approx(6 / 8)
    assert fm["settled_acc"] == pytest.approx(1.0)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_frames_spec_round_trips_and_step_equals_sequence(arch):
    import torch
    from training.models import ModelSpec, SequenceModel
    assert "head" not in json.loads(ModelSpec(arch, 6, (32, 32), 7).to_json())  # classify checkpoints unchanged
    spec = ModelSpec(arch, 3, (8, 5), 4, head="frames")
    assert ModelSpec.from_json(spec.to_json()) == spec
    model = SequenceModel(spec).eval()
    x = torch.randn(3, 17, 3)
    with torch.no_grad():
        seq = model(x)
        assert seq.shape == (3, 17, 4)
        np.testing.assert_allclose(model.stream(x).numpy(), seq.numpy(), atol=1e-5)
        np.testing.assert_allclose(model(x[:, :5]).numpy(), seq[:, :5].numpy(), atol=1e-6)  # causal


def test_judge_counts_every_frame_not_only_the_last():
    """Scores that agree on the last frame but flip 10% of the earlier frames fail int8's 95% top-1 rule."""
    from parity.judge import judge
    from runtime.metrics import compare
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((40, 20, 3)).astype(np.float32)
    y = ref.argmax(-1)
    bad = ref.copy()
    flip = rng.random((40, 20)) < 0.10
    flip[:, -1] = False
    bad[flip] = bad[flip][:, [1, 2, 0]]  # rotate the class scores: a different argmax (no ties here)
    assert np.array_equal(bad[:, -1], ref[:, -1])
    m = compare(bad, ref, y, head="frames")
    assert m["top1_agreement"] == pytest.approx(1 - flip.mean(), abs=1e-9) and "accuracy" in m
    why = judge("int8", m)
    assert any("top-1 agreement" in w for w in why) and any("accuracy drop" in w for w in why), why
    assert judge("int8", compare(ref + 1e-3, ref, y, head="frames")) == []


# -- train, export, parity on the fixture -----------------------------------------------------------
@pytest.fixture(scope="module")
def frames_run(config_run):
    return config_run("fixture-frames")


@pytest.fixture(scope="module")
def frames_artifacts(config_artifacts):
    return config_artifacts("fixture-frames")


@pytest.fixture(scope="module")
def frames_matrix(frames_artifacts):
    from parity.matrix import run_matrix
    return run_matrix(frames_artifacts[0], progress=False)


def test_training_reports_frame_accuracy(frames_run):
    out, m = frames_run
    assert m["head"] == "frames" and m["ignore_frames"] == 3
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("test_frame_acc", "test_frame_acc_all", "test_settled_acc"):
        assert saved[key] == pytest.approx(m[key])
    assert m["test_frame_acc"] > 0.6, f"the fixture is easy: frame accuracy should beat chance (1/3) clearly: {m}"
    assert m["test_settled_acc"] >= m["test_frame_acc"] - 0.05
    assert np.asarray(m["confusion"]).sum() == m["test_examples"] * (m["seq_len"] - m["ignore_frames"])


def test_augmentation_is_refused_for_frames(tmp_path):
    from runtime.errors import UserError
    from training.config import load_config
    from training.trainer import train
    with pytest.raises(UserError, match="augment"):
        train(load_config("fixture-frames", arch="gru", out=str(tmp_path), augment="basic", epochs=1),
              resume=False, progress=False)


@pytest.mark.parametrize("option, value, message", [
    ("min_segment_s", 2.0, "choose 0 to half of length_s"), ("length_s", 0.0, "a length of at least 2 frames"),
    ("ignore_s", 5.0, "below length_s (3.0 s), so that some frames are scored"), ("ignore_s", -1.0, "0 or more"),
    ("settle_s", -1.0, "0 (score every frame as settled) or more"), ("p_single", 1.5, "a probability from 0 to 1")])
def test_watch_frames_options_out_of_range_are_one_line(option, value, message):
    """Audit: min_segment_s = 2 and length_s = 0 were ValueError tracebacks; ignore_s = 5 (longer than the
    sequence) trained on no frame and was reported as a diverged run."""
    from runtime.errors import UserError
    from training.data import load_task
    with pytest.raises(UserError, match=rf"option {option}={value} of task watch-frames is out of range: .*{re.escape(message)}") as err:
        load_task("watch-frames", **{option: value})
    assert "\n" not in str(err.value)


def test_a_watch_frames_run_without_settled_frames_reports_the_rest(tmp_path, capsys):
    """Audit: settle_s = 0 trained and wrote metrics.json, then the summary line was a TypeError traceback."""
    from training.train import main
    assert main(["--task", "watch-frames", "--out", str(tmp_path), "--no-progress", "--set", "epochs=1", "--set", "hidden=4",
                 "--set", "data.settle_s=0", "--set", "data.per_subject_train=4", "--set", "data.per_subject_eval=2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("watch-frames-gru: test frame accuracy") and "settled" not in line
    assert json.loads((tmp_path / "metrics.json").read_text())["test_settled_acc"] is None


def test_export_verifies_every_frame(frames_artifacts):
    folder, manifest = frames_artifacts
    assert manifest["model"]["head"] == "frames" and manifest["model"]["frames"]["ignore_frames"] == 3
    with np.load(folder / "golden.npz") as z:
        g, t, k = z["scores"].shape
        assert z["y"].shape == (g, t) and z["y"].dtype == np.int64 and z["stream_scores"].shape == (g, t, k)
        np.testing.assert_allclose(z["stream_scores"], z["scores"], atol=1e-5)  # step == sequence, every frame
    by = {a["name"]: a for a in manifest["artifacts"]}
    # the whole-sequence C entry returns the last step only: reported, not hidden
    for p in ("float32", "int8"):
        assert by[f"c-{p}"]["status"] == "unsupported" and "last step" in by[f"c-{p}"]["error"]
        assert by[f"c-{p}-step"]["status"] == "ok" and by[f"c-{p}-step"]["metrics"]["top1_agreement"] >= 0.95
    judged = [a for a in manifest["artifacts"] if "top1_agreement" in (a.get("metrics") or {})]
    assert {"onnx", "tflite", "c"} <= {a["format"] for a in judged}
    for a in judged:
        assert a["accuracy"] is not None and "accuracy_drop" in a["metrics"], a["name"]
    ok_kinds = {(a["format"], a["kind"]) for a in judged if a["status"] == "ok"}
    assert {("onnx", "sequence"), ("onnx", "step"), ("c", "step")} <= ok_kinds, ok_kinds
    f32 = by["onnx-float32-step"]["metrics"]
    assert f32["stream_vs_sequence_max_abs"] <= 1e-5 and f32["stream_vs_own_sequence_max_abs"] <= 1e-5
    bad = [(a["name"], a["status"], a["error"]) for a in manifest["artifacts"]
           if a["status"] not in ("ok", "unsupported")]
    assert not bad, bad


def test_runtime_predict_returns_every_frame(frames_artifacts, tmp_path, capsys):
    import runtime
    from runtime.__main__ import main
    folder = frames_artifacts[0]
    with np.load(folder / "golden.npz") as z:
        x_raw, scores = z["x_raw"], z["scores"]
    model = runtime.load(folder, artifact="onnx-float32")
    got = model.predict(x_raw)
    assert got.shape == scores.shape
    np.testing.assert_allclose(got, scores, atol=1e-4)
    np.testing.assert_allclose(runtime.load(folder, artifact="c-float32-step").predict(x_raw), scores, atol=1e-4)
    np.savez(tmp_path / "in.npz", x_raw=x_raw)
    assert main(["predict", str(folder), "--input", str(tmp_path / "in.npz"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == len(x_raw) and len(lines[0]["frames"]) == x_raw.shape[1]
    assert main(["check", str(folder)]) == 0, capsys.readouterr().out


def test_parity_judges_frames_cells_per_frame(frames_matrix):
    mx = frames_matrix
    assert mx.heldout.head == "frames" and mx.heldout.reference.ndim == 3
    host = [r for r in mx.results if not r.cell.runtime.startswith(DEVICE_RUNTIMES)]
    bad = [f"{r.id}: {r.status} {'; '.join(r.failures)}" for r in host if r.status not in (PASS, SKIP)]
    assert not bad, bad
    ran = [r for r in host if r.status == PASS and r.cell.runtime != "golden"]
    pairs = {(r.cell.runtime, r.cell.precision) for r in ran}
    assert len(pairs) >= 8, sorted(pairs)
    for r in ran:
        assert "top1_agreement" in r.metrics and "accuracy" in r.metrics, (r.id, sorted(r.metrics))
        assert r.outputs.scores.ndim == 3, r.id  # whole-sequence and stream cells: every frame
        if r.cell.inputs == "all":
            assert "accuracy_drop" in r.metrics, r.id
    c8 = mx.result("gru-int8-c-stream")
    assert c8.metrics["lsb"]["gru-int8-c-reference-stream"]["lsb"] == 0  # C == its numpy twin, every frame
    int8 = [r.metrics["max_abs_err"] for r in ran if r.cell.precision == "int8"]
    assert int8 and max(int8) > 1e-4  # the int8 cells really are approximate


def test_parity_frames_on_emulated_devices(frames_matrix):
    dev = [r for r in frames_matrix.results if r.cell.runtime.startswith(DEVICE_RUNTIMES)]
    if not dev or all(r.status == SKIP for r in dev):
        pytest.skip("no emulated device runtime here: " + "; ".join(f for r in dev for f in r.failures[:1]))
    for r in dev:
        if r.status != SKIP:
            assert r.status == PASS, f"{r.id}: {r.status} {'; '.join(r.failures)}"
            assert "top1_agreement" in r.metrics


def test_parity_fails_a_perturbed_frames_artifact(frames_artifacts, tmp_path):
    """The float ONNX head bias of one class raised (file re-hashed): frames flip, the cell fails per frame."""
    import onnx
    from onnx import numpy_helper

    from parity.matrix import run_matrix
    from runtime.manifest import Manifest, sha256_of
    src = frames_artifacts[0]
    dst = tmp_path / "broken"
    shutil.copytree(src, dst)
    data = json.loads((dst / "manifest.json").read_text())
    data["checkpoint"]["file"] = str(Manifest.read(src).checkpoint_path().resolve())
    entry = next(a for a in data["artifacts"] if a["name"] == "onnx-float32")
    model = onnx.load(str(dst / entry["file"]))
    for init in model.graph.initializer:
        if init.name == "head.bias":
            b = numpy_helper.to_array(init).copy()
            b[0] += 1.0
            init.CopyFrom(numpy_helper.from_array(b, init.name))
            break
    else:
        raise AssertionError("no head.bias initializer in model.onnx")
    onnx.save(model, str(dst / entry["file"]))
    entry["sha256"] = sha256_of(dst / entry["file"])
    (dst / "manifest.json").write_text(json.dumps(data, indent=2))
    mx = run_matrix(dst, progress=False, only=["*-float32-onnxruntime", "*-float32-torch"],
                    providers=("parity.providers.onnxruntime", "parity.providers.torch"))
    r = mx.result("gru-float32-onnxruntime")
    assert r.status == FAIL and any("top-1 agreement" in f for f in r.failures), r.failures
    assert r.metrics["top1_agreement"] < 1.0
    assert mx.result("gru-float32-torch").status == PASS
