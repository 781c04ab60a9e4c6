"""Subject-wise cross-validation on ``watch``: every subject is held out exactly once.

    python -m training.cv --arch gru [--folds 5]
    python -m training.cv --arch lstm --dev [--set keep=last --set data.val_in_train=true ...]

``--dev`` folds over the eight subjects outside the default test split (2 and 7 are never
touched), so a training recipe can be chosen on it without looking at the test subjects.

One held-out split says as much about its two subjects as about the model (in the default split,
subject 2 is much harder than the others). This trains one model per fold with the default
config, holding out two subjects for test and one other for validation, and reports each fold's
test accuracy with the mean and spread.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from runtime.atomic import write_json
from runtime.errors import UserError
from training.data.watch import SUBJECTS



def folds(k: int = 5, subjects: tuple[int, ...] = SUBJECTS) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(test subjects, val subjects) per fold: consecutive groups, validation = the next subject."""
    size = len(subjects) // k
    out = []
    for f in range(k):
        test = subjects[f * size:(f + 1) * size]
        val = (subjects[((f + 1) * size) % len(subjects)],)
        out.append((test, val))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.cv", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="gru", choices=["gru", "lstm"])
    p.add_argument("--folds", type=int, default=None, help="default 5 (4 with --dev)")
    p.add_argument("--dev", action="store_true", help="fold over the subjects outside the default test split only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config option")
    p.add_argument("--fold", type=int, action="append", default=None,
                   help="run only this fold (0-based; repeat for several), e.g. to spread folds over processes")
    p.add_argument("--runs", default=None, help="folder for the fold runs (default runs/cv or runs/dev)")
    p.add_argument("--out", default=None, help="JSON report (default docs/benchmarks/watch-cv-<arch>.json)")
    a = p.parse_args(argv)
    from training.config import load_config
    from training.data.watch import TEST_SUBJECTS
    from training.train import parse_sets
    from training.trainer import train
    a.folds = a.folds or (4 if a.dev else 5)
    subjects = tuple(s for s in SUBJECTS if s not in TEST_SUBJECTS) if a.dev else SUBJECTS
    tag = "dev" if a.dev else "cv"
    rows = []
    try:
        overrides = parse_sets(a.set)
        base = load_config("watch", arch=a.arch, **overrides)
        chosen = folds(a.folds, subjects)
        bad = [i for i in (a.fold or []) if not 0 <= i < len(chosen)]
        if bad:
            raise UserError(f"--fold {bad[0]}: choose 0 to {len(chosen) - 1}")
        for i, (test, val) in enumerate(chosen):
            if a.fold and i not in a.fold:
                continue
            cfg = load_config("watch", arch=a.arch, out=f"{a.runs or 'runs/' + tag}/watch-{a.arch}-fold{i}", **overrides,
                              data={**base.data, "test_subjects": list(test), "val_subjects": list(val)})
            m = train(cfg, resume=False, progress=False)
            rows.append({"fold": i, "test_subjects": list(test), "val_subject": val[0], "test_acc": m["test_acc"],
                         "epochs": m["epochs_run"], "train_seconds": round(m["train_seconds"], 1)})
            print(f"fold {i}: test subjects {test} -> test accuracy {m['test_acc']:.3f} "
                  f"({m['epochs_run']} epochs, {m['train_seconds']:.0f} s)", flush=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    accs = np.array([r["test_acc"] for r in rows])
    print(f"watch {a.arch}: subject-wise {a.folds}-fold test accuracy {accs.mean():.3f} +- {accs.std():.3f} "
          f"(min {accs.min():.3f}, max {accs.max():.3f})")
    write_json(a.out or f"docs/benchmarks/watch-{tag}-{a.arch}.json",
               {"arch": a.arch, "subjects": list(subjects), "overrides": overrides, "folds": rows, "mean": float(accs.mean()), "std": float(accs.std())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
