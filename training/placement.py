"""How each watch recording holds the watch: its mean gravity direction, against the other subjects'.

    python -m training.placement

Over a recording of these slow arm exercises the accelerometer's mean is mostly gravity, so its
direction says how the watch sat relative to the vertical: the arm's posture and the watch's place
on the wrist together. Recordings of wrist 0 are first reflected into wrist 1's frame (x -> -x, the
reflection of ``MIRROR_SIGNS`` in training/data/watch.py). A recording's *offset* is the angle between its direction and
the median direction of the same exercise over the other subjects. For each subject, the single
rotation that best maps all of its directions onto those medians (Kabsch) gives the part of the
offset that one fixed turn of the watch on the wrist would explain (it turns every recording alike);
what is left differs exercise by exercise: posture.

    python -m training.placement --loso docs/benchmarks/watch-loso.jsonl --plot docs/benchmarks/watch-placement.png

``--loso`` reads the fold rows of a leave-one-subject-out cross-validation (``python -m training.cv
--folds 10 --jsonl FILE --recipe default``), sets each subject's held-out accuracy beside its offset,
gives their rank correlation (Spearman) per architecture and the accuracy pooled over the default test
subjects (each held out with the other trained on), and ``--plot`` draws them.

A diagnosis of the data, the test subjects included: no training option is chosen from it
(docs/watch-experiments.md, "Where the test errors are").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from training.data.watch import MIRROR_SIGNS

TO_WRIST_1 = np.asarray(MIRROR_SIGNS[:3])  # x -> -x: the accelerometer's part of the reflection to the other wrist


class Postures(NamedTuple):
    """Every recording of the watch file: its gravity ``directions [N, 3]`` in wrist 1's frame,
    ``labels``, ``subjects``, ``wrists`` and the exercise ``names``."""
    directions: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    wrists: np.ndarray
    names: list[str]


def recording_postures() -> Postures:
    """The watch file, read once. ``wrists`` is its ``side`` field, 0 or 1: every subject did every
    exercise once with each wrist, and reflected by x -> -x each exercise's median direction on wrist
    0 lies within 8 deg of wrist 1's (tests/test_placement.py checks it on the file)."""
    from training.data.watch import read_watch_file
    d = read_watch_file()
    wrists = np.asarray(d["side"]).astype(np.int64)
    return Postures(gravity_directions(d["X"], wrists), np.asarray(d["y"]), np.asarray(d["subject"]),
                    wrists, list(d["y_labels"]))


def gravity_directions(recordings, sides) -> np.ndarray:
    """Unit mean accelerometer vector of each recording ``[T, 6+]`` (channels ax, ay, az first), in
    wrist 1's frame: ``[N, 3]``."""
    out = []
    for rec, side in zip(recordings, sides):
        g = np.asarray(rec, dtype=np.float64)[:, :3].mean(0)
        g = g * TO_WRIST_1 if int(side) == 0 else g
        out.append(g / np.linalg.norm(g))
    return np.array(out)


def angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between unit vectors, row by row."""
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def others_median(directions: np.ndarray, labels, subjects, subject) -> np.ndarray:
    """For each recording of ``subject``: the unit median direction of its exercise over the other subjects."""
    labels, subjects = np.asarray(labels), np.asarray(subjects)
    rows = []
    for label in labels[subjects == subject]:
        m = np.median(directions[(subjects != subject) & (labels == label)], axis=0)
        rows.append(m / np.linalg.norm(m))
    return np.array(rows)


def offsets_deg(directions: np.ndarray, labels, subjects) -> np.ndarray:
    """Each recording's angle to the median direction of its exercise over the other subjects."""
    subjects = np.asarray(subjects)
    out = np.empty(len(directions))
    for s in np.unique(subjects):
        mine = subjects == s
        out[mine] = angles_deg(directions[mine], others_median(directions, labels, subjects, s))
    return out


def best_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The proper rotation R minimizing sum |R a_i - b_i|^2 (Kabsch): SVD of the 3x3 covariance
    H = sum a_i b_i^T = U S V^T, then R = V diag(1, 1, det(V U^T)) U^T (the sign keeps det R = +1)."""
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def rotation_angle_axis(r: np.ndarray) -> tuple[float, np.ndarray]:
    """(angle in degrees, unit axis) of a rotation matrix: cos angle = (trace R - 1) / 2, and the axis
    is the eigenvector of eigenvalue 1."""
    angle = float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))
    w, v = np.linalg.eig(r)
    axis = np.real(v[:, np.argmin(np.abs(w - 1))])
    return angle, axis / np.linalg.norm(axis)


def subject_placement(directions: np.ndarray, labels, subjects, subject) -> dict:
    """One subject: mean offset of its recordings, the best single rotation, and the offset left after it."""
    mine = np.asarray(subjects) == subject
    a, b = directions[mine], others_median(directions, labels, subjects, subject)
    r = best_rotation(a, b)
    angle, axis = rotation_angle_axis(r)
    return {"subject": int(subject), "offset_deg": float(angles_deg(a, b).mean()),
            "after_rotation_deg": float(angles_deg(a @ r.T, b).mean()),
            "rotation_deg": angle, "axis": axis.tolist()}


def ranks(values) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    v = np.asarray(values, dtype=np.float64)
    r = np.empty(len(v))
    r[np.argsort(v, kind="mergesort")] = np.arange(1, len(v) + 1)
    for x in np.unique(v):
        r[v == x] = r[v == x].mean()
    return r


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (nan when either side is constant)."""
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def loso_accuracy(rows: list[dict], arch: str, recipe: str = "default") -> dict[int, float]:
    """{held-out subject: test accuracy, the mean over the seeds run} from the fold rows of one
    architecture's leave-one-subject-out runs."""
    found: dict[int, list[float]] = {}
    for r in rows:
        if r.get("arch") == arch and r.get("recipe") == recipe and len(r.get("test_subjects", [])) == 1:
            found.setdefault(int(r["test_subjects"][0]), []).append(float(r["test_acc"]))
    return {s: sum(v) / len(v) for s, v in sorted(found.items())}


def loso_report(path, plot=None) -> str:
    """Each subject's offset beside its held-out accuracy per architecture, their rank correlation, and
    the accuracy pooled over the default test subjects' windows."""
    from runtime.errors import UserError
    from training.compare import read_rows
    from training.data.watch import TEST_SUBJECTS, load_watch
    p = recording_postures()
    offset = {int(s): subject_placement(p.directions, p.labels, p.subjects, s)["offset_deg"] for s in np.unique(p.subjects)}
    rows = read_rows(path)
    accs = {arch: loso_accuracy(rows, arch) for arch in ("gru", "lstm")}
    accs = {arch: a for arch, a in accs.items() if a}
    if not accs:
        raise UserError(f"{path} holds no leave-one-subject-out rows (recipe 'default', one test subject per fold): "
                        "run `python -m training.cv --folds 10 --jsonl FILE --recipe default`")
    lines = ["subject  offset  " + "  ".join(f"{arch:>5s}" for arch in accs)]
    for s in sorted(offset):
        lines.append(f"{s:7d}  {offset[s]:4.0f} deg  " + "  ".join(
            f"{100 * a[s]:4.1f}%" if s in a else "    -" for a in accs.values()))
    for arch, a in accs.items():
        common = sorted(a)
        lines.append(f"{arch}: {len(common)} subjects, rank correlation of offset and held-out accuracy "
                     f"{spearman([offset[s] for s in common], [a[s] for s in common]):+.2f}")
    # test windows per default test subject, as the default split cuts them (one load, not one per subject)
    per_window = p.subjects[load_watch().recordings_test]
    windows = {s: int((per_window == s).sum()) for s in TEST_SUBJECTS}
    for arch, a in accs.items():
        if all(s in a for s in TEST_SUBJECTS):
            pooled = sum(a[s] * windows[s] for s in TEST_SUBJECTS) / sum(windows.values())
            lines.append(f"{arch}: subjects {', '.join(map(str, TEST_SUBJECTS))} pooled over their windows, each held out "
                         f"with the other trained on: {100 * pooled:.1f}%")
    if plot:
        plot_offsets(plot, offset, accs)
    return "\n".join(lines)


def plot_offsets(path, offset: dict[int, float], accs: dict[str, dict[int, float]]) -> None:
    """Scatter: each subject's posture offset against its held-out accuracy, one colour per architecture."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.plots import save_figure
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for arch, a in accs.items():
        xs = [offset[s] for s in sorted(a)]
        ys = [100 * a[s] for s in sorted(a)]
        ax.scatter(xs, ys, label=arch.upper())
        for s, x, y in zip(sorted(a), xs, ys):
            ax.annotate(str(s), (x, y), textcoords="offset points", xytext=(4, 2), fontsize=8)
    ax.set_xlabel("posture offset from the other subjects (deg, mean of 14 recordings)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("watch: each subject held out once (leave-one-subject-out)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, Path(path))


def report(worst: int = 10) -> str:
    """The per-subject table and the ``worst`` recordings farthest from their exercise's posture."""
    rp = recording_postures()
    directions, labels, subjects, sides, names = rp.directions, rp.labels, rp.subjects, rp.wrists, rp.names
    lines = ["subject  offset  after one rotation  the rotation (watch axes x, y, z)"]
    for s in np.unique(subjects):
        p = subject_placement(directions, labels, subjects, s)
        axis = ", ".join(f"{v:+.2f}" for v in p["axis"])
        lines.append(f"{p['subject']:7d}  {p['offset_deg']:4.0f} deg  {p['after_rotation_deg']:10.0f} deg"
                     f"      {p['rotation_deg']:3.0f} deg about ({axis})")
    off = offsets_deg(directions, labels, subjects)
    lines.append(f"the {worst} recordings farthest from their exercise's posture:")
    for i in np.argsort(-off)[:worst]:
        lines.append(f"  {off[i]:3.0f} deg  subject {int(subjects[i]):2d}  {names[int(labels[i])]:4s}  wrist {int(sides[i])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from runtime.errors import UserError, print_result
    p = argparse.ArgumentParser(prog="python -m training.placement", description=__doc__.splitlines()[0])
    p.add_argument("--worst", type=int, default=10, help="how many of the farthest recordings to list (10)")
    p.add_argument("--loso", default=None, help="fold rows (JSON lines) of a leave-one-subject-out run, to set "
                                                "each subject's held-out accuracy beside its offset")
    p.add_argument("--plot", default=None, help="with --loso: a PNG of offset against held-out accuracy")
    a = p.parse_args(argv)

    def produce() -> str:
        if a.worst < 0:
            raise UserError(f"--worst {a.worst}: give how many recordings to list, 0 or more")
        if a.plot and not a.loso:
            raise UserError("--plot draws the --loso rows: give --loso FILE too")
        if a.plot:
            from runtime import atomic
            atomic.check_writable(a.plot, "--plot")
        return loso_report(a.loso, a.plot) if a.loso else report(a.worst)
    return print_result(produce)


if __name__ == "__main__":
    sys.exit(main())
