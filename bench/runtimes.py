"""Every exported artifact through ``runtime.load``: latency, peak memory, file size, accuracy.

Each artifact is measured in its own child process (``python -m bench.runtimes --child ...``), so
one backend's libraries, thread pools and caches never colour another's figures, and so memory can
be read from the kernel: ``VmRSS``/``VmHWM`` of the child (Linux ``/proc/self/status``), with the
high-water mark reset (``/proc/self/clear_refs`` = 5) after loading. Reported per artifact:

- ``rss_base_mb``: resident memory after importing numpy + runtime (before any backend);
- ``load_peak_mb``: peak RSS while importing the backend and loading the model, above the base;
- ``run_peak_mb``: peak RSS during warm-up + timed inference, above the base (so it includes the
  loaded library and model; ``run_extra_mb`` is what inference added on top of the loaded state).

Latency reuses ``runtime.apps.bench`` (``timings``/``summary``/``sample_input``): warm-up first,
then median and p90, one thread, batch 1, the first golden sequence. ``sequence`` artifacts are
timed with ``predict`` on a whole sequence, ``step`` artifacts with ``stream().step`` per frame.
Accuracy is the artifact's test-split accuracy from the manifest (measured at export on every test
window); ``golden_top1`` is re-measured here on the golden sequences as a check that it still runs right.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from runtime.errors import UserError


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_child(folder: str, artifact: str | None, backend: str | None, repeats: int, warmup: int) -> dict:
    """In the child: load one artifact, time it, read its memory. Returns a JSON-able dict."""
    import runtime
    from runtime.apps.bench import sample_input, summary, timings

    mb = 1 / 1024
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    model = runtime.load(folder, backend=backend, artifact=artifact, threads=1)
    load_s = time.perf_counter() - t0
    load_peak = _status_kb("VmHWM")
    loaded = _status_kb("VmRSS")
    can_reset = _reset_peak()
    length = int((model.manifest.model.get("seq_len") if model.manifest else None) or 100)
    x = sample_input(model, length)
    entry = model.manifest.by_name(artifact) if (model.manifest and artifact) else {}
    kind = entry.get("kind", "sequence") if artifact else "sequence"
    out = {"artifact": artifact or f"{model.backend}-reference", "backend": model.backend, "precision": model.precision,
           "kind": kind, "length": int(x.shape[1]), "load_s": round(load_s, 3)}
    if kind == "sequence":
        out["sequence"] = summary(timings(lambda: model.predict(x), repeats, warmup))
    else:
        stepper = model.stream()
        steps = []
        for r in range(warmup + max(1, repeats // 5)):
            stepper.reset()
            for f in x[0]:
                t1 = time.perf_counter()
                stepper.step(f)
                if r >= warmup:
                    steps.append(time.perf_counter() - t1)
        out["step"] = summary(np.asarray(steps))
        out["step"]["median_us"] = out["step"]["median_ms"] * 1e3
        out["step"]["p90_us"] = out["step"]["p90_ms"] * 1e3
    run_peak = _status_kb("VmHWM")
    out["memory"] = {"rss_base_mb": round(base * mb, 2), "load_peak_mb": round((load_peak - base) * mb, 2),
                     "run_peak_mb": round((max(run_peak, loaded) - base) * mb, 2),
                     "run_extra_mb": round((run_peak - loaded) * mb, 2) if can_reset else None,
                     "method": "child-process RSS (VmHWM/VmRSS) above the post-import base"}
    if model.manifest is not None and kind == "sequence":
        golden = model.manifest.golden("x_raw", "scores")
        scores = np.concatenate([model.predict(golden["x_raw"][i:i + 1]) for i in range(len(golden["x_raw"]))])
        out["golden_top1"] = float(np.mean(scores.argmax(1) == golden["scores"].argmax(1)))
        out["golden_max_abs_err"] = float(np.max(np.abs(scores - golden["scores"])))
    return out


def run_child(folder, artifact, backend, repeats: int, warmup: int, timeout: float = 600) -> dict:
    """Run ``measure_child`` in a fresh Python (one thread); returns its dict or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "bench.runtimes", "--child", str(folder), "--repeats", str(repeats), "--warmup", str(warmup)]
    if artifact:
        cmd += ["--artifact", artifact]
    if backend:
        cmd += ["--backend", backend]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    root = Path(__file__).resolve().parent.parent
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        return {"artifact": artifact, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["exit code %d" % p.returncode])[-1]
        return {"artifact": artifact, "error": err[:300]}
    return json.loads(lines[-1])


def bench_folder(folder, repeats: int = 50, warmup: int = 5, progress=None) -> dict:
    """Measure every ``ok`` artifact of an artifact folder, plus the PyTorch reference."""
    from runtime.manifest import Manifest
    folder = Path(folder)
    man = Manifest.read(folder)
    ref_acc = (man.data.get("reference") or {}).get("accuracy")
    rows = []
    todo = [(None, "torch")] + [(a["name"], None) for a in man.artifacts
                                if a.get("status", "ok") not in ("failed", "unsupported")]
    for name, backend in todo:
        if progress:
            progress(f"{folder.name}: {name or backend}")
        r = run_child(folder, name, backend, repeats, warmup)
        entry = man.by_name(name) if name else {}
        r.update(artifact=name or "pytorch-reference", runtime=entry.get("runtime", "torch"),
                 precision=entry.get("precision", "float32"), kind=entry.get("kind", "sequence"),
                 size_bytes=entry.get("size_bytes"), status=entry.get("status", "ok"),
                 accuracy=entry.get("accuracy", ref_acc if not name else None))
        if entry.get("arena_bytes"):
            r["arena_bytes"] = int(entry["arena_bytes"])
        if r.get("accuracy") is not None and ref_acc is not None:
            r["accuracy_drop_points"] = round(100 * (ref_acc - r["accuracy"]), 2)
        rows.append(r)
    return {"folder": str(folder), "model": man.model, "reference_accuracy": ref_acc,
            "test_examples": (man.data.get("reference") or {}).get("test_examples"), "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.runtimes")
    p.add_argument("folder")
    p.add_argument("--child", action="store_true", help="measure one artifact in this process (internal)")
    p.add_argument("--artifact", default=None)
    p.add_argument("--backend", default=None)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args(argv)
    try:
        if a.child:
            print(json.dumps(measure_child(a.folder, a.artifact, a.backend, a.repeats, a.warmup)), flush=True)
        else:
            print(json.dumps(bench_folder(a.folder, a.repeats, a.warmup), indent=2))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
