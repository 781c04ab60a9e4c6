"""Forecasting (regression head) through the pipeline: train -> export -> parity, on the tiny
``fixture-forecast`` task (24 frames in, the next 3 frames x 3 channels out).

The model trains in seconds; the export (ONNX, TFLite, C) and the parity matrix run once per
session. Forecast cells must be judged by regression metrics (relative error against the float
reference's range, MSE on the true future frames), never by top-1 agreement, and the judge must
fail a cell whose outputs are pushed beyond its precision's tolerance.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from parity.cells import FAIL, PASS, SKIP
from training import forecast

DEVICE_RUNTIMES = ("cortex-m", "rpi-")
# Device cells known to miss on this model, with the measured reason (docs/forecasting.md). The
# rule is devices/rpi's, not a forecast tolerance; the test pins the finding so a change shows.
KNOWN_DEVICE_MISSES = {
    "gru-int8-rpi-litert": "2 LSB from gru-int8-litert (> 1 LSB allowed)",
}


# -- pure functions ---------------------------------------------------------------------------------
def test_cut_targets_and_naive_forecast():
    rec = np.arange(20 * 2, dtype=np.float32).reshape(20, 2)
    X, Y = forecast.cut(rec, n_in=5, horizon=3, hop=4)
    assert X.shape == (4, 5, 2) and Y.shape == (4, 6)
    np.testing.assert_array_equal(Y[1], rec[9:12].reshape(-1))  # window 1 starts at 4: frames 9, 10, 11
    mean, std = np.array([1.0, 2.0], np.float32), np.array([2.0, 4.0], np.float32)
    yt = forecast.target_space(Y, mean, std)
    np.testing.assert_allclose(yt.reshape(4, 3, 2), (Y.reshape(4, 3, 2) - mean) / std, rtol=1e-6)
    naive = forecast.last_value(X, 3)
    np.testing.assert_array_equal(naive[2], np.tile(X[2, -1], 3))
    r = forecast.report(naive, naive + 1.0, X, 3)
    assert r["mse"] == pytest.approx(1.0) and r["mae"] == pytest.approx(1.0)
    assert forecast.cut(rec[:7], 5, 3, 1)[0].shape == (0, 5, 2)


def test_classifier_spec_json_is_unchanged_and_forecast_round_trips():
    import torch
    from training.models import ModelSpec, SequenceModel
    assert "head" not in json.loads(ModelSpec("gru", 6, (32, 32), 7).to_json())
    spec = ModelSpec("lstm", 3, (8, 5), 9, head="forecast")
    assert ModelSpec.from_json(spec.to_json()) == spec
    model = SequenceModel(spec).eval()
    x = torch.randn(2, 11, 3)
    with torch.no_grad():  # streaming gives the whole-sequence output at every step, as for a classifier
        np.testing.assert_allclose(model.stream(x)[:, -1].numpy(), model(x).numpy(), atol=1e-6)
        np.testing.assert_allclose(model.stream(x)[:, 4].numpy(), model(x[:, :5]).numpy(), atol=1e-6)


def test_judge_fails_a_regression_cell_perturbed_beyond_tolerance():
    """The same perturbation judged by each regression rule: within bounds passes, beyond fails."""
    from parity.judge import judge
    from runtime.metrics import compare
    from runtime.tolerances import tolerance_for
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((200, 9)).astype(np.float32)
    targets = ref + rng.standard_normal(ref.shape).astype(np.float32)  # a model error of RMS 1
    span = float(ref.max() - ref.min())
    tol = tolerance_for("int8")
    noise = rng.standard_normal(ref.shape)
    noise /= np.sqrt(np.mean(noise ** 2))  # unit RMS
    ok = compare(ref + 0.5 * tol.max_rel_err * span * noise, ref, targets)
    assert ok["head"] == "forecast" and "top1_agreement" not in ok and "accuracy" not in ok
    assert ok["rel_err"] == pytest.approx(0.5 * tol.max_rel_err, rel=1e-3)
    assert judge("int8", ok) == []
    bad = compare(ref + 2.0 * tol.max_rel_err * span * noise, ref, targets)
    why = judge("int8", bad)
    assert any("relative error" in w for w in why), why
    assert any("MSE on the targets" in w for w in why), why  # 4x the allowed error variance also hurts the forecast
    # float32: a shift far below int8's bound still fails (max abs and relative error)
    tiny = compare(ref + 1e-3, ref, head="forecast")
    assert judge("int8", tiny) == [] and len(judge("float32", tiny)) == 2
    # without targets (a sample cell) only the error against the reference is judged
    assert judge("int8", compare(ref + 2.0 * tol.max_rel_err * span * noise, ref, head="forecast"))


# -- train, export, parity on the fixture -----------------------------------------------------------
@pytest.fixture(scope="module")
def forecast_run(config_run):
    return config_run("fixture-forecast")


@pytest.fixture(scope="module")
def forecast_artifacts(config_artifacts):
    return config_artifacts("fixture-forecast")


@pytest.fixture(scope="module")
def forecast_matrix(forecast_artifacts):
    from parity.matrix import run_matrix
    return run_matrix(forecast_artifacts[0], progress=False)


def test_training_reports_mse_against_the_naive_forecast(forecast_run):
    out, m = forecast_run
    assert m["head"] == "forecast" and m["horizon"] == 3 and "test_acc" not in m
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("test_mse", "test_mae", "test_naive_mse", "test_naive_mae", "test_mse_ratio"):
        assert saved[key] == pytest.approx(m[key])
    assert m["test_mse_ratio"] < 0.5, f"the fixture forecast should clearly beat repeating the last frame: {m}"
    assert (out / "curves.png").is_file()


def test_augmentation_is_refused_for_a_forecast(tmp_path):
    from runtime.errors import UserError
    from training.config import load_config
    from training.trainer import train
    with pytest.raises(UserError, match="augment"):
        train(load_config("fixture-forecast", arch="gru", out=str(tmp_path), augment="basic", epochs=1),
              resume=False, progress=False)
    with pytest.raises(UserError, match="mixup = 0.4 mixes class labels and needs a classification task"):
        train(load_config("fixture-forecast", arch="gru", out=str(tmp_path), augment="none", mixup=0.4, epochs=1),
              resume=False, progress=False)
    with pytest.raises(UserError, match="label_smoothing = 0.1 smooths class labels and needs a classification task"):
        train(load_config("fixture-forecast", arch="gru", out=str(tmp_path), label_smoothing=0.1, epochs=1),
              resume=False, progress=False)  # (it was silently ignored: the loss is an MSE)


@pytest.mark.parametrize("option, value", [("input_s", 0.0), ("horizon_s", 0.0), ("hop_s", -1.0), ("hop_s", 0.001)])
def test_watch_forecast_windows_out_of_range_are_one_line(option, value):
    """Audit: input_s = 0 was a RuntimeError traceback and hop_s = -1 was silently a hop of one frame."""
    from runtime.errors import UserError
    from training.data import load_task
    with pytest.raises(UserError, match=rf"option {option}={value} of task watch-forecast is out of range: "
                                        rf"choose at least one frame \(0.02 s at 50 Hz\)") as err:
        load_task("watch-forecast", **{option: value})
    assert "\n" not in str(err.value)


def test_export_verifies_forecast_artifacts_by_regression_metrics(forecast_artifacts):
    folder, manifest = forecast_artifacts
    assert manifest["model"]["head"] == "forecast" and manifest["model"]["forecast"]["horizon"] == 3
    fc = manifest["reference"]["forecast"]
    assert fc["mse"] < fc["naive_mse"] and manifest["reference"]["accuracy"] is None
    with np.load(folder / "golden.npz") as z:
        assert z["y"].shape == z["scores"].shape and z["y"].dtype == np.float32
    judged = [a for a in manifest["artifacts"] if (a.get("metrics") or {}).get("head") == "forecast"]
    families = {a["format"] for a in judged}
    assert {"onnx", "c"} <= families, families
    for a in judged:
        m = a["metrics"]
        assert "top1_agreement" not in m and a["accuracy"] is None, a["name"]
        assert {"rmse", "mae", "rel_err", "target_mse", "target_mae"} <= set(m), (a["name"], sorted(m))
    bad = [(a["name"], a["status"], a["error"]) for a in manifest["artifacts"] if a["status"] != "ok"]
    assert not bad, bad


def test_runtime_check_passes_on_the_forecast_folder(forecast_artifacts, capsys):
    from runtime.__main__ import main
    assert main(["check", str(forecast_artifacts[0])]) == 0, capsys.readouterr().out


def test_parity_judges_forecast_cells_by_regression_metrics(forecast_matrix):
    mx = forecast_matrix
    assert mx.heldout.head == "forecast"
    host = [r for r in mx.results if not r.cell.runtime.startswith(DEVICE_RUNTIMES)]
    bad = [f"{r.id}: {r.status} {'; '.join(r.failures)}" for r in host if r.status not in (PASS, SKIP)]
    assert not bad, bad
    ran = [r for r in host if r.status == PASS and r.cell.runtime != "golden"]
    pairs = {(r.cell.runtime, r.cell.precision) for r in ran}
    assert len(pairs) >= 8, sorted(pairs)
    for r in ran:
        assert "rel_err" in r.metrics and "top1_agreement" not in r.metrics, (r.id, sorted(r.metrics))
        if r.cell.inputs == "all":  # whole test split: the MSE on the true future frames is judged
            assert "target_mse_increase" in r.metrics, r.id
    # the int8 cells really are approximate (so the relative-error bound is what judges them)
    int8 = [r.metrics["rel_err"] for r in ran if r.cell.precision == "int8"]
    assert int8 and max(int8) > 1e-4


def test_parity_forecast_on_emulated_devices(forecast_matrix):
    dev = [r for r in forecast_matrix.results if r.cell.runtime.startswith(DEVICE_RUNTIMES)]
    if not dev or all(r.status == SKIP for r in dev):
        pytest.skip("no emulated device runtime here: " + "; ".join(f for r in dev for f in r.failures[:1]))
    for r in dev:
        if r.status == SKIP:
            continue
        if r.id in KNOWN_DEVICE_MISSES:
            # Measured here: KNOWN_DEVICE_MISSES[r.id]. Which x86 kernels LiteRT (XNNPACK) runs depends on
            # the CPU, so another machine may land 1-3 LSB away; whatever it is, the only miss allowed is
            # that cross-CPU LSB rule, and the regression metrics are judged as on every other cell.
            assert r.status in (PASS, FAIL) and all("LSB from" in f for f in r.failures), \
                f"{r.id} changed: {r.status} {r.failures} (update KNOWN_DEVICE_MISSES and docs/forecasting.md)"
            assert "rel_err" in r.metrics
            print(r.id, r.status, r.failures)
            continue
        assert r.status == PASS, f"{r.id}: {r.status} {'; '.join(r.failures)}"
        assert "rel_err" in r.metrics


def test_parity_fails_a_perturbed_forecast_artifact(forecast_artifacts, tmp_path):
    """The float ONNX head bias shifted by 1% of the output range (file re-hashed): the cell fails on relative error."""
    import onnx
    from onnx import numpy_helper

    from parity.matrix import run_matrix
    from runtime.manifest import Manifest, sha256_of
    src = forecast_artifacts[0]
    dst = tmp_path / "broken"
    shutil.copytree(src, dst)
    data = json.loads((dst / "manifest.json").read_text())
    data["checkpoint"]["file"] = str(Manifest.read(src).checkpoint_path().resolve())
    entry = next(a for a in data["artifacts"] if a["name"] == "onnx-float32")
    model = onnx.load(str(dst / entry["file"]))
    with np.load(dst / "golden.npz") as z:
        span = float(z["scores"].max() - z["scores"].min())
    for init in model.graph.initializer:
        if init.name == "head.bias":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.float32(0.01 * span), init.name))
            break
    else:
        raise AssertionError("no head.bias initializer in model.onnx")
    onnx.save(model, str(dst / entry["file"]))
    entry["sha256"] = sha256_of(dst / entry["file"])
    (dst / "manifest.json").write_text(json.dumps(data, indent=2))
    mx = run_matrix(dst, progress=False, only=["*-float32-onnxruntime", "*-float32-torch"],
                    providers=("parity.providers.onnxruntime", "parity.providers.torch"))
    r = mx.result("gru-float32-onnxruntime")
    assert r.status == FAIL and any("relative error" in f for f in r.failures), r.failures
    assert r.metrics["rel_err"] == pytest.approx(0.01, rel=0.2)
    assert mx.result("gru-float32-torch").status == PASS


def test_runtime_predict_prints_the_forecast_in_raw_units(forecast_artifacts, tmp_path, capsys):
    from runtime.__main__ import main
    folder = forecast_artifacts[0]
    with np.load(folder / "golden.npz") as z:
        x_raw, scores = z["x_raw"], z["scores"]
    np.savez(tmp_path / "in.npz", x_raw=x_raw)
    assert main(["predict", str(folder), "--input", str(tmp_path / "in.npz"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == len(x_raw)
    pre = json.loads((folder / "manifest.json").read_text())["preprocess"]
    want = scores[0].reshape(3, 3) * np.asarray(pre["std"]) + np.asarray(pre["mean"])
    np.testing.assert_allclose(np.asarray(lines[0]["forecast"]), want, atol=1e-4)


def test_runtime_sense_refuses_a_forecast_model(forecast_artifacts, tmp_path, capsys):
    from runtime.__main__ import main
    csv = tmp_path / "imu.csv"
    csv.write_text("1,2,3\n4,5,6\n")
    assert main(["sense", "--model", str(forecast_artifacts[0]), "--csv", str(csv)]) == 2
    assert "forecast model" in capsys.readouterr().err
