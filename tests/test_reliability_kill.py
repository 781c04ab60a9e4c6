"""Reliability: training and export killed with SIGKILL (docs/reliability.md).

Two kinds of moments, all seeded and bounded in time:
- random wall-clock moments within the run (``SIGKILL`` from outside);
- the worst moments, injected inside the child: at the k-th file rename of an atomic write, just
  before it (the new content is complete under a temporary name) or just after it, and for export
  around the folder swap.

After every kill, what a reader would open is either absent or complete (checkpoint, training
state, metrics, manifest, every artifact file by its sha256); leftovers only ever carry hidden
temporary names. Then resuming (training) or exporting again must succeed, and a resumed training
run must end with exactly the weights of an uninterrupted one (CPU training here is deterministic).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
EPOCHS = 6
SEEDS = (1, 2, 3)

# Run a module's main() with SIGKILL injected at the k-th os.replace (before or after it), or when
# a named function is entered/left. The kill is the process's own: nothing gets to clean up.
HOOK = r"""
import os, signal, sys, importlib, json
spec = json.loads(sys.argv[1])
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if spec.get("replace_k"):
    real, n = os.replace, [0]
    def replace(a, b, *args, **kw):
        n[0] += 1
        if n[0] == spec["replace_k"] and spec["when"] == "before":
            die()
        real(a, b, *args, **kw)
        if n[0] == spec["replace_k"] and spec["when"] == "after":
            die()
    os.replace = replace
if spec.get("function"):
    mod_name, fn_name = spec["function"].rsplit(".", 1)
    mod = importlib.import_module(mod_name)
    real_fn = getattr(mod, fn_name)
    def wrapped(*a, **kw):
        if spec["when"] == "before":
            die()
        out = real_fn(*a, **kw)
        die()
    setattr(mod, fn_name, wrapped)
sys.argv = [spec["module"]] + spec["argv"]
main = importlib.import_module(spec["module"]).main
sys.exit(main())
"""


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def run_hooked(module: str, argv: list[str], **spec) -> subprocess.CompletedProcess:
    spec = dict(spec, module=module, argv=[str(a) for a in argv])
    return subprocess.run([PY, "-c", HOOK, json.dumps(spec)], capture_output=True, text=True, timeout=600,
                          env=env(), cwd=ROOT)


def run_killed_at(cmd: list[str], delay: float) -> int:
    """Start ``cmd``, SIGKILL it after ``delay`` seconds (if still running); its exit status."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=ROOT)
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
    return p.wait(timeout=60)


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# --- training -------------------------------------------------------------------------------------

def train_argv(out: Path) -> list[str]:
    return ["--task", "fixture", "--arch", "gru", "--out", str(out), "--epochs", str(EPOCHS),
            "--set", "patience=100", "--no-progress"]


def train_cmd(out: Path) -> list[str]:
    return [PY, "-m", "training.train", *train_argv(out)]


def assert_run_folder_readable(out: Path) -> int | None:
    """Everything a reader would open is complete; returns the epoch in the training state (or None)."""
    from training.checkpoint import load_model, load_train_state
    names = visible(out) if out.exists() else []
    assert set(names) <= {"model.safetensors", "train_state.pt", "metrics.json", "curves.png", "confusion.png"}, names
    epoch = None
    if "model.safetensors" in names:
        load_model(out)  # raises UserError on a half-written file
    if "train_state.pt" in names:
        assert "model.safetensors" in names, "a training state without its checkpoint"
        epoch = int(load_train_state(out / "train_state.pt")["epoch"])
    if "metrics.json" in names:
        json.loads((out / "metrics.json").read_text())
    stray = [p.name for p in out.iterdir() if p.name.startswith(".")] if out.exists() else []
    assert all(n.endswith(".tmp") for n in stray), stray  # only atomic-write temporaries, never read
    return epoch


def weights(out: Path) -> dict:
    from safetensors.numpy import load_file
    return load_file(str(out / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("train-ref") / "run"
    t0 = time.perf_counter()
    p = subprocess.run(train_cmd(out), capture_output=True, text=True, timeout=600, env=env(), cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    return out, time.perf_counter() - t0


def resume_and_compare(out: Path, reference: Path) -> None:
    p = subprocess.run(train_cmd(out), capture_output=True, text=True, timeout=600, env=env(), cwd=ROOT)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert_run_folder_readable(out)
    m = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in m["history"]] == list(range(EPOCHS)), m["history"]
    ref, got = weights(reference), weights(out)
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=f"resumed weights differ from an uninterrupted run: {k}")


@pytest.mark.parametrize("seed", SEEDS)
def test_training_killed_at_a_random_moment_resumes(uninterrupted, tmp_path, seed):
    reference, wall = uninterrupted
    out = tmp_path / "run"
    rng = random.Random(seed)
    # killed twice at seeded moments: the first well inside the reference run's length, the second
    # anywhere. A run can be faster than the reference (which may have paid for cold file caches):
    # if the first kill came after the end, start over with half the delay, so it really lands mid-run.
    delay = rng.uniform(0.1, 0.6) * wall
    for _ in range(4):
        first = run_killed_at(train_cmd(out), delay)
        assert_run_folder_readable(out)
        if first == -signal.SIGKILL:
            break
        shutil.rmtree(out)
        delay /= 2
    assert first == -signal.SIGKILL, f"training always ended before the kill (last delay {delay:.2f} s)"
    run_killed_at(train_cmd(out), rng.uniform(0.1, 1.1) * wall)
    assert_run_folder_readable(out)
    resume_and_compare(out, reference)


@pytest.mark.parametrize("k,when", [(1, "before"), (2, "after"), (5, "before"), (7, "after")])
def test_training_killed_inside_an_atomic_write_resumes(uninterrupted, tmp_path, k, when):
    """Kill at the k-th rename of an atomic write (checkpoint, then state, epoch after epoch)."""
    reference, _ = uninterrupted
    out = tmp_path / "run"
    p = run_hooked("training.train", train_argv(out), replace_k=k, when=when)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-2000:])
    assert_run_folder_readable(out)
    resume_and_compare(out, reference)


# --- export ---------------------------------------------------------------------------------------

def export_argv(ckpt: Path, out: Path, kinds: str) -> list[str]:
    return ["--checkpoint", str(ckpt), "--out", str(out), "--kinds", kinds, "--no-progress"]


def export_cmd(ckpt, out, kinds):
    return [PY, "-m", "export", *export_argv(ckpt, out, kinds)]


def assert_artifact_folder_complete(out: Path) -> list[str]:
    """The folder a reader opens is one whole export: every file the manifest lists, by sha256."""
    from runtime.manifest import Manifest, verify_file
    man = Manifest.read(out)
    man.golden_path()
    for a in man.artifacts:
        if a.get("status", "ok") == "ok":
            verify_file(man.file_of(a), a.get("sha256"), a["name"])
    stray = [p.name for p in out.parent.iterdir() if p.name != out.name]
    assert all(n.startswith(f".{out.name}.") for n in stray), stray  # hidden temporaries only
    return man.data["kinds"]


@pytest.fixture(scope="module")
def export_setup(fixture_run, tmp_path_factory):
    """(checkpoint, an old export with kinds c, wall time of a full onnx,c export)."""
    ckpt = fixture_run("gru") / "model.safetensors"
    base = tmp_path_factory.mktemp("export-old")
    old = base / "artifacts"
    p = subprocess.run(export_cmd(ckpt, old, "c"), capture_output=True, text=True, timeout=600, env=env(), cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    t0 = time.perf_counter()
    p = subprocess.run(export_cmd(ckpt, base / "timing", "onnx,c"), capture_output=True, text=True, timeout=600,
                       env=env(), cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    return ckpt, old, time.perf_counter() - t0


def fresh_old(export_setup, tmp_path) -> Path:
    import shutil
    _, old, _ = export_setup
    out = tmp_path / "site" / "artifacts"
    shutil.copytree(old, out)
    return out


def export_again_works(ckpt, out):
    p = subprocess.run(export_cmd(ckpt, out, "onnx,c"), capture_output=True, text=True, timeout=600, env=env(), cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert assert_artifact_folder_complete(out) == ["onnx", "c"]


@pytest.mark.parametrize("seed", SEEDS + (4,))
def test_export_killed_at_a_random_moment_keeps_a_whole_folder(export_setup, tmp_path, seed):
    ckpt, _, wall = export_setup
    out = fresh_old(export_setup, tmp_path)
    run_killed_at(export_cmd(ckpt, out, "onnx,c"), random.Random(seed).uniform(0.1, 1.0) * wall)
    assert assert_artifact_folder_complete(out) in (["c"], ["onnx", "c"])  # the old or the new, whole
    export_again_works(ckpt, out)


@pytest.mark.parametrize("function,when,expect", [
    ("export.manifest.write", "before", ["c"]),      # everything built, manifest not yet written
    ("export.manifest.write", "after", ["c"]),       # manifest written in the temporary folder
    ("export.pipeline.swap_in", "before", ["c"]),
    ("export.pipeline.swap_in", "after", ["onnx", "c"]),  # swapped in, old copy not yet deleted
])
def test_export_killed_around_the_swap(export_setup, tmp_path, function, when, expect):
    ckpt, _, _ = export_setup
    out = fresh_old(export_setup, tmp_path)
    p = run_hooked("export.cli", export_argv(ckpt, out, "onnx,c"), function=function, when=when)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-2000:])
    assert assert_artifact_folder_complete(out) == expect
    export_again_works(ckpt, out)


def test_first_export_killed_leaves_nothing_half_written(export_setup, tmp_path):
    ckpt, _, _ = export_setup
    out = tmp_path / "site" / "artifacts"
    p = run_hooked("export.cli", export_argv(ckpt, out, "onnx,c"), function="export.pipeline.swap_in", when="before")
    assert p.returncode == -signal.SIGKILL
    assert not out.exists()  # no folder at all rather than half of one
    assert all(n.startswith(".artifacts.") for n in os.listdir(out.parent))
    export_again_works(ckpt, out)


# -- what a kill leaves is removed by a later write of the same name, once it is a day old --------
def _age(path: Path, seconds: float) -> None:
    """Set the modification time of ``path`` and everything below it ``seconds`` into the past."""
    when = time.time() - seconds
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(p, (when, when), follow_symlinks=False)


def test_stale_temporaries_go_with_the_next_atomic_write_fresh_ones_stay(tmp_path):
    from runtime.atomic import STALE_AFTER_S, write_text
    stale, fresh = tmp_path / ".model.safetensors.abc123.tmp", tmp_path / ".model.safetensors.def456.tmp"
    other = tmp_path / ".metrics.json.abc123.tmp"  # another file's temporary
    for p in (stale, fresh, other):
        p.write_bytes(b"half a checkpoint")
    _age(stale, STALE_AFTER_S + 60)
    _age(other, STALE_AFTER_S + 60)
    _age(fresh, STALE_AFTER_S - 600)  # (a writer could still be at work on it)
    write_text(tmp_path / "model.safetensors", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, other.name, "model.safetensors"])


def test_a_stale_folder_with_a_recent_file_inside_is_kept(tmp_path):
    from runtime.atomic import STALE_AFTER_S, remove_stale
    busy, dead = tmp_path / ".artifacts.tmp-busy", tmp_path / ".artifacts.tmp-dead"
    for d in (busy, dead):
        (d / "c-int8").mkdir(parents=True)
        (d / "c-int8" / "model.c").write_text("/* ... */")
        _age(d, STALE_AFTER_S + 60)
    (busy / "c-int8" / "model.h").write_text("/* written a minute ago by an export still running */")
    assert remove_stale(tmp_path, "artifacts", (".tmp-*",)) == [dead]
    assert busy.is_dir() and not dead.exists()


def test_a_killed_exports_leftovers_go_with_the_next_export_a_day_later(export_setup, tmp_path):
    """Row 44: an export killed just before its folder swap leaves its whole build as a hidden
    `.artifacts.tmp-*` folder; the next export of that folder removes it once nothing has touched it
    for a day."""
    from runtime.atomic import STALE_AFTER_S
    ckpt, _, _ = export_setup
    out = fresh_old(export_setup, tmp_path)
    p = run_hooked("export.cli", export_argv(ckpt, out, "onnx,c"), function="export.pipeline.swap_in", when="before")
    assert p.returncode == -signal.SIGKILL
    left = [p for p in out.parent.iterdir() if p.name.startswith(".artifacts.")]
    assert left, "the kill before the swap should leave the build folder behind"
    for p in left:
        _age(p, STALE_AFTER_S + 60)
    export_again_works(ckpt, out)
    assert [p.name for p in out.parent.iterdir()] == ["artifacts"]
