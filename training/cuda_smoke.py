"""CUDA smoke run (for a machine with an NVIDIA GPU): the training path end to end on the GPU.

    python -m training.cuda_smoke --out /tmp/cuda-smoke [--epochs N]

What it checks, printing one line per check and writing ``summary.json`` into ``--out``:

1. the GPU, torch, CUDA and cuDNN versions that torch sees;
2. ``watch`` training of the GRU and the LSTM with ``--device cuda`` (cuDNN RNNs) and the default
   recipe (or ``--epochs``): test accuracy, seconds, training sequences per second, and how often
   cuDNN warned that the RNN weights sit outside its buffer (must be 0);
3. streaming (one frame at a time, state carried) equals the whole-sequence run on the GPU within
   1e-5, for both checkpoints;
4. each GPU-trained checkpoint loads on the CPU and scores the test split like it does on the GPU
   (max difference of the scores);
5. resuming on the GPU: a fixture run of 6 epochs is SIGKILLed after epoch 3 and resumed; the resumed
   run must say so, and its weights are compared with a 6-epoch run in one go (reported: cuDNN's
   kernels need not be deterministic, so the figure is shown, not required to be 0);
6. ``torchrun --nproc_per_node 1`` launches training on the GPU and writes a checkpoint that loads
   like a plain run's. One process forms no process group: NCCL between ranks needs two GPUs (it
   refuses two ranks on one), so several-GPU DDP is not exercised on a one-GPU machine.

It exits non-zero if a check fails. It needs the watch dataset (the seglearn wheel's data file) and
torch with CUDA; nothing of the export stack. ``--device cpu`` runs the same steps on the CPU (a dry
run of the script itself, e.g. before spending GPU time).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import subprocess
import sys
import time
import warnings

import numpy as np


# cuDNN's warning when an RNN's weights are not in its single buffer (it then copies them on every
# call): AveragedModel's deep copy caused it until SequenceModel.flatten_parameters() was called on it.
CUDNN_COPY_WARNING = "not part of single contiguous chunk of memory"
CUDNN_COPY_KEY = "cudnn_weight_copy_warnings"


def versions() -> dict:
    import torch
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": sys.version.split()[0]}


def train_watch(arch: str, out: Path, epochs: int | None, device: str) -> dict:
    from training.config import load_config
    from training.trainer import train
    overrides = {"arch": arch, "out": str(out / f"watch-{arch}"), "device": device}
    if epochs is not None:
        overrides["epochs"] = epochs
    cfg = load_config("watch", **overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = train(cfg, resume=False, progress=False)
    return {"test_acc": round(m["test_acc"], 4), "epochs": m["epochs_run"], "train_seconds": round(m["train_seconds"], 1),
            "sequences_per_s": round(m["train_examples"] * m["epochs_run"] / max(m["train_seconds"], 1e-9), 1),
            "device": m["device"], CUDNN_COPY_KEY: sum(CUDNN_COPY_WARNING in str(w.message) for w in caught)}


def stream_vs_whole_and_cpu(run: Path, device: str) -> dict:
    """Max |stream - whole| on ``device``, and max |device scores - CPU scores| of the same checkpoint."""
    import torch
    from training.checkpoint import load_model
    from training.data.watch import load_watch
    from training.trainer import normalize, pick_device
    device = pick_device(device)  # as training and evaluation do (IEEE float32 on CUDA)
    model, meta = load_model(run)
    data = load_watch(**(meta["config"].get("data") or {}))
    x = normalize(data.X_test, np.asarray(meta["input_mean"], np.float32), np.asarray(meta["input_std"], np.float32))
    x = torch.from_numpy(x)
    with torch.no_grad():
        on_device = model.to(device).eval()
        whole_dev = on_device(x.to(device)).cpu()
        stream_dev = on_device.stream(x[:64].to(device))[:, -1].cpu()
        cpu = on_device.cpu()
        whole_cpu = cpu(x)
    return {"stream_vs_whole": float((stream_dev - whole_dev[:64]).abs().max()),
            "device_vs_cpu_scores": float((whole_dev - whole_cpu).abs().max()),
            "device_vs_cpu_same_label": float((whole_dev.argmax(1) == whole_cpu.argmax(1)).float().mean())}


# Runs training.train in a child that SIGKILLs itself right after its k-th atomic rename (each
# epoch renames the checkpoint and the training state into place): a kill at a known epoch.
KILL_AFTER_RENAME = r"""
import os, signal, sys
from training.train import main
real, n, k = os.replace, [0], int(sys.argv[1])
def replace(a, b, *args, **kw):
    real(a, b, *args, **kw)
    n[0] += 1
    if n[0] == k:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


def resume_after_kill(out: Path, device: str) -> dict:
    """Fixture task, 6 epochs: killed after epoch 3 and resumed, against 6 epochs in one go."""
    import torch
    from safetensors.torch import load_file
    args = ["--task", "fixture", "--device", device, "--no-progress", "--set", "epochs=6", "--set", "keep=last"]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_RENAME, "6", *args, "--out", str(out / "resumed")],
                            capture_output=True, text=True, timeout=300)
    resumed = subprocess.run([sys.executable, "-m", "training.train", *args, "--out", str(out / "resumed")],
                             capture_output=True, text=True, timeout=300)
    straight = subprocess.run([sys.executable, "-m", "training.train", *args, "--out", str(out / "straight")],
                              capture_output=True, text=True, timeout=300)
    if resumed.returncode or straight.returncode:
        raise RuntimeError(f"training failed: {(resumed.stderr or straight.stderr)[-2000:]}")
    a, b = (load_file(str(out / k / "model.safetensors")) for k in ("resumed", "straight"))
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    return {"killed_exit": killed.returncode, "resume_line": resumed.stdout.strip().splitlines()[0],
            "max_weight_diff_vs_straight_run": diff, "cudnn_deterministic": bool(torch.backends.cudnn.deterministic)}


def torchrun_one_process(out: Path, device: str) -> dict:
    """torchrun with one process on ``device``: the checkpoint loads like a plain run's."""
    from training.checkpoint import load_model
    run = out / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "training.train",
           "--task", "fixture", "--device", device, "--out", str(run), "--no-progress", "--set", "epochs=5"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"torchrun failed ({p.returncode}): {p.stderr[-2000:]}")
    _, meta = load_model(run)
    return {"torchrun_stdout": p.stdout.strip().splitlines()[-1], "world_size": meta["world_size"], "device": meta["device"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.cuda_smoke", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/cuda-smoke")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (default: the recipe's)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the same steps")
    a = p.parse_args(argv)
    import torch
    from runtime.atomic import check_writable, write_json
    from runtime.errors import UserError
    try:  # bad input is one line, found before the first model trains
        if a.epochs is not None and a.epochs < 1:  # (0 is not "the recipe's": that is leaving --epochs out)
            raise UserError(f"--epochs {a.epochs} is too small: pass 1 or more, or leave it out for the recipe's")
        if a.device == "cuda" and not torch.cuda.is_available():
            raise UserError("no CUDA GPU is visible to torch: run this on a machine with an NVIDIA GPU and a CUDA build of torch")
        out = Path(a.out)
        check_writable(out / "summary.json", "--out")  # (creates the folder)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary: dict = {"versions": versions()}
    print("versions:", json.dumps(summary["versions"]), flush=True)
    failures = []
    steps = [(f"train-{arch}", lambda arch=arch: train_watch(arch, out, a.epochs, a.device)) for arch in ("gru", "lstm")]
    steps += [(f"check-{arch}", lambda arch=arch: stream_vs_whole_and_cpu(out / f"watch-{arch}", a.device))
              for arch in ("gru", "lstm")]
    steps += [("resume", lambda: resume_after_kill(out, a.device)), ("ddp", lambda: torchrun_one_process(out, a.device))]
    for name, fn in steps:
        t = time.perf_counter()
        try:
            summary[name] = fn()
        except Exception as e:  # a smoke run reports every step, then fails as a whole
            summary[name] = {"error": f"{type(e).__name__}: {e}"}
            failures.append(name)
        summary[name]["wall_s"] = round(time.perf_counter() - t, 1)
        print(f"{name}: {json.dumps(summary[name])}", flush=True)
    for arch in ("gru", "lstm"):
        c = summary.get(f"check-{arch}", {})
        if "stream_vs_whole" in c and c["stream_vs_whole"] > 1e-5:
            failures.append(f"check-{arch}: stream vs whole {c['stream_vs_whole']:.2e} > 1e-5")
        if summary.get(f"train-{arch}", {}).get(CUDNN_COPY_KEY):
            failures.append(f"train-{arch}: cuDNN warned that the RNN weights are copied on every call")
    r = summary.get("resume", {})
    if "resume_line" in r and not r["resume_line"].startswith("resuming"):
        failures.append(f"resume: the run after the kill did not resume ({r['resume_line']!r})")
    summary["failures"] = failures
    write_json(out / "summary.json", summary)
    print("FAILED: " + "; ".join(failures) if failures else "all CUDA smoke checks passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
