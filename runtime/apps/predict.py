"""``python -m runtime predict ARTIFACTS --input file.npz|.csv``: classify sequences, print one line each."""

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
    scores = model.stream().run(x)[:, -1] if args.stream else model.predict(x)
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
