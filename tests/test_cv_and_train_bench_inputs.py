"""Bad input to training.cv and training.bench (invoke cv / train-bench) is one `error:` line, found
before any model trains; a --fold run does not overwrite the all-folds report."""

from __future__ import annotations

import json

import pytest

from runtime.errors import UserError
import training.bench as bench
import training.cv as cv


def no_training(*a, **k):
    raise AssertionError("trained before the input was checked")


@pytest.fixture
def untrained(monkeypatch):
    import training.trainer
    monkeypatch.setattr(training.trainer, "train", no_training)
    monkeypatch.setattr(bench, "bench_one", no_training)


@pytest.mark.parametrize("argv, err", [
    (["--set", "arch=lstm"], "--set arch=...: cv sets arch itself; use --arch"),
    (["--set", "out=x"], "--set out=...: cv sets out itself; use --runs for the fold runs"),
    (["--set", "task=kws"], "--set task=...: cv sets task itself; cross-validation runs on watch only"),
    (["--set", "data.test_subjects=[1]"], "--set data.test_subjects=...: cv sets data.test_subjects itself; the folds choose them"),
    (["--folds", "-2"], "--folds -2: choose 2 to 10 (there are 10 subjects)"),
    (["--folds", "0"], "--folds 0: choose 2 to 10 (there are 10 subjects)"),
    (["--folds", "1"], "--folds 1: choose 2 to 10 (there are 10 subjects)"),
    (["--folds", "20"], "--folds 20: choose 2 to 10 (there are 10 subjects)"),
    (["--dev", "--folds", "9"], "--folds 9: choose 2 to 8 (there are 8 subjects outside the test split)"),
    (["--out", "/proc/cv.json"], "cannot write --out /proc/cv.json: No such file or directory in /proc; choose a writable folder"),
    (["--jsonl", "/proc/x.jsonl", "--recipe", "r"],
     "cannot write --jsonl /proc/x.jsonl: No such file or directory in /proc; choose a writable folder"),
])
def test_cv_input_errors_are_one_line_before_training(untrained, capsys, argv, err):
    assert cv.main(["--fold", "0"] + argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {err}"


def test_cv_out_that_is_a_folder_is_refused(untrained, tmp_path, capsys):
    assert cv.main(["--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {tmp_path} is a folder: give a file path"


def test_cv_fold_run_writes_no_default_report_and_a_failed_write_is_one_line(tmp_path, monkeypatch, capsys):
    written = []
    monkeypatch.setattr(cv, "write_json", lambda path, obj: written.append(path))
    tiny = ["--dev", "--fold", "0", "--set", "epochs=1", "--set", "hidden=8", "--set", "swa=0",
            "--runs", str(tmp_path / "runs")]
    jsonl = tmp_path / "rows.jsonl"
    assert cv.main(tiny + ["--jsonl", str(jsonl), "--recipe", "r"]) == 0
    assert written == []  # not docs/benchmarks/watch-dev-gru.json: a one-fold summary would overwrite it
    assert "folds [0] of 4 test accuracy" in capsys.readouterr().out
    assert json.loads(jsonl.read_text())["fold"] == 0

    def refuse(path, obj):
        raise UserError(f"cannot write {path}: disk full; choose a writable folder")
    monkeypatch.setattr(cv, "write_json", refuse)
    out = tmp_path / "cv.json"
    assert cv.main(tiny + ["--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: cannot write {out}: disk full; choose a writable folder"


@pytest.mark.parametrize("argv, err", [
    (["--tasks", "fixture", "--archs", "gru,lsmt"], "--archs: unknown arch 'lsmt': use gru or lstm"),
    (["--tasks", ","], "--tasks ',' has an empty name: give comma-separated names without empty entries"),
    (["--tasks", "fixture", "--archs", "gru,"], "--archs 'gru,' has an empty name: give comma-separated names without empty entries"),
    (["--tasks", "fixture,wach"], "--tasks: unknown task 'wach': use one of watch, kws, fixture, watch-forecast, "
                                  "fixture-forecast, watch-frames, fixture-frames, or the path of a data folder or .npz file"),
    (["--tasks", "fixture", "--out", "/tmp/report.md"],
     "--out /tmp/report.md: the markdown table is written beside the JSON as .md; give a .json path"),
    (["--tasks", "fixture", "--out", "/proc/t.json"], "cannot write --out /proc/t.json: No such file or directory in /proc; choose a writable folder"),
])
def test_train_bench_input_errors_are_one_line_before_training(untrained, capsys, argv, err):
    assert bench.main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {err}"


def test_train_bench_reports_the_mse_of_a_forecast_run(tmp_path):
    """A forecast run has no accuracy: its row carries the test MSE and no time to target."""
    row = bench.bench_one("fixture-forecast", "gru", str(tmp_path), epochs=1)
    assert row["test_acc"] is None and row["target_acc"] is None and row["seconds_to_target"] is None
    assert row["test_mse"] >= 0 and bench.result_text(row).startswith("test mse ")
    table = bench.markdown_table([row], {"platform": "p", "cpu_count": 2, "torch": "t", "load_avg_at_end": 0.0})
    assert "| no accuracy (forecast) | mse " in table
