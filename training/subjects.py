"""Test accuracy of a ``watch`` checkpoint on each held-out subject alone.

    python -m training.subjects runs/watch-gru

The test split mixes its subjects (2 and 7 by default); this rebuilds the split once per test
subject with the checkpoint's own ``[data]`` options and normalization, so a figure such as
"81.5% (subject 2: 71.3%, subject 7: 92.0%)" comes from a command.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def per_subject(run_dir) -> dict[int, float]:
    """{test subject: accuracy} for the checkpoint in ``run_dir`` (a watch-task run folder)."""
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
    out = {}
    for s in subjects:
        data = load_watch(**{**options, "test_subjects": (int(s),)})
        out[int(s)] = evaluate(model, normalize(data.X_test, mean, std), data.y_test, torch.device("cpu"))[1]
    return out


def main(argv=None) -> int:
    from runtime.errors import UserError
    p = argparse.ArgumentParser(prog="python -m training.subjects", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="run folder or model.safetensors of a watch checkpoint")
    a = p.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(1)
        accs = per_subject(a.run_dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(", ".join(f"subject {s}: {100 * acc:.1f}%" for s, acc in accs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
