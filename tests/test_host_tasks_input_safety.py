"""The host-side tasks (bench, parity, cuda-smoke, fuzz, the emulated Pi's cache, invoke's defaults) on bad
input: one `error:` line found before any long work, nothing left behind, default paths in the repository.

Every test here replaces the long work (benchmarks, training, the parity matrix, building a Pi root) with a
function that fails the test if it is reached.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from invoke import Context, Exit

from runtime.errors import UserError
from runtime.manifest import FORMAT

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules.setdefault(name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


tasks = _load("tasks", ROOT / "tasks.py")


def never(*a, **k):
    raise AssertionError("long work started before the input was checked")


@pytest.fixture
def folder(tmp_path):
    """An artifact folder as far as the input checks look (a valid manifest, no files)."""
    d = tmp_path / "artifacts"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"format": FORMAT, "artifacts": [], "model": {"arch": "gru"}}))
    return d


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep me")
    return f


@pytest.fixture
def no_smoke_steps(monkeypatch):
    """cuda_smoke's steps (it reports a failed step and goes on to the next, so each must be replaced)."""
    import training.cuda_smoke as smoke
    for step in ("train_watch", "stream_vs_whole_and_cpu", "resume_after_kill", "torchrun_one_process"):
        monkeypatch.setattr(smoke, step, never)
    return smoke


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# -- 1. --out checked before the run ------------------------------------------------------------

@pytest.mark.parametrize("out", ["/dev/null/x", "afile/x"])
def test_bench_checks_out_before_benchmarking(folder, a_file, monkeypatch, capsys, out):
    import bench.runtimes
    from bench.__main__ import main
    monkeypatch.setattr(bench.runtimes, "bench_folder", never)
    out = out.replace("afile", str(a_file))
    assert main(["--quick", "--only", "runtimes", "--artifacts", str(folder), "--out", out, "--no-progress"]) == 2
    assert f"cannot write --out {out}/bench.json" in one_error_line(capsys)
    assert a_file.read_text() == "keep me"


def test_parity_checks_out_before_the_matrix(folder, a_file, monkeypatch, capsys):
    import parity.matrix
    from parity.__main__ import main
    monkeypatch.setattr(parity.matrix, "run_matrix", never)
    assert main([str(folder), "--golden-only", "--quiet", "--out", str(a_file / "x")]) == 2
    assert f"cannot write --out {a_file}/x/parity.json" in one_error_line(capsys)


# -- 2. one line instead of a traceback ---------------------------------------------------------

def test_bench_with_no_artifact_folder_is_one_line(monkeypatch, capsys):
    import bench.training
    from bench.__main__ import main
    monkeypatch.setattr(bench.training, "bench_training", never)
    assert main(["--artifacts", ",", "--only", "training", "--no-progress"]) == 2  # was IndexError at mans[0]
    assert "--artifacts names no folder" in one_error_line(capsys)


@pytest.mark.parametrize("out", ["/dev/null/x", "afile"])
def test_cuda_smoke_out_is_one_line(a_file, no_smoke_steps, capsys, out):
    out = out.replace("afile", str(a_file))
    assert no_smoke_steps.main(["--device", "cpu", "--out", out]) == 2  # was NotADirectoryError / FileExistsError
    assert f"cannot write --out {out}/summary.json" in one_error_line(capsys)


def test_fuzz_workdir_that_is_a_file_is_one_line(a_file, capsys, monkeypatch):
    c_fuzz = _load("c_fuzz", ROOT / "tests" / "fuzz" / "c_fuzz.py")
    monkeypatch.setattr(c_fuzz, "fuzz_random_models", never)  # (restored after: the fuzz tests use the module)
    assert c_fuzz.main(["--seconds", "1", "--models", "1", "--workdir", str(a_file)]) == 2  # was NotADirectoryError
    assert f"cannot use --workdir {a_file}" in one_error_line(capsys)


@pytest.mark.parametrize("cache", ["/dev/null/x", "afile"])
def test_pi_emulator_cache_that_cannot_be_made_is_one_line(a_file, monkeypatch, cache):
    """invoke pi-emulator (ensure_root) with an unusable RNN_EDGE_CACHE."""
    from devices.rpi import emulated_root
    monkeypatch.setenv("RNN_EDGE_CACHE", cache.replace("afile", str(a_file)))
    monkeypatch.setattr(emulated_root, "build_root", never)
    with pytest.raises(UserError, match="RNN_EDGE_CACHE"):  # was NotADirectoryError / FileExistsError
        emulated_root.ensure_root(progress=False)


@pytest.mark.parametrize("cache", ["/dev/null/x", "afile"])
def test_pi_parity_cache_that_cannot_be_made_is_one_line(folder, a_file, monkeypatch, cache):
    """invoke pi-parity (PiScores) with an unusable RNN_EDGE_CACHE."""
    from devices.rpi import parity as rpi_parity
    monkeypatch.setenv("RNN_EDGE_CACHE", cache.replace("afile", str(a_file)))
    monkeypatch.setattr(rpi_parity, "emulated_pi", never)
    with pytest.raises(UserError, match="RNN_EDGE_CACHE"):  # was NotADirectoryError
        rpi_parity.PiScores(folder)


# -- 3. cuda-smoke --epochs ----------------------------------------------------------------------

@pytest.mark.parametrize("epochs", ["0", "-3", "x"])
def test_cuda_smoke_task_checks_epochs_first(tmp_path, monkeypatch, epochs):
    import training.cuda_smoke as smoke
    monkeypatch.setattr(smoke, "main", never)
    with pytest.raises(Exit) as e:  # --epochs 0 silently trained the recipe's 60 epochs
        tasks.cuda_smoke(Context(), device="cpu", epochs=epochs, out=str(tmp_path / "o"))
    assert e.value.code == 2 and e.value.message.startswith("error: --epochs")


@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_cuda_smoke_module_checks_epochs_first(tmp_path, no_smoke_steps, capsys, epochs):
    assert no_smoke_steps.main(["--device", "cpu", "--epochs", epochs, "--out", str(tmp_path / "o")]) == 2
    assert f"--epochs {epochs} is too small" in one_error_line(capsys)
    assert not (tmp_path / "o").exists()


# -- 4. parity on the golden rows only: decisions judged as a sample ----------------------------

# gru-int8-litert-stream on the committed watch-gru export, --golden-only: one of 8 rows disagrees
LITERT_STREAM = {"max_abs_err": 0.742, "ref_peak": 10.6, "rel_err": 0.014, "top1_agreement": 0.875, "finite": True,
                 "sample_accuracy_drop": 0.0, "stream_max_abs_err": 1.24, "stream_ref_peak": 10.65,
                 "stream_top1_agreement": 0.97, "stream_vs_whole": {"max_abs_diff": 0.59, "top1_agreement": 0.875,
                                                                    "against": "gru-int8-litert"}}


def test_golden_only_int8_cell_is_judged_as_a_sample():
    from parity.judge import judge
    assert judge("int8", dict(LITERT_STREAM, golden_decisions=8)) == []  # 1 of 8: within the 2 allowed
    three = dict(LITERT_STREAM, golden_decisions=8, top1_agreement=5 / 8)
    assert judge("int8", three) == ["top-1 differs in 3 of 8 golden decisions (at most 2 fit the 95% agreement of int8)"]


def test_cells_on_the_test_split_or_its_sample_keep_the_share_rule():
    from parity.judge import judge
    bad = judge("int8", LITERT_STREAM)  # the same figures on 128 rows or the whole split: still failed
    assert bad == ["top-1 agreement 87.50% < 95.00%",
                   "streaming vs whole-sequence gru-int8-litert top-1 agreement 87.50% < 95.00%"]
    assert judge("float32", {"top1_agreement": 7 / 8, "golden_decisions": 8})  # exact precisions allow none


def _held(golden: int, test: int):
    from parity.inputs import HeldOut
    n, rng = golden + test, np.random.default_rng(0)
    ref = rng.normal(size=(n, 3)).astype(np.float32)
    return HeldOut(x_raw=np.zeros((n, 4, 2), np.float32), y=ref.argmax(1), reference=ref, golden_rows=golden,
                   golden_scores=ref[:golden], golden_stream=None, reference_stream=np.zeros((n, 4, 3), np.float32),
                   sample_rows=n, sources={"golden": golden, "test": test, "sample": n, "test_note": ""})


@pytest.mark.parametrize("golden, test, inputs, sampled", [(8, 0, "all", True), (8, 0, "sample", True),
                                                            (8, 20, "all", False), (8, 20, "sample", False),
                                                            (8, 20, "golden", True)])
def test_only_cells_on_the_golden_rows_count_their_decisions(golden, test, inputs, sampled):
    from parity.cells import Cell, Outputs
    from parity.matrix import _metrics
    held = _held(golden, test)
    cell = Cell("gru-int8-x", "gru", "x", "int8", "whole", "test", inputs=inputs)
    m, _ = _metrics(held, cell, Outputs(held.reference[held.rows(inputs)]))
    assert m.get("golden_decisions") == (golden if sampled else None)


def test_the_report_says_what_golden_only_judges():
    from types import SimpleNamespace
    from parity.report import golden_only_note
    mx = SimpleNamespace(heldout=_held(8, 0))
    assert "judged as a sample" in golden_only_note(mx) and "int8: 2 of 8" in golden_only_note(mx)
    assert golden_only_note(SimpleNamespace(heldout=_held(8, 20))) is None


# -- 5. default paths are the repository's, typed paths the current folder's ---------------------

class Recorder(Context):
    def __init__(self):
        super().__init__()
        self.commands = []

    def run(self, command, **kwargs):
        self.commands.append(command)


@pytest.mark.parametrize("task", ["test", "reliability"])
def test_pytest_tasks_run_from_the_repository(tmp_path, monkeypatch, task):
    monkeypatch.chdir(tmp_path)  # (`cd docs && invoke test` collected 0 tests)
    c = Recorder()
    getattr(tasks, task)(c)
    assert c.commands[0].startswith(f"cd {shlex.quote(str(ROOT))} && ")


def test_defaults_resolve_in_the_repository_typed_paths_in_the_current_folder(tmp_path, monkeypatch):
    import training.subjects
    seen = []
    monkeypatch.setattr(training.subjects, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.chdir(tmp_path)
    tasks.subjects(Context())
    tasks.subjects(Context(), run="runs/mine")
    assert seen == [[str(ROOT / "runs" / "watch-gru")], ["runs/mine"]]
    monkeypatch.chdir(ROOT)  # from the repository itself, as written (reports record the command)
    assert tasks._repo("artifacts/watch-gru") == "artifacts/watch-gru"


@pytest.mark.parametrize("name, module, kwargs, expected", [
    ("train", "training.train", {"task": "watch", "config": "my.toml", "out": "run", "set_": ["out=other", "seed=1"]},
     ["--task", "watch", "--config", "{here}/my.toml", "--out", "{here}/run", "--set", "out={here}/other", "--set", "seed=1"]),
    ("train", "training.train", {"task": "mine.npz"}, ["--task", "{here}/mine.npz"]),
    ("export", "export.cli", {"checkpoint": "runs/x", "out": "/abs/art", "keras": "m.keras"},
     ["--checkpoint", "{here}/runs/x", "--out", "/abs/art", "--keras", "{here}/m.keras"]),
    ("export", "export.cli", {"task": "kws"}, ["--task", "kws"]),
    ("cv", "training.cv", {"jsonl": "rows.jsonl", "recipe": "r", "out": "cv.json"},
     ["--arch", "gru", "--jsonl", "{here}/rows.jsonl", "--recipe", "r", "--out", "{here}/cv.json"]),
])
def test_train_export_cv_keep_their_defaults_in_the_repository(tmp_path, monkeypatch, capsys, name, module, kwargs, expected):
    """From a subfolder, `invoke train` resumes and writes the repository's runs/<task>-<arch> (and reads
    its .cache), `export` its artifacts/, `cv` its docs/benchmarks/: their modules run from the repository,
    with the paths the user typed made absolute against the folder they were typed in."""
    import importlib
    mod = importlib.import_module(module)
    seen = []
    monkeypatch.setattr(mod, "main", lambda argv: seen.append((list(argv), Path.cwd())) or 0)
    here = tmp_path / "sub"
    here.mkdir()
    monkeypatch.chdir(here)
    getattr(tasks, name)(Context(), **kwargs)
    (argv, cwd), = seen
    wanted = [a.replace("{here}", str(here)) for a in expected]
    assert cwd == ROOT and Path.cwd() == here  # run from the repository, then back
    assert [a for a in argv if a in wanted or a.startswith("--")] == argv and all(w in argv for w in wanted)
    assert "paths above are relative to the repository" in capsys.readouterr().err
    assert list(here.iterdir()) == []
    monkeypatch.chdir(ROOT)  # from the repository itself: the command as typed, nothing moved
    seen.clear()
    getattr(tasks, name)(Context(), **kwargs)
    (argv, cwd), = seen
    assert cwd == ROOT and all(a.replace("{here}/", "") in argv for a in expected if "{here}" in a)
    assert "relative to the repository" not in capsys.readouterr().err


def test_an_error_from_a_subfolder_stays_the_only_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exit) as e:
        tasks.cv(Context(), folds="1")
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["error: --folds 1: choose 2 to 10 (there are 10 subjects)"]


def test_train_from_a_subfolder_writes_a_typed_out_where_it_was_typed(tmp_path, monkeypatch):
    """A real (fixture) training run through the task from another folder: the typed --out lands there."""
    monkeypatch.chdir(tmp_path)
    tasks.train(Context(), task="fixture", out="run", epochs="1")
    assert (tmp_path / "run" / "model.safetensors").is_file() and not (ROOT / "run").exists()


def test_parity_task_finds_the_default_folders_in_the_repository(tmp_path, monkeypatch):
    import parity.__main__ as pm
    calls = []
    monkeypatch.setattr(pm, "main", lambda argv: calls.append(("parity", argv)) or 0)
    monkeypatch.setattr(pm, "_export_default", lambda *a: calls.append(("export", a)) or 0)
    monkeypatch.chdir(tmp_path)
    tasks.parity(Context(), golden_only=True, skip_devices=True)
    *exports, (_, argv) = calls
    assert argv == [str(ROOT / "artifacts" / "watch-gru"), str(ROOT / "artifacts" / "watch-lstm"),
                    "--out", str(ROOT / "docs" / "parity"), "--golden-only", "--skip-devices"]
    for _, (task, arch, folder, run) in exports:  # a missing export is made in the repository, not here
        assert (folder, run) == (ROOT / "artifacts" / f"watch-{arch}", ROOT / "runs" / f"watch-{arch}")
    assert list(tmp_path.iterdir()) == []


# -- 6. a rejected --task leaves nothing ---------------------------------------------------------

def test_parity_unknown_task_is_refused_before_any_folder_is_made(tmp_path, monkeypatch):
    import parity.__main__ as pm
    monkeypatch.setattr(pm, "_export_default", never)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exit) as e:
        tasks.parity(Context(), task="bogus2", arch="gru")
    assert e.value.code == 2 and e.value.message.startswith("error: unknown task 'bogus2'")
    assert list(tmp_path.iterdir()) == [] and not (ROOT / "runs" / "bogus2-gru").exists()


@pytest.mark.parametrize("task, needed", [("deploy", "--host"), ("listen", "--wav"), ("compare", "--jsonl and --baseline")])
def test_help_of_a_task_with_required_options_is_its_help(task, needed):
    """Audit: `invoke deploy --help` ran the deploy with host="--help" (a positional argument takes it)."""
    invoke = [sys.executable, "-m", "invoke", "-r", str(ROOT)]
    shown = subprocess.run(invoke + [task, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "Docstring:" in shown.stdout, shown.stdout + shown.stderr
    missing = subprocess.run(invoke + [task], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.strip().startswith(f"error: pass {needed}"), missing.stderr
