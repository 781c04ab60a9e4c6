"""How the TFLite int8 file depends on the size of its calibration sample (a benchmark, not a test).

    python -m bench.calibration runs/watch-gru --windows 200 800

Converts the checkpoint's whole-sequence int8 .tflite once per sample size (``rep_windows`` random
training windows, MinMax ranges: what ``invoke export`` does with ``REP_WINDOWS = 200``) and prints, for
LiteRT and TFLite Micro, the accuracy drop against the float reference and the score errors on the
test split. Nothing is written outside a temporary folder; docs/parity-history.md quotes a run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from runtime.errors import UserError

FIELDS = ("accuracy_drop", "max_abs_err", "rmse", "top1_agreement")


def measure(run: str, windows: list[int]) -> list[dict]:
    """One row per (sample size, runtime) with the verification metrics of ``export_tflite``."""
    import export.tflite_export as te
    from training.checkpoint import load_model
    from training.data.base import load_task_of

    model, meta = load_model(f"{run}/model.safetensors")
    data = load_task_of(meta)
    rows = []
    for n in windows:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="rnn-edge-calib-") as tmp:
            records = te.export_tflite(model, meta, data, tmp, progress=False, only=["tflite-int8"], rep_windows=n)
        seconds = time.perf_counter() - t0
        for rec in records:
            rows.append({"windows": n, "artifact": rec["name"], "status": rec.get("status"), "seconds": seconds,
                         **{k: rec.get("metrics", {}).get(k) for k in FIELDS}})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="training run folder holding model.safetensors (e.g. runs/watch-gru)")
    p.add_argument("--windows", type=int, nargs="+", default=[200, 800], help="calibration sample sizes")
    args = p.parse_args(argv)
    try:
        if any(n < 1 for n in args.windows):
            raise UserError("--windows takes positive numbers of training windows, e.g. --windows 200 800")
        rows = measure(args.run, args.windows)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'windows':>7}  {'artifact':<11} {'status':<16} {'drop (pts)':>10} {'max err':>8} {'rmse':>7} {'top-1':>7} {'s':>5}")
    for r in rows:
        print(f"{r['windows']:>7}  {r['artifact']:<11} {r['status']:<16} {100 * r['accuracy_drop']:>10.2f} "
              f"{r['max_abs_err']:>8.3f} {r['rmse']:>7.3f} {100 * r['top1_agreement']:>6.2f}% {r['seconds']:>5.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
