"""Training: reproducible, resumable, DDP-compatible checkpoints, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.errors import UserError
from training.checkpoint import load_model, load_train_state
from training.config import load_config
from training.trainer import pick_device, swa_lr_factor, train

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "training.train", *args, "--no-progress"],
                          cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def test_fixture_training_learns_and_writes_everything(fixture_run, arch):
    run = fixture_run(arch)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_acc"] >= 0.9, metrics["test_acc"]
    for name in ("model.safetensors", "train_state.pt", "curves.png", "confusion.png"):
        assert (run / name).stat().st_size > 0, name
    model, meta = load_model(run)
    assert model.spec.arch == arch and meta["class_names"] == ["c0", "c1", "c2", "c3"]
    assert len(meta["input_mean"]) == model.spec.input_size


def test_training_is_reproducible(tmp_path):
    outs = []
    for i in range(2):
        cfg = load_config("fixture", out=str(tmp_path / f"r{i}"), epochs=2)
        train(cfg, resume=False, progress=False)
        outs.append(load_model(tmp_path / f"r{i}")[0].state_dict())
    for k in outs[0]:
        assert torch.equal(outs[0][k], outs[1][k]), k


def test_resume_continues_from_the_saved_epoch(tmp_path):
    cfg = load_config("fixture", out=str(tmp_path), epochs=4, patience=99, max_minutes=1e-9)  # stops after 1 epoch
    train(cfg, resume=False, progress=False)
    assert load_train_state(tmp_path / "train_state.pt")["epoch"] == 0
    m = train(load_config("fixture", out=str(tmp_path), epochs=4, patience=99), resume=True, progress=False)
    assert [h["epoch"] for h in m["history"]] == [0, 1, 2, 3]
    assert load_train_state(tmp_path / "train_state.pt")["epoch"] == 3


def test_swa_lr_factor_anneals_then_holds():
    f = swa_lr_factor(swa_start=6, swa_factor=0.1)
    lrs = [f(e) for e in range(10)]
    assert lrs[0] == 1.0 and all(a > b for a, b in zip(lrs[:6], lrs[1:6])), lrs
    assert lrs[6:] == [0.1] * 4, lrs


def test_swa_checkpoint_is_the_average_and_resumes_exactly(tmp_path):
    kw = dict(epochs=4, swa=0.5, keep="last")
    train(load_config("fixture", out=str(tmp_path / "a"), **kw), resume=False, progress=False)
    st = load_train_state(tmp_path / "a" / "train_state.pt")
    assert int(st["averaged"]["n_averaged"]) == 2  # epochs 2 and 3
    saved = load_model(tmp_path / "a")[0].state_dict()
    for k, v in saved.items():
        assert torch.equal(v, st["averaged"][f"module.{k}"]), k
    assert any(not torch.equal(v, st["model"][k]) for k, v in saved.items())  # not the final epoch's weights
    # A tiny time budget stops every call after one epoch: four resumes, two inside the averaging.
    for _ in range(4):
        train(load_config("fixture", out=str(tmp_path / "b"), max_minutes=1e-9, **kw), progress=False)
    resumed = load_model(tmp_path / "b")[0].state_dict()
    for k, v in saved.items():
        assert torch.equal(v, resumed[k]), k
    with pytest.raises(UserError, match="weight averaging"):
        train(load_config("fixture", out=str(tmp_path / "b"), **{**kw, "swa": 0.25}), progress=False)


def test_resume_continues_the_random_draws_of_augmentation_and_dropout(tmp_path):
    kw = dict(epochs=3, augment="basic", dropout=0.2, keep="last")
    train(load_config("fixture", out=str(tmp_path / "a"), **kw), resume=False, progress=False)
    for _ in range(3):  # a tiny time budget stops every call after one epoch
        train(load_config("fixture", out=str(tmp_path / "b"), max_minutes=1e-9, **kw), progress=False)
    whole, resumed = (load_model(tmp_path / r)[0].state_dict() for r in "ab")
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k


def test_resume_with_incompatible_config_is_refused(tmp_path):
    train(load_config("fixture", out=str(tmp_path), epochs=1), resume=False, progress=False)
    r = run_cli("--task", "fixture", "--out", str(tmp_path), "--set", "hidden=8")
    assert r.returncode == 2
    assert r.stderr.startswith("error: cannot resume") and "Traceback" not in r.stderr


def test_resume_with_other_training_settings_is_refused(tmp_path):
    """Audit: resuming with other lr, epochs, seed... kept the saved optimizer and schedule but recorded the new
    values. Where and how fast a run goes (out, device, threads, max_minutes) may change."""
    train(load_config("fixture", out=str(tmp_path), epochs=2, max_minutes=1e-9), resume=False, progress=False)
    for change, shown in ((dict(lr=0.5), "lr 0.01 -> 0.5"), (dict(epochs=4), "epochs 2 -> 4"), (dict(seed=3), "seed 0 -> 3")):
        with pytest.raises(UserError, match=f"cannot resume .*{shown}.*--fresh") as e:
            train(load_config("fixture", out=str(tmp_path), **{"epochs": 2, **change}), progress=False)
        assert "\n" not in str(e.value)
    m = train(load_config("fixture", out=str(tmp_path), epochs=2, max_minutes=10, threads=1), progress=False)
    assert [h["epoch"] for h in m["history"]] == [0, 1]


def test_config_values_are_not_rounded_or_overridden(tmp_path):
    """Audit: a config file's epochs = 2.9 trained 2 epochs, lr = true gave 1.0, its task replaced --task;
    a negative seed or a thread count above the CPUs was accepted."""
    for text, match in (("epochs = 2.9", "epochs=2.9 is not a valid int"), ("lr = true", "lr=True is not a valid float"),
                        ("hidden = [8.7, 8]", "hidden=.* is not a valid tuple"), ('task = "kws"', "says task = 'kws'")):
        f = tmp_path / "c.toml"
        f.write_text(text + "\n")
        with pytest.raises(UserError, match=match):
            load_config("fixture", str(f))
    (tmp_path / "latin.toml").write_bytes(b"# caf\xe9\nepochs = 2\n")
    with pytest.raises(UserError, match="not UTF-8"):
        load_config("fixture", str(tmp_path / "latin.toml"))
    with pytest.raises(UserError, match="seed = -1 is out of range"):
        load_config("fixture", seed="-1")
    with pytest.raises(UserError, match="threads = 100000 is out of range"):
        load_config("fixture", threads="100000")
    assert load_config("fixture", epochs="3").epochs == 3 and load_config("fixture", hidden="8,8").hidden == (8, 8)


def test_resume_is_refused_before_the_data_is_loaded(tmp_path, monkeypatch):
    """Audit: `--task kws --out <a watch run>` synthesised speech for ~70 s before refusing."""
    import training.trainer as T
    train(load_config("fixture", out=str(tmp_path), epochs=1), resume=False, progress=False)

    def no_data(*a, **k):
        raise AssertionError("the data was loaded before the training state was checked")
    monkeypatch.setattr(T, "load_task", no_data)
    with pytest.raises(UserError, match="cannot resume"):
        train(load_config("fixture", out=str(tmp_path), epochs=1, hidden="8"), progress=False)


def test_cuda_code_path_selects_device():
    # The same selection runs on GPU machines; on CPU, 'auto' must fall back and 'cuda' must refuse.
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            pick_device("cuda")
    else:
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


def test_cuda_float32_is_ieee_not_tf32():
    # cuDNN's default TF32 moved GRU scores by 1.3e-2 between whole and streamed runs on an H200
    # (python -m training.cuda_smoke); pick_device("cuda") switches it off through this function.
    from training.trainer import full_fp32_on_cuda
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        full_fp32_on_cuda()
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_averaged_copy_flattened_for_cudnn_scores_like_the_model():
    # AveragedModel deep-copies the model; on a GPU the copy's RNN weights leave cuDNN's single buffer
    # (a warning and a copy on every call) until SequenceModel.flatten_parameters() puts them back, as
    # the trainer does. On the CPU the call is a no-op and this checks that it changes no score; where
    # a GPU exists it also checks that cuDNN no longer warns.
    import warnings
    from training.models import ModelSpec, SequenceModel
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for arch in ("gru", "lstm"):
        torch.manual_seed(0)
        model = SequenceModel(ModelSpec(arch, 6, (16, 16), 7)).to(device).eval()
        averaged = torch.optim.swa_utils.AveragedModel(model)
        averaged.module.flatten_parameters()
        x = torch.randn(4, 20, 6, device=device)
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            got, want = averaged.module(x), model(x)
        assert not [w for w in caught if "contiguous chunk" in str(w.message)]
        assert torch.equal(got, want)


def test_ddp_two_processes_produce_a_normal_checkpoint(tmp_path):
    out = tmp_path / "ddp"  # --procs 2: the data is loaded here, then torchrun starts 2 processes
    r = run_cli("--task", "fixture", "--arch", "gru", "--device", "cpu", "--procs", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["test_acc"] >= 0.8
    model, meta = load_model(out)  # loads exactly like a single-process checkpoint
    single, _ = load_model(train(load_config("fixture", out=str(tmp_path / "one"), epochs=1),
                                 resume=False, progress=False) and tmp_path / "one")
    assert model.state_dict().keys() == single.state_dict().keys()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 24, 3)).astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(model.stream(x)[:, -1], model(x), atol=1e-5)


def test_ddp_trains_with_target_replication(tmp_path):
    """Target replication reads every step's scores through the DDP wrapper (``every_step``), so two
    processes train with it (the watch LSTM's default) and give a normal checkpoint."""
    out = tmp_path / "ddp-tr"
    r = run_cli("--task", "fixture", "--arch", "lstm", "--device", "cpu", "--procs", "2", "--out", str(out),
                "--set", "target_replication=0.5")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["test_acc"] >= 0.8
    model, _ = load_model(out)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 24, 3)).astype(np.float32))
    with torch.no_grad():
        every = model(x, every_step=True)
        assert every.shape == (2, 24, model.spec.num_classes)
        assert torch.allclose(every[:, -1], model(x)) and torch.allclose(model.stream(x), every, atol=1e-5)


@pytest.mark.parametrize("args,expect", [
    (["--task", "no-such-task"], "unknown task"),
    (["--task", "fixture", "--set", "bogus=1"], "unknown config option"),
    (["--task", "fixture", "--set", "epochs=many"], "not a valid int"),
    (["--task", "fixture", "--set", "hidden=8,many"], "write integers such as 64,64"),
    (["--task", "fixture", "--set", "swa=0.25"], "needs keep = \"last\""),
    (["--task", "fixture", "--set", "keep=last", "--set", "swa=1"], "swa = 1.0 is out of range"),
    (["--task", "fixture", "--set", "data.bogus=1"], "unknown option(s) bogus for task fixture: valid options are"),
    (["--task", "fixture", "--set", "data.length=long"], "option length='long' of task fixture must be an integer"),
    (["--task", "fixture", "--set", "data.classes=4.5"], "must be an integer"),
    (["--task", "fixture", "--device", "cuda"], "cuda"),
    (["--task", "fixture", "--arch", "rnn"], "error: argument --arch: invalid choice: 'rnn' (choose from 'lstm', 'gru')"),
    (["--task", "fixture", "--epochs", "zero"], "error: argument --epochs: 'zero' is not a whole number"),
    (["--task", "fixture", "--procs", "two"], "error: argument --procs: 'two' is not a whole number"),
    (["--task", "fixture", "--procs", "0"], "--procs 0 is too small: pass 1 or more"),
    (["--task", "fixture", "--bogus"], "unrecognized arguments: --bogus: see python -m training.train --help"),
    (["--task", "/nonexistent/path"], "error: data path /nonexistent/path does not exist"),
    (["--task", "fixture", "--set", "data.length.x=1"], "option length={'x': 1} of task fixture must be an integer"),
    (["--task", "fixture", "--set", "subject_adversary=0.3"],
     "subject_adversary = 0.3 needs a classification task that records who made each training window (watch)"),
    (["--task", "fixture", "--set", "subject_adversary=-1"], "subject_adversary = -1.0 is out of range"),
    (["--task", "fixture", "--set", "target_replication=2"], "target_replication = 2.0 is out of range"),
    (["--task", "fixture", "--set", "augment=imu", "--set", "mirror=0.5"],  # (was basic only, silently, on 3 channels)
     'augment = "imu" turns the accelerometer and gyroscope triplets (channels 0-5) and needs 6 or more channels, but fixture has 3'),
])
def test_bad_training_input_is_one_line(args, expect, tmp_path):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present, so --device cuda is valid here")
    r = run_cli(*args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], r.stderr


def test_procs_checks_the_data_before_starting_torchrun(tmp_path):
    X = np.ones((6, 4, 2))
    X[0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=np.arange(6) % 2)
    r = run_cli("--task", str(tmp_path / "nan.npz"), "--procs", "2", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"error: {tmp_path / 'nan.npz'}: X contains NaN or infinite values: "
                                "drop or fill those examples before saving"), r.stderr


def test_a_short_run_that_averages_no_epoch_says_so(tmp_path, capsys):
    """Audit: swa = 0.04 of 10 epochs rounded to no averaged epoch and trained without averaging, silently
    (a short run of the watch recipe, swa = 0.25 of 2 epochs, too): one warning line, and the run trains."""
    assert load_config("fixture", keep="last", epochs=10, swa=0.06).swa_start() == 9
    m = train(load_config("fixture", keep="last", epochs=1, swa=0.5, out=str(tmp_path / "r")), progress=False)
    assert m["epochs_run"] == 1
    assert ("warning: swa = 0.5 of 1 epochs averages no epoch: training without weight averaging (swa = 0.51 or "
            "more averages one; swa = 0 turns it off)") in capsys.readouterr().err.splitlines()


def test_set_reaches_a_table_inside_data():
    cfg = load_config("fixture", **{"data.features.hop": "160", "data.features.win": "320"})
    assert cfg.data["features"] == {"hop": 160, "win": 320}
    with pytest.raises(UserError, match="config option data.features is not a table, so data.features.hop cannot be set"):
        load_config("fixture", **{"data.features": "3", "data.features.hop": "160"})


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_checkpoint_is_a_clear_error(fixture_run, tmp_path, damage):
    data = (fixture_run("gru") / "model.safetensors").read_bytes()
    bad = tmp_path / "model.safetensors"
    bad.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage])
    with pytest.raises(UserError, match="corrupted or truncated"):
        load_model(bad)


def test_corrupted_train_state_is_a_clear_error(tmp_path):
    (tmp_path / "train_state.pt").write_bytes(b"not a zip")
    r = run_cli("--task", "fixture", "--out", str(tmp_path))
    assert r.returncode == 2 and "corrupted or truncated" in r.stderr and "Traceback" not in r.stderr


def test_train_state_refuses_pickled_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    path = tmp_path / "train_state.pt"
    torch.save({"x": Evil()}, path, pickle_module=pickle)
    with pytest.raises(UserError):
        load_train_state(path)


def test_unwritable_run_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permission bits; use a path under a file instead
            target = tmp_path / "file"
            target.write_text("x")
            out = target / "sub"
        else:
            out = ro / "sub"
        r = run_cli("--task", "fixture", "--out", str(out))
        assert r.returncode == 2 and r.stderr.startswith("error: cannot write to run folder"), r.stderr
    finally:
        ro.chmod(0o700)


def test_keep_last_trains_the_whole_budget_and_saves_the_final_epoch(tmp_path):
    # patience 1 would stop a "best" run early; "last" runs every epoch and keeps the final weights
    m = train(load_config("fixture", out=str(tmp_path), epochs=4, patience=1, keep="last"),
              resume=False, progress=False)
    assert m["epochs_run"] == 4 and m["best_epoch"] == 3, (m["epochs_run"], m["best_epoch"])
    saved, meta = load_model(tmp_path)
    assert meta["epoch"] == 3
    state = load_train_state(tmp_path / "train_state.pt")["model"]
    for k, v in saved.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_training_bench_trains_what_the_config_says(tmp_path):
    """The benchmark must train the default recipe: its config's [data] options reach the loader
    (it once loaded the data without them, so watch ran without val_in_train)."""
    from training.bench import bench_one
    row = bench_one("fixture", "gru", str(tmp_path), epochs=1, data={"n_train": 64})
    assert row["train_examples"] == 64 and row["epochs"] == 1 and row["sequences_per_s"] > 0


def test_data_options_are_checked_against_their_defaults():
    from training.data.base import check_option
    assert check_option("t", "w", 4, 2.0) == 4.0 and isinstance(check_option("t", "w", 4, 2.0), float)
    assert check_option("t", "s", [1, 3], (2, 7)) == (1, 3)
    assert check_option("t", "b", True, False) is True
    for value, default in [("flase", False), (1, False), (True, 3), ("2", 2.0), ([1, "x"], (2, 7)), (5, (2, 7)), (3, "full")]:
        with pytest.raises(UserError, match="must be"):
            check_option("task t", "opt", value, default)


def test_hidden_sizes_read_as_toml_lists_too():
    assert load_config("fixture", hidden="[8, 8]").hidden == (8, 8)
    assert load_config("fixture", hidden="16x16").hidden == (16, 16)


def test_cuda_smoke_script_runs_its_steps_on_cpu(tmp_path):
    # The GPU check (python -m training.cuda_smoke, run on an H200, docs/training.md) with --device cpu:
    # the same steps, so the script itself cannot rot between GPU sessions.
    r = subprocess.run([sys.executable, "-m", "training.cuda_smoke", "--device", "cpu", "--epochs", "1",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failures"] == []
    for arch in ("gru", "lstm"):
        assert summary[f"train-{arch}"]["epochs"] == 1 and summary[f"train-{arch}"]["device"] == "cpu"
        assert summary[f"check-{arch}"]["stream_vs_whole"] <= 1e-5
        assert summary[f"train-{arch}"]["cudnn_weight_copy_warnings"] == 0
    assert summary["resume"]["killed_exit"] == -9 and summary["resume"]["resume_line"].startswith("resuming")
    assert summary["resume"]["max_weight_diff_vs_straight_run"] == 0.0  # CPU training is deterministic
    assert summary["ddp"]["world_size"] == 1


def test_a_forecast_run_keeps_its_first_epoch_whatever_its_mse(tmp_path):
    """Audit: the best score started at -1, so a forecast whose validation MSE stayed above 1 saved
    nothing, and in a reused folder the older run's model was reported as this one's."""
    slow = dict(epochs=1, lr=1e-7, augment="none", keep="best")
    train(load_config("fixture-forecast", out=str(tmp_path), epochs=2, augment="none"), resume=False, progress=False)
    m = train(load_config("fixture-forecast", out=str(tmp_path), seed=1, **slow), resume=False, progress=False)
    assert m["best_epoch"] == 0 and m["best_val_mse"] == m["history"][0]["val_mse"]
    saved = load_model(tmp_path)[1]["config"]
    assert saved["seed"] == 1 and saved["lr"] == 1e-7  # this run's model, not the first run's


def test_a_diverging_run_stops_with_one_line_and_keeps_the_epoch_before(tmp_path):
    """Audit: lr = inf passed the range check and a model of NaN weights was saved as a success."""
    with pytest.raises(UserError, match="not a finite number"):
        load_config("fixture", lr="inf")
    with pytest.raises(UserError, match="not a finite number"):
        load_config("fixture", weight_decay="inf")
    with pytest.raises(UserError, match=r"data.window_s=inf is not a finite number"):
        load_config("watch", **{"data.window_s": "inf"})
    cfg = load_config("fixture", out=str(tmp_path), epochs=3, lr=1e30, keep="last")
    with pytest.raises(UserError, match=r"training diverged at epoch \d: the (training|validation) loss is (nan|inf)"):
        train(cfg, resume=False, progress=False)
    if (tmp_path / "model.safetensors").exists():  # what an earlier epoch left is finite
        assert all(torch.isfinite(v).all() for v in load_model(tmp_path)[0].state_dict().values())


def test_running_an_early_stopped_run_again_reports_it_unchanged(tmp_path):
    """Audit: each rerun of a run that had stopped early trained one epoch more (other weights each time)."""
    kw = dict(out=str(tmp_path), epochs=50, patience=1, lr=0.05, keep="best")
    first = train(load_config("fixture", **kw), resume=False, progress=False)
    assert first["stop_reason"].startswith("early stop") and first["epochs_run"] < 50
    weights = (tmp_path / "model.safetensors").read_bytes()
    again = train(load_config("fixture", **kw), progress=False)
    assert again["epochs_run"] == first["epochs_run"] and again["stop_reason"] == first["stop_reason"]
    assert (tmp_path / "model.safetensors").read_bytes() == weights


def test_a_data_path_written_another_way_resumes(tmp_path, monkeypatch):
    """Audit: the same .npz named by a relative and then an absolute path was refused as another task."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez("d.npz", X=rng.normal(size=(60, 8, 3)).astype(np.float32), y=np.arange(60) % 3)
    train(load_config("d.npz", out="run", epochs=2, max_minutes=1e-9), resume=False, progress=False)
    m = train(load_config(str(tmp_path / "d.npz"), out="run", epochs=2), progress=False)
    assert m["epochs_run"] == 2


def test_set_task_and_a_huge_seed_get_one_line(tmp_path):
    r = run_cli("--task", "fixture", "--out", str(tmp_path), "--set", "task=kws")
    assert r.returncode == 2 and r.stderr.startswith("error: --set task=kws cannot choose the task: pass it as --task kws")
    r = run_cli("--task", "fixture", "--out", str(tmp_path), "--set", f"seed={2 ** 64}")
    assert r.returncode == 2 and "seed = 18446744073709551616 is out of range" in r.stderr and "Traceback" not in r.stderr


def test_ddp_launch_refuses_what_its_processes_would_refuse_with_one_line(tmp_path):
    """Audit: with --procs 2 only the device and the data were checked first; a resume with another
    hidden size, a run folder that is a file, or an error inside the processes ended in torchrun's traceback."""
    train(load_config("fixture", out=str(tmp_path / "r"), epochs=1), resume=False, progress=False)
    (tmp_path / "afile").write_text("")
    for args, message in ((["--out", str(tmp_path / "r"), "--set", "hidden=8"], "error: cannot resume"),
                          (["--out", str(tmp_path / "afile")], "error: cannot write to run folder"),
                          (["--out", str(tmp_path / "s"), "--set", "subject_adversary=0.3"],  # refused in the processes
                           "error: subject_adversary = 0.3 needs")):
        r = run_cli("--task", "fixture", "--device", "cpu", "--procs", "2", *args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().startswith(message) and len(r.stderr.strip().splitlines()) == 1, r.stderr


def run_bounded(cmd, log: Path, timeout: float = 90):
    """``cmd``, stopped with SIGTERM (on which torchrun stops its workers) when it runs past ``timeout``
    (a hung DDP run): returns its exit code, or None when it hung, and its stderr."""
    with open(log, "w+") as err:
        p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait(60)
            rc = None
        err.seek(0)
        return rc, err.read()


def test_every_rank_gets_the_same_number_of_windows():
    from training.trainer import Dist, rank_shard
    order = np.arange(10)
    assert np.array_equal(rank_shard(order, Dist()), order)  # one process: the whole epoch, unpadded
    for n in (1, 383, 384, 385, 386):
        for world in (2, 3, 4):
            shards = [rank_shard(np.arange(n), Dist(rank, world)) for rank in range(world)]
            assert {len(s) for s in shards} == {-(-n // world)}, (n, world)
            assert set(np.concatenate(shards)) == set(range(n))


def test_ddp_trains_when_the_windows_do_not_split_evenly_over_the_ranks(tmp_path):
    """Audit: 385 training windows over 2 processes gave rank 0 four batches of 64 and rank 1 three: DDP hung."""
    rc, err = run_bounded([sys.executable, "-m", "training.train", "--task", "fixture", "--device", "cpu", "--procs", "2",
                           "--out", str(tmp_path / "o"), "--set", "epochs=2", "--set", "data.n_train=385", "--no-progress"],
                          tmp_path / "log")
    assert rc == 0, err[-2000:]


def test_ddp_ranks_stop_for_the_time_budget_after_the_same_epoch(tmp_path):
    """Audit: each rank read its own clock, and rank 0 writes the training state before reading it: a slow
    disk let rank 1 start one more epoch while rank 0 had stopped, and both waited forever. Here rank 0
    takes 3 s to save each epoch and the budget (1.5 s) runs out between the two ranks' clock readings."""
    script = tmp_path / "slow_rank0.py"
    script.write_text("import sys, time\n"
                      "import training.trainer as T\n"
                      "save = T.save_train_state\n"
                      "T.save_train_state = lambda path, state: (time.sleep(3.0), save(path, state))\n"
                      "from training.train import main\n"
                      "sys.exit(main())\n")
    rc, err = run_bounded([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), "--task", "fixture", "--device", "cpu", "--out", str(tmp_path / "o"),
                           "--set", "epochs=40", "--set", "max_minutes=0.025", "--no-progress"], tmp_path / "log")
    assert rc == 0, err[-2000:]
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["stop_reason"].startswith("time budget")


@pytest.mark.parametrize("limit_kb, file", [(16, "train_state.pt"), (4, "model.safetensors")])
def test_a_full_disk_while_saving_is_one_line_and_keeps_the_epoch_before(tmp_path, limit_kb, file):
    """Audit: a full disk (here the file-size limit, EFBIG) while writing the checkpoint or the training
    state was a RuntimeError / SafetensorError traceback."""
    import resource
    out = tmp_path / "o"
    train(load_config("fixture", out=str(out), epochs=2, keep="last", max_minutes=1e-9), resume=False, progress=False)
    before = {f: (out / f).read_bytes() for f in ("model.safetensors", "train_state.pt")}  # (of epoch 0)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kb * 1024, limit_kb * 1024))
    r = subprocess.run([sys.executable, "-m", "training.train", "--task", "fixture", "--out", str(out), "--no-progress",
                        "--set", "epochs=2", "--set", "keep=last"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300, preexec_fn=limit)
    assert r.returncode == 2 and r.stderr.strip() == (f"error: cannot write {out / file}: File too large; free space or "
                                                      f"choose another --out (the run folder keeps the files of the epoch before)"), r.stderr
    assert (out / file).read_bytes() == before[file]  # the file it could not write is the previous epoch's
    assert load_train_state(out / "train_state.pt")["epoch"] == 0
