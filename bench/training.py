"""Training throughput on CPU: a short run of the default configuration per architecture.

Sequences per second over ``epochs`` epochs of ``training.trainer.train`` (one thread, CPU,
validation included, the same loop ``invoke train`` runs) into a throw-away folder. Time to a
target accuracy needs full-length training: that is ``invoke train-bench`` (training/bench.py),
and its JSON (docs/benchmarks/training.json, with the GPU figures when a session had one) is
quoted in the report when present.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


def bench_training(task: str = "watch", archs=("gru", "lstm"), epochs: int = 2, progress=None) -> dict:
    import torch
    from training.config import load_config
    from training.data import load_task
    from training.trainer import train
    torch.set_num_threads(1)
    rows = []
    data = None
    with tempfile.TemporaryDirectory(prefix="rnn-edge-bench-train-") as tmp:
        for arch in archs:
            if progress:
                progress(f"training {task}-{arch}, {epochs} epoch(s)")
            cfg = load_config(task, arch=arch, out=f"{tmp}/{task}-{arch}", epochs=epochs, device="cpu", threads=1)
            if data is None:
                data = load_task(task, seed=cfg.seed)
            m = train(cfg, data=data, resume=False, progress=False)
            seqs = m["train_examples"] * m["epochs_run"]
            rows.append({"task": task, "arch": arch, "hidden": m["hidden"], "device": "cpu", "threads": 1,
                         "epochs": m["epochs_run"], "train_seconds": round(m["train_seconds"], 2),
                         "sequences_per_s": round(seqs / max(m["train_seconds"], 1e-9), 1),
                         "batch_size": cfg.batch_size, "seq_len": m.get("seq_len")})
    out = {"short_run": rows}
    full = Path("docs/benchmarks/training.json")
    if full.is_file():
        try:
            out["train_bench"] = json.loads(full.read_text())
        except (OSError, ValueError):
            pass
    return out
