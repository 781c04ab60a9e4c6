"""``python -m parity.trace ARTIFACT_DIR A B``: where two integer step artifacts part, in output LSBs.

Streams the parity suite's sample rows (golden + test rows spread over the split, as the stream cells do) frame by
frame through artifacts ``A`` and ``B`` of the same folder (e.g. ``tflm-int8-step`` and
``tflite-int8-step``), then prints how many rows end within each LSB distance and, for the row that
ends furthest apart, the distance after every step: a rounding difference compounding through the
recurrence grows step by step from 1 LSB; a wrong scale or state is far apart from the start.
An artifact name ending in ``:ref`` runs on LiteRT with TFLite's reference kernels
(``reference_kernels=True``), e.g. ``tflite-int8-step tflite-int8-step:ref`` compares LiteRT's
default kernels with its reference ones.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")


def trace(folder, a: str, b: str, sample_rows: int | None = None) -> dict:
    """Per-row final LSB distances and the worst row's per-step distances between artifacts a and b."""
    import runtime
    from parity.inputs import SAMPLE_TEST_ROWS, load_heldout
    from runtime.manifest import output_scale
    from runtime.errors import UserError
    from runtime.manifest import Manifest
    from runtime.metrics import lsb_per_row

    from runtime.backends.litert import artifact_and_options

    (a_name, a_opts), (b_name, b_opts) = artifact_and_options(a), artifact_and_options(b)
    man = Manifest.read(folder)
    scale = output_scale(man.by_name(a_name)) or output_scale(man.by_name(b_name))
    if not scale:
        raise UserError(f"neither {a} nor {b} has integer outputs with a scale: choose two integer step artifacts")
    held, _ = load_heldout(man, sample_test_rows=SAMPLE_TEST_ROWS if sample_rows is None else sample_rows)
    x = held.x_raw[:held.sample_rows]
    sa, sb = (runtime.load(folder, artifact=name, **opts).stream().run(x)  # [N, T, K]
              for name, opts in ((a_name, a_opts), (b_name, b_opts)))
    final = lsb_per_row(sa[:, -1], sb[:, -1], scale)
    worst = int(final.argmax())
    return {"scale": scale, "rows": len(x), "final_lsb": final.tolist(), "worst_row": worst,
            "worst_row_per_step": lsb_per_row(sa[worst], sb[worst], scale).tolist()}


def main(argv=None) -> int:
    from runtime.errors import UserError
    p = argparse.ArgumentParser(prog="python -m parity.trace", description=__doc__.splitlines()[0])
    p.add_argument("folder", metavar="ARTIFACT_DIR")
    p.add_argument("a", metavar="A", help="artifact name, e.g. tflm-int8-step (NAME:ref: LiteRT's reference kernels)")
    p.add_argument("b", metavar="B", help="artifact name, e.g. tflite-int8-step")
    p.add_argument("--sample-rows", type=int, default=None, metavar="N", help="test rows after the golden rows")
    args = p.parse_args(argv)
    try:
        if args.sample_rows is not None and args.sample_rows < 0:  # (as python -m parity refuses it)
            raise UserError(f"--sample-rows {args.sample_rows}: pass 0 or more (a count of test-split rows)")
        import torch
        torch.set_num_threads(1)
        t = trace(args.folder, args.a, args.b, args.sample_rows)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts: dict[int, int] = {}
    for d in t["final_lsb"]:
        counts[d] = counts.get(d, 0) + 1
    print(f"{args.a} vs {args.b}: {t['rows']} streamed rows, output LSB {t['scale']:.6g}")
    print("rows by LSB distance after the last step: " + ", ".join(f"{d} LSB: {n}" for d, n in sorted(counts.items())))
    steps = t["worst_row_per_step"]
    print(f"row {t['worst_row']} (furthest apart), LSB distance after each step: {' '.join(map(str, steps))}")
    print(f"  largest {max(steps)} at step {steps.index(max(steps))}, first nonzero at step "
          f"{next((i for i, d in enumerate(steps) if d), None)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
