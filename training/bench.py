"""Training benchmark (not a test): throughput and time to reach the target test accuracy.

    python -m training.bench --tasks watch,kws --archs gru,lstm

Prints, per task and architecture: training sequences per second, seconds until the model's test
accuracy first reached the target (85% watch, 90% kws), and the final test accuracy, on this
machine with the configured thread count. A forecasting task (watch-forecast, fixture-forecast) has
no accuracy: its row reports the test MSE and has no time to target. Writes the figures to a JSON
file (``--out``, .json) and a markdown table beside it (the same name with .md).
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
import sys
import time

from runtime.atomic import write_json, write_text
from runtime.errors import UserError

TARGETS = {"watch": 0.85, "kws": 0.90, "fixture": 0.90}


def bench_one(task: str, arch: str, out_root: str, **overrides) -> dict:
    """Train ``task``/``arch`` with its default config (plus ``overrides``) and time it."""
    from training.config import load_config
    from training.data import load_task
    from training.trainer import train
    cfg = load_config(task, arch=arch, out=f"{out_root}/{task}-{arch}", **overrides)
    t = time.perf_counter()
    data = load_task(task, seed=cfg.seed, **cfg.data)  # the config's [data] options, as `invoke train` does
    data_s = time.perf_counter() - t
    m = train(cfg, data=data, resume=False, progress=False, track_test=True)
    forecast = "test_acc" not in m  # a forecast run has an MSE and no accuracy: no target to reach
    target = None if forecast else TARGETS.get(task, 0.9)
    reached = None if forecast else next((h["elapsed_s"] for h in m["history"] if h.get("test_acc", 0) >= target), None)
    seqs = m["train_examples"] * m["epochs_run"]
    return {"task": task, "arch": arch, "hidden": m["hidden"], "threads": cfg.threads, "device": m["device"],
            "data_seconds": round(data_s, 2), "train_seconds": round(m["train_seconds"], 1),
            "epochs": m["epochs_run"], "train_examples": m["train_examples"], "sequences_per_s": round(seqs / max(m["train_seconds"], 1e-9), 1),
            "target_acc": target, "seconds_to_target": None if reached is None else round(reached, 1),
            "test_acc": None if forecast else round(m["test_acc"], 4),
            **({"test_mse": round(m["test_mse"], 6)} if forecast else {}),
            "synthetic": m.get("synthetic", False), "stop_reason": m["stop_reason"]}


def result_text(r: dict) -> str:
    """The row's final test figure: accuracy, or the MSE of a forecast run."""
    if r["test_acc"] is None:
        return f"test mse {r['test_mse']:.4g}"
    return f"test acc {r['test_acc']:.3f}" + (" (synthetic speech)" if r["synthetic"] and r["task"] == "kws" else "")


def check_inputs(tasks: list[str], archs: list[str], out: str) -> None:
    """Every task, arch and the output files, checked before the first model trains."""
    from training.config import ARCHS, load_config
    from runtime.atomic import check_writable
    from training.data import TASKS
    for flag, names in (("--tasks", tasks), ("--archs", archs)):
        if any(not n for n in names):
            raise UserError(f"{flag} {','.join(names)!r} has an empty name: give comma-separated names without empty entries")
    for arch in archs:
        if arch not in ARCHS:
            raise UserError(f"--archs: unknown arch {arch!r}: use {' or '.join(ARCHS)}")
    for task in tasks:
        if task not in TASKS and not Path(task).exists():
            raise UserError(f"--tasks: unknown task {task!r}: use one of {', '.join(TASKS)}, or the path of a data folder or .npz file")
        for arch in archs:
            load_config(task, arch=arch)
    if Path(out).suffix == ".md":
        raise UserError(f"--out {out}: the markdown table is written beside the JSON as .md; give a .json path")
    check_writable(out, "--out")
    check_writable(Path(out).with_suffix(".md"), "--out")


def markdown_table(rows: list[dict], machine: dict) -> str:
    lines = ["# Training benchmark", "",
             f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs, torch {machine['torch']}, "
             f"load average at the end {machine['load_avg_at_end']:.1f}.", "",
             "Reproduce: `.venv/bin/invoke train-bench` (or `python -m training.bench`).", "",
             "| task | arch | hidden | device/threads | seq/s | time to target | test acc (mse: forecast) | epochs | train s | stop |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["target_acc"] is None:
            tt = "no accuracy (forecast)"
        else:
            tt = ("not reached" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.0f} s") + \
                f" (target {r['target_acc']:.0%})"
        acc = result_text(r).removeprefix("test acc ").replace("test mse ", "mse ")
        lines.append(f"| {r['task']} | {r['arch']} | {r['hidden']} | {r['device']}/{r['threads']} | "
                     f"{r['sequences_per_s']:.0f} | {tt} | {acc} | {r['epochs']} | "
                     f"{r['train_seconds']:.0f} | {r['stop_reason']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="watch,kws")
    p.add_argument("--archs", default="gru,lstm")
    p.add_argument("--out", default="docs/benchmarks/training.json",
                   help="JSON report (.json); the markdown table goes beside it with .md")
    p.add_argument("--runs", default="runs/bench", help="where the benchmark's checkpoints go")
    a = p.parse_args(argv)
    rows = []
    try:
        tasks, archs = a.tasks.split(","), a.archs.split(",")
        check_inputs(tasks, archs, a.out)
        for task in tasks:
            for arch in archs:
                r = bench_one(task, arch, a.runs)
                rows.append(r)
                if r["target_acc"] is None:
                    to = "no accuracy target"
                else:
                    tt = "never" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.0f} s"
                    to = f"to {r['target_acc']:.0%}: {tt:>7s}"
                print(f"{task:6s} {arch:4s} {r['sequences_per_s']:8.0f} seq/s  {to}  "
                      f"{result_text(r)}  ({r['epochs']} epochs, {r['train_seconds']:.0f} s)", flush=True)
        import torch
        machine = {"platform": platform.platform(), "processor": platform.processor(),
                   "cpu_count": os.cpu_count(), "torch": torch.__version__,
                   "load_avg_at_end": os.getloadavg()[0]}
        write_json(a.out, {"machine": machine, "results": rows})
        md = Path(a.out).with_suffix(".md")
        write_text(md, markdown_table(rows, machine))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
