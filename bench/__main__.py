"""``python -m bench``: the whole benchmark in one run (what ``invoke bench`` calls).

    python -m bench [--quick] [--artifacts artifacts/watch-gru,artifacts/watch-lstm] [--out docs/benchmarks]
                    [--only runtimes,mcu,pi,tflm,scaling,training] [--no-progress]

Writes OUT/bench.json, OUT/bench.md and PNG plots. A full run takes ~10-15 min on a 2-core box;
``--quick`` (fewer repeats, smaller sweeps, Cortex-M4 only, one training epoch) about 2-3 min.
Exit status: 0 written (goals missed are reported, not errors), 2 bad input (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from runtime.errors import UserError  # noqa: E402

PARTS = ("runtimes", "mcu", "pi", "tflm", "scaling", "training")


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small and fast: fewer repeats, small sweeps, M4 only")
    p.add_argument("--artifacts", default="artifacts/watch-gru,artifacts/watch-lstm", help="comma list of artifact folders")
    p.add_argument("--lstm", default=None, help="LSTM artifact folder for the TFLite Micro comparison (default: the first LSTM in --artifacts)")
    p.add_argument("--out", default="docs/benchmarks", help="report folder (default docs/benchmarks)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma list of parts: {', '.join(PARTS)}")
    p.add_argument("--task", default=None, help="task for the training throughput (default: the first folder's task)")
    p.add_argument("--hidden", default=None, help="hidden sizes of the scaling sweep, comma list (default 16,32,64,128,256)")
    p.add_argument("--lengths", default=None, help="sequence lengths of the scaling sweep, comma list (default 25,50,100,200,400)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def check_inputs(folders: list[Path], parts: tuple[str, ...]) -> list:
    from runtime.manifest import Manifest
    unknown = [q for q in parts if q not in PARTS]
    if unknown or not parts:
        raise UserError(f"unknown part(s) {', '.join(unknown) or '(none)'} in --only: choose from {', '.join(PARTS)}")
    if not folders:
        raise UserError("--artifacts names no folder: give a comma list of artifact folders, e.g. artifacts/watch-gru")
    mans = []
    for f in folders:
        if not (f / "manifest.json").is_file():
            raise UserError(f"no artifact folder at {f}: export it first (python -m export --arch gru|lstm, or invoke export)")
        mans.append(Manifest.read(f))
    return mans


def _ints(text: str | None, flag: str):
    if not text:
        return None
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{flag} takes a comma list of positive integers, got {text!r}") from None
    if len(vals) < 3 or min(vals) < 1:
        raise UserError(f"{flag} needs at least 3 positive sizes to fit a line, got {text!r}")
    return vals


def main(argv=None) -> int:
    a = parse(argv)
    try:
        return run(a)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(a) -> int:
    import torch
    torch.set_num_threads(1)
    from tqdm import tqdm

    from bench import goals, machine, report
    from runtime.atomic import check_writable
    parts = tuple(q.strip() for q in a.only.split(",") if q.strip())
    folders = [Path(f) for f in a.artifacts.split(",") if f]
    mans = check_inputs(folders, parts)
    lstm = Path(a.lstm) if a.lstm else next((f for f, m in zip(folders, mans) if m.model.get("arch") == "lstm"), None)
    if "tflm" in parts and lstm is not None and lstm not in folders:
        check_inputs([lstm], parts)
    # the report's folder, and the sections a partial run keeps, before the run: its results must not be lost
    check_writable(Path(a.out) / "bench.json", "--out")
    carried = {}
    report.carry_over(carried, a.out, parts, PARTS)
    hidden, lengths = _ints(a.hidden, "--hidden"), _ints(a.lengths, "--lengths")
    quick = a.quick
    t0 = time.perf_counter()
    result: dict = {"started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), "quick": quick,
                    "machine": machine.describe(), "artifacts": [str(f) for f in folders]}
    bar = tqdm(total=len(parts), disable=a.no_progress, unit="part", file=sys.stderr)

    def note(msg):
        bar.set_postfix_str(msg[:60])

    if "runtimes" in parts:
        from bench.runtimes import bench_folder
        bar.set_description("runtimes")
        reps, warm = (10, 2) if quick else (100, 10)
        result["runtimes"] = [bench_folder(f, reps, warm, progress=note) for f in folders]
        bar.update()
    if "mcu" in parts:
        from bench.mcu import DEFAULT_TARGETS, bench_mcu
        bar.set_description("cortex-m")
        result["mcu"] = bench_mcu(folders, targets=("cortex-m4",) if quick else DEFAULT_TARGETS,
                                  precisions=("int8",) if quick else ("int8", "float32"), progress=note)
        bar.update()
    if "pi" in parts:
        from bench.pi import bench_pi
        bar.set_description("raspberry pi")
        result["pi"] = bench_pi(folders, progress=note)
        bar.update()
    if "tflm" in parts:
        bar.set_description("tflm vs c")
        if lstm is None:
            result["tflm"] = {"error": "no LSTM artifact folder given (--artifacts or --lstm): TFLite Micro has no GRU kernel"}
        else:
            from bench.mcu import bench_mcu
            from bench.tflm import compare_tflm_host
            m4 = next((r for r in result.get("mcu", []) if r.get("folder") == str(lstm) and r.get("target") == "cortex-m4"
                       and r.get("precision") == "int8" and "ram" in r), None)
            if m4 is None:
                m4 = next(iter(bench_mcu([lstm], targets=("cortex-m4",), precisions=("int8",))), None)
            result["tflm"] = compare_tflm_host(lstm, rounds=40 if quick else 400, warmup=5 if quick else 10, m4_row=m4)
        bar.update()
    if "scaling" in parts:
        from bench.scaling import bench_scaling
        bar.set_description("scaling")
        result["scaling"] = bench_scaling(quick=quick, repeats=5 if quick else 30, warmup=2 if quick else 3, progress=note,
                                          hidden=hidden, lengths=lengths)
        bar.update()
    if "training" in parts:
        from bench.training import bench_training
        bar.set_description("training")
        task = a.task or mans[0].data.get("task") or "watch"
        result["training"] = bench_training(task, epochs=1 if quick else 2, progress=note)
        bar.update()
    bar.close()
    result["machine"]["load_avg_end"] = round(os.getloadavg()[0], 2)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result.update(carried)  # a partial run keeps the report's other sections
    result["goals"] = goals.judge(result)
    paths = report.write(result, a.out)
    for g in result["goals"]:
        st = "n/a" if g["met"] is None else ("met" if g["met"] else "MISSED")
        print(f"{st:>6}  {g['goal']}: {g['figure']}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
