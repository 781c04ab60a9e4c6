"""``python -m runtime sense --model M --csv FILE|-``: stream IMU rows, print smoothed detections.

Each CSV row is one time step of raw sensor channels (e.g. ax,ay,az,gx,gy,gz); a header row is
skipped. Rows are read one at a time (``-`` = stdin, so a sensor can be piped in live), streamed
through the model as staggered training-length windows (``runtime.detect``), and a line is printed
whenever a class's smoothed posterior reaches the threshold.
"""

from __future__ import annotations

import io
import sys

from runtime.apps.common import add_model_arguments, load_model, print_json, window_of
from runtime.detect import Detector, WindowedStream
from runtime.errors import UserError


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="artifact folder or model file")
    p.add_argument("--csv", required=True, help="CSV file of IMU rows, or - for stdin")
    p.add_argument("--rate", type=float, default=None, help="sample rate in Hz, to print times (default: frame numbers)")
    p.add_argument("--window", type=int, default=None, help="frames per decision window (default: the training length)")
    p.add_argument("--lanes", type=int, default=4, help="staggered windows: a decision every window/lanes frames")
    p.add_argument("--threshold", type=float, default=0.6, help="smoothed posterior needed to report a class")
    p.add_argument("--smooth", type=int, default=3, help="posteriors averaged (moving average)")
    p.add_argument("--refractory", type=int, default=None, help="frames before the same class is reported again "
                   "(default: one window)")
    p.add_argument("--ignore", action="append", default=[], help="class never reported (repeatable)")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per detection")
    add_model_arguments(p)


def rows(stream, name):
    """Yield float rows from a CSV stream, skipping one header row, blank and # lines."""
    for n, line in enumerate(stream, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            yield [float(v) for v in line.split(",")]
        except ValueError:
            if n == 1:
                continue  # header
            raise UserError(f"{name} line {n} is not numeric ({line[:60]!r}): one row per time step, "
                            f"one column per channel") from None


def run(args) -> int:
    model = load_model(args.model, args)
    man = getattr(model, "manifest", None)
    if man is not None and man.model.get("head") == "forecast":
        raise UserError(f"{args.model} is a forecast model (no classes to detect): use `python -m runtime predict`")
    window = window_of(model) if args.window is None else args.window  # 0 is refused below, as -1 is
    if window is None:
        raise UserError("the model records no training window length: pass --window FRAMES")
    decoder = WindowedStream(model, window, args.lanes)
    detector = Detector(model.class_names, args.threshold, args.smooth,
                        args.refractory if args.refractory is not None else window, args.ignore)
    name = "stdin" if args.csv == "-" else args.csv
    try:
        # bytes that are not UTF-8 become U+FFFD: such a row is then "not numeric", one line (not a traceback);
        # utf-8-sig drops a spreadsheet's byte order mark, which would make the first row look like a header
        src = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="replace") if args.csv == "-" else \
            open(args.csv, encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise UserError(f"cannot read {args.csv}: {e.strerror}") from None
    frames = detections = 0
    with src:
        try:
            for row in rows(src, name):
                if len(row) != model.channels:
                    raise UserError(f"{name} row {frames + 1} has {len(row)} values: the model expects "
                                    f"{model.channels} channels")
                frames += 1
                for t, post in decoder.push(row):
                    d = detector.update(t, post)
                    if d:
                        detections += 1
                        report(d, args.rate, args.jsonl)
        except KeyboardInterrupt:  # Ctrl-C ends a live stream: the summary below, as listen gives
            pass
    if frames == 0:
        raise UserError(f"{name} has no data rows: give CSV rows of one frame each (one column per channel)")
    print(f"{frames} frames, {detections} detection(s)", file=sys.stderr)
    return 0


def report(d, rate, jsonl) -> None:
    when = d.frame / rate if rate else None
    if jsonl:
        print_json({"frame": d.frame, "time_s": when, "label": d.label, "confidence": round(d.confidence, 4)})
    else:
        where = f"{when:8.2f} s" if when is not None else f"frame {d.frame:7d}"
        print(f"{where}  {d.label}  ({d.confidence:.2f})", flush=True)
