"""Training benchmark (not a test): throughput and time to reach the target test accuracy.

    python -m training.bench --tasks watch,kws --archs gru,lstm

Prints, per task and architecture: training sequences per second, seconds until the model's test
accuracy first reached the target (85% watch, 90% kws), and the final test accuracy, on this
machine with the configured thread count. Writes the figures to a JSON file.
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
    target = TARGETS.get(task, 0.9)
    reached = next((h["elapsed_s"] for h in m["history"] if h.get("test_acc", 0) >= target), None)
    seqs = m["train_examples"] * m["epochs_run"]
    return {"task": task, "arch": arch, "hidden": m["hidden"], "threads": cfg.threads, "device": m["device"],
            "data_seconds": round(data_s, 2), "train_seconds": round(m["train_seconds"], 1),
            "epochs": m["epochs_run"], "train_examples": m["train_examples"], "sequences_per_s": round(seqs / max(m["train_seconds"], 1e-9), 1),
            "target_acc": target, "seconds_to_target": None if reached is None else round(reached, 1),
            "test_acc": round(m["test_acc"], 4), "synthetic": m["synthetic"], "stop_reason": m["stop_reason"]}


def markdown_table(rows: list[dict], machine: dict) -> str:
    lines = ["# Training benchmark", "",
             f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs, torch {machine['torch']}, "
             f"load average at the end {machine['load_avg_at_end']:.1f}.", "",
             "Reproduce: `.venv/bin/invoke train-bench` (or `python -m training.bench`).", "",
             "| task | arch | hidden | device/threads | seq/s | time to target | test acc | epochs | train s | stop |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tt = "not reached" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.0f} s"
        acc = f"{r['test_acc']:.3f}" + (" (synthetic speech)" if r["synthetic"] and r["task"] == "kws" else "")
        lines.append(f"| {r['task']} | {r['arch']} | {r['hidden']} | {r['device']}/{r['threads']} | "
                     f"{r['sequences_per_s']:.0f} | {tt} (target {r['target_acc']:.0%}) | {acc} | {r['epochs']} | "
                     f"{r['train_seconds']:.0f} | {r['stop_reason']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="watch,kws")
    p.add_argument("--archs", default="gru,lstm")
    p.add_argument("--out", default="docs/benchmarks/training.json")
    p.add_argument("--runs", default="runs/bench", help="where the benchmark's checkpoints go")
    a = p.parse_args(argv)
    rows = []
    try:
        for task in a.tasks.split(","):
            for arch in a.archs.split(","):
                r = bench_one(task, arch, a.runs)
                rows.append(r)
                tt = "never" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.0f} s"
                note = " (synthetic speech)" if r["synthetic"] and task == "kws" else ""
                print(f"{task:6s} {arch:4s} {r['sequences_per_s']:8.0f} seq/s  to {r['target_acc']:.0%}: {tt:>7s}  "
                      f"test acc {r['test_acc']:.3f}{note}  ({r['epochs']} epochs, {r['train_seconds']:.0f} s)", flush=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cpu_count": os.cpu_count(), "torch": torch.__version__,
               "load_avg_at_end": os.getloadavg()[0]}
    write_json(a.out, {"machine": machine, "results": rows})
    md = Path(a.out).with_suffix(".md")
    write_text(md, markdown_table(rows, machine))
    print(f"wrote {a.out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
