"""Test accuracy of a ``watch`` checkpoint on each held-out subject alone, or on each recording.

    python -m training.subjects runs/watch-gru
    python -m training.subjects runs/watch-gru --recordings

The test split mixes its subjects (2 and 7 by default); this rebuilds the split once per test
subject with the checkpoint's own ``[data]`` options and normalization, so a figure such as
"81.5% (subject 2: 71.3%, subject 7: 92.0%)" comes from a command. ``--recordings`` lists every
test recording (one exercise on one wrist) with its errors, what they were taken for, and its
posture offset from the other subjects' (training/placement.py), the most errors first.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def heldout_predictions(run_dir):
    """Yield (test subject, its test split, the checkpoint's predictions) for the checkpoint in
    ``run_dir`` (a watch-task run folder), each split rebuilt with the checkpoint's ``[data]`` options."""
    import torch

    from runtime.errors import UserError
    from training.checkpoint import load_model
    from training.data.watch import load_watch
    from training.trainer import evaluate, normalize

    model, meta = load_model(run_dir)
    if meta.get("task") != "watch":
        raise UserError(f"{run_dir} holds a {meta.get('task')!r} checkpoint: per-subject accuracy is for task watch")
    options = dict((meta.get("config") or {}).get("data") or {})
    subjects = options.pop("test_subjects", None) or meta["dataset"]["test_subjects"]
    mean, std = (np.asarray(meta[k], np.float32) for k in ("input_mean", "input_std"))
    for s in subjects:
        data = load_watch(**{**options, "test_subjects": (int(s),)})
        yield int(s), data, evaluate(model, normalize(data.X_test, mean, std), data.y_test, torch.device("cpu"))[2]


def per_subject(run_dir) -> dict[int, float]:
    """{test subject: accuracy} for the checkpoint in ``run_dir``."""
    return {s: float((pred == data.y_test).mean()) for s, data, pred in heldout_predictions(run_dir)}


def per_recording(run_dir) -> list[dict]:
    """One row per test recording: subject, exercise, wrist, windows, errors, the exercise its
    errors were most often taken for, and its posture offset in degrees (training/placement.py)."""
    from training.placement import offsets_deg, recording_postures
    p = recording_postures()
    offsets = offsets_deg(p.directions, p.labels, p.subjects)
    rows = []
    for s, data, pred in heldout_predictions(run_dir):
        for r in np.unique(data.recordings_test):
            mine = data.recordings_test == r
            wrong = pred[mine][pred[mine] != data.y_test[mine]]
            rows.append({"subject": s, "exercise": p.names[int(p.labels[r])], "wrist": int(p.wrists[r]),
                         "windows": int(mine.sum()), "errors": int(len(wrong)),
                         "taken_for": p.names[int(np.bincount(wrong).argmax())] if len(wrong) else "",
                         "offset_deg": float(offsets[r])})
    return sorted(rows, key=lambda row: (-row["errors"], row["subject"], row["exercise"], row["wrist"]))


def recordings_table(rows: list[dict]) -> str:
    """The rows of ``per_recording`` as text, with how much of the error the worst recordings hold."""
    lines = ["subject  exercise  wrist  windows  errors  accuracy  taken for  posture offset"]
    for r in rows:
        lines.append(f"{r['subject']:7d}  {r['exercise']:8s}  {r['wrist']:5d}  {r['windows']:7d}  {r['errors']:6d}"
                     f"  {100 * (1 - r['errors'] / r['windows']):7.1f}%  {r['taken_for']:9s}  {r['offset_deg']:7.0f} deg")
    total, windows = sum(r["errors"] for r in rows), sum(r["windows"] for r in rows)
    top = sum(r["errors"] for r in rows[:5])
    lines.append(f"{total} errors in {windows} windows ({100 * (1 - total / windows):.2f}%); the 5 recordings "
                 f"with the most hold {top} of them ({100 * top / max(total, 1):.0f}%), of {len(rows)} recordings")
    by_subject = {s: sum(r["errors"] for r in rows if r["subject"] == s) for s in sorted({r["subject"] for r in rows})}
    lines.append("errors by subject: " + ", ".join(f"{s}: {n}" for s, n in by_subject.items()))
    if len(rows) > 1:
        from training.placement import spearman
        rho = spearman([r["offset_deg"] for r in rows], [1 - r["errors"] / r["windows"] for r in rows])
        lines.append(f"rank correlation of posture offset and accuracy over the {len(rows)} recordings: {rho:+.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from runtime.errors import print_result
    p = argparse.ArgumentParser(prog="python -m training.subjects", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="run folder or model.safetensors of a watch checkpoint")
    p.add_argument("--recordings", action="store_true",
                   help="one line per test recording (errors, what they were taken for, posture offset)")
    a = p.parse_args(argv)

    def produce() -> str:
        import torch
        torch.set_num_threads(1)
        if a.recordings:
            return recordings_table(per_recording(a.run_dir))
        return ", ".join(f"subject {s}: {100 * acc:.1f}%" for s, acc in per_subject(a.run_dir).items())
    return print_result(produce)


if __name__ == "__main__":
    sys.exit(main())
