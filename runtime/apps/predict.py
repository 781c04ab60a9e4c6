"""``python -m runtime predict ARTIFACTS --input file.npz|.csv``: classify sequences, print one line each.

A forecast model (manifest ``model.head == "forecast"``) prints its forecast frames instead, in the
input's raw units (one line per sequence: frames separated by tabs, channels by spaces).
A frames model (``model.head == "frames"``) labels every frame: one line per sequence with its
segments, ``label@first-last`` frame indices (docs/frames.md).
"""

from __future__ import annotations

import numpy as np

from runtime import atomic
from runtime.apps.common import add_model_arguments, load_model, print_json, read_input
from runtime.detect import softmax


def add_arguments(p) -> None:
    p.add_argument("artifacts", help="artifact folder (with manifest.json) or a model file")
    p.add_argument("--input", required=True, help=".npz with x_raw [N, T, C] (or x), or .csv with one row per time step")
    p.add_argument("--stream", action="store_true", help="run frame by frame through the streaming graph")
    p.add_argument("--out", default=None, help="also write scores and posteriors to this .npz")
    p.add_argument("--json", action="store_true", help="one JSON object per sequence")
    add_model_arguments(p)


def run(args) -> int:
    x = read_input(args.input)
    model = load_model(args.artifacts, args)
    frames = getattr(model, "frames", False)
    scores = (model.stream().run(x) if frames else model.stream().run(x)[:, -1]) if args.stream else model.predict(x)
    man = getattr(model, "manifest", None)
    if frames:
        return _frames(args, model, scores)
    if man is not None and man.model.get("head") == "forecast":
        return _forecast(args, man, scores)
    post = softmax(scores)
    for i, (s, p) in enumerate(zip(scores, post)):
        k = int(np.argmax(s))
        if args.json:
            print_json({"index": i, "label": model.class_names[k], "class": k, "confidence": float(p[k]),
                        "scores": [float(v) for v in s]})
        else:
            print(f"{i}\t{model.class_names[k]}\t{p[k]:.3f}", flush=True)
    if args.out:
        with atomic.atomic_path(args.out) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, scores=scores, posteriors=post)
    return 0


def segments(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Per-frame labels ``[T]`` -> runs ``(label, first, last)``."""
    out, start = [], 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[start]:
            out.append((int(labels[start]), start, t - 1))
            start = t
    return out


def _frames(args, model, scores: np.ndarray) -> int:
    """A frames model: the label of every frame, printed as segments ``label@first-last``."""
    post = softmax(scores)
    labels = scores.argmax(-1)
    for i, lab in enumerate(labels):
        segs = segments(lab)
        if args.json:
            print_json({"index": i, "frames": [model.class_names[k] for k in lab],
                        "segments": [{"label": model.class_names[k], "first": a, "last": b} for k, a, b in segs],
                        "confidence": [float(post[i, t, k]) for t, k in enumerate(lab)]})
        else:
            print(f"{i}	" + " ".join(f"{model.class_names[k]}@{a}-{b}" for k, a, b in segs), flush=True)
    if args.out:
        with atomic.atomic_path(args.out) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, scores=scores, posteriors=post, labels=labels)
    return 0


def raw_forecast(scores: np.ndarray, mean, std) -> np.ndarray:
    """Forecast outputs ``[N, horizon * C]`` (normalized, time-major) -> raw units ``[N, horizon, C]``."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return np.asarray(scores, np.float32).reshape(len(scores), -1, len(mean)) * std + mean


def _forecast(args, man, scores: np.ndarray) -> int:
    """A forecast model: the next frames per sequence, in the input's raw units (docs/forecasting.md)."""
    pre = man.data.get("preprocess") or {}
    frames = raw_forecast(scores, pre["mean"], pre["std"])
    for i, f in enumerate(frames):
        if args.json:
            print_json({"index": i, "forecast": f.tolist(), "normalized": [float(v) for v in scores[i]]})
        else:
            print(f"{i}\t" + "\t".join(" ".join(f"{v:.4g}" for v in frame) for frame in f), flush=True)
    if args.out:
        with atomic.atomic_path(args.out) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, scores=scores, forecast=frames)
    return 0
