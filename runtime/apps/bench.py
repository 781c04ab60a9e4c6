"""``python -m runtime bench ARTIFACTS``: latency of one sequence and of one streaming step.

Single thread by default, warm-up runs first, then the median and 90th percentile of ``--repeats``
timed runs (``time.perf_counter``). Inputs are the golden samples when the folder has them.
"""

from __future__ import annotations

import time

import numpy as np

from runtime.apps.common import add_model_arguments, load_model, print_json, window_of


def add_arguments(p) -> None:
    p.add_argument("artifacts", help="artifact folder (with manifest.json) or a model file")
    p.add_argument("--repeats", type=int, default=50, help="timed sequences (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed sequences first (default 5)")
    p.add_argument("--length", type=int, default=None, help="time steps per sequence (default: the training window)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_model_arguments(p)


def timings(fn, repeats: int, warmup: int) -> np.ndarray:
    """Seconds per call of ``fn()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out


def summary(seconds: np.ndarray) -> dict:
    return {"median_ms": float(np.median(seconds) * 1e3), "p90_ms": float(np.percentile(seconds, 90) * 1e3),
            "n": int(len(seconds))}


def sample_input(model, length: int) -> np.ndarray:
    """One realistic sequence: the first golden sample when present, else seeded noise."""
    if model.manifest is not None and (model.manifest.data.get("golden") or {}).get("file"):
        x = model.manifest.golden("x_raw")["x_raw"][:1]  # sha256-verified, one line when damaged
        if x.shape[1] >= length:
            return x[:, :length]
    return np.random.default_rng(0).standard_normal((1, length, model.channels)).astype(np.float32)


def run(args) -> int:
    from runtime.errors import UserError
    if args.repeats < 1 or args.warmup < 0 or (args.length is not None and args.length < 1):
        raise UserError(f"--repeats must be >= 1, --warmup >= 0 and --length >= 1 (got {args.repeats}, "
                        f"{args.warmup}, {args.length})")
    model = load_model(args.artifacts, args)
    length = args.length or model.input_spec.shape[1] or window_of(model, 100)
    x = sample_input(model, length)
    result = {"backend": model.backend, "artifact": model.artifact, "step_artifact": model.step_artifact,
              "precision": model.precision, "threads": args.threads, "length": int(x.shape[1])}
    if model.sequence_graph is not None:
        result["sequence"] = summary(timings(lambda: model.predict(x), args.repeats, args.warmup))
    if model.can_stream:
        stepper = model.stream()
        frames = x[0]
        steps = []  # per-step times over whole sequences (reset between them), after warm-up sequences
        for r in range(args.warmup + max(1, args.repeats // 5)):
            stepper.reset()
            for f in frames:
                t0 = time.perf_counter()
                stepper.step(f)
                if r >= args.warmup:
                    steps.append(time.perf_counter() - t0)
        result["step"] = summary(np.asarray(steps))
        result["step"]["median_us"] = result["step"]["median_ms"] * 1e3
    if args.json:
        print_json(result)
    else:
        print(f"{model.backend} {model.artifact or ''} ({model.precision}), {args.threads} thread(s), T={result['length']}")
        if "sequence" in result:
            s = result["sequence"]
            print(f"  sequence: median {s['median_ms']:.3f} ms  p90 {s['p90_ms']:.3f} ms  (n={s['n']})")
        if "step" in result:
            s = result["step"]
            print(f"  step:     median {s['median_ms'] * 1e3:.1f} us  p90 {s['p90_ms'] * 1e3:.1f} us  (n={s['n']})")
    return 0
