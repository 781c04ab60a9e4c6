"""Subject-wise cross-validation on ``watch``: every subject is held out exactly once.

    python -m training.cv --arch gru [--folds 5]
    python -m training.cv --arch lstm --dev [--set keep=last --set data.val_in_train=true ...]
    python -m training.cv --arch lstm --dev --set seed=1 --set tempo=0.2 \
        --jsonl docs/benchmarks/watch-dev-reverse-roll.jsonl --recipe "default + tempo=0.2"

With ``--jsonl`` each fold's result is appended to that file as one JSON line, labelled with
``--recipe`` and the seed, so that ``python -m training.compare`` can pair a candidate recipe with
its baseline seed by seed (the rule by which a recipe is adopted, docs/watch-experiments.md).

``--dev`` folds over the eight subjects outside the default test split (2 and 7 are never
touched), so a training recipe can be chosen on it without looking at the test subjects.

One held-out split says as much about its two subjects as about the model (in the default split,
subject 2 is much harder than the others). This trains one model per fold with the default
config, holding out two subjects for test and one other for validation, and reports each fold's
test accuracy with the mean and spread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from runtime import atomic
from runtime.atomic import write_json
from runtime.errors import UserError
from training.data.watch import SUBJECTS



def folds(k: int = 5, subjects: tuple[int, ...] = SUBJECTS) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(test subjects, val subjects) per fold: consecutive groups, validation = the next subject.

    Every subject is held out once: when ``k`` does not divide the subjects, some folds hold one more
    (where it does, the folds are ``len(subjects) // k`` subjects each, as the published figures had)."""
    edges = [f * len(subjects) // k for f in range(k + 1)]
    return [(subjects[edges[f]:edges[f + 1]], (subjects[edges[f + 1] % len(subjects)],)) for f in range(k)]


# --set keys that cv itself sets per fold: overriding them would break the folds
RESERVED = {"arch": "use --arch", "task": "cross-validation runs on watch only", "out": "use --runs for the fold runs",
            "data": "set single options such as data.window_s=4",
            "data.test_subjects": "the folds choose them", "data.val_subjects": "the folds choose them"}


def box() -> str:
    """The machine a fold ran on, as the fold rows name it (CPU, cores, a pinned oneDNN instruction set)."""
    from bench.machine import cpu_model
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return f"{cpu_model()}, {os.cpu_count()} cores" + (f", ONEDNN_MAX_CPU_ISA={isa}" if isa else "")


def append_row(path: str | Path, row: dict) -> None:
    """Append one JSON line to ``path`` with a single O_APPEND write, then fsync.

    Folds usually run two at a time into the same file: rewriting it under a temporary name and
    renaming would drop a row that the other process appended in between, while an appended line
    lands whole after everything already there and never touches the earlier lines.
    """
    path = Path(path)
    line = json.dumps(row) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}; choose a writable --jsonl file") from None
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line  # the file's last line had no newline: do not glue this row onto it
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.cv", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="gru", choices=["gru", "lstm"])
    p.add_argument("--folds", type=int, default=None, help="default 5 (4 with --dev)")
    p.add_argument("--dev", action="store_true", help="fold over the subjects outside the default test split only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config option")
    p.add_argument("--fold", type=int, action="append", default=None,
                   help="run only this fold (0-based; repeat for several), e.g. to spread folds over processes; "
                        "the all-folds report is then written only if --out is given")
    p.add_argument("--runs", default=None, help="folder for the fold runs (default runs/cv or runs/dev)")
    p.add_argument("--out", default=None, help="JSON report (default docs/benchmarks/watch-<cv|dev>-<arch>.json; "
                                               "with --fold, none unless --out is given)")
    p.add_argument("--jsonl", default=None, help="also append one JSON line per fold to this file (with --recipe)")
    p.add_argument("--recipe", default=None, help="the name the --jsonl rows carry, e.g. 'default + tempo=0.2'")
    a = p.parse_args(argv)
    from training.config import load_config
    from training.data.watch import TEST_SUBJECTS
    from training.train import parse_sets
    from training.trainer import train
    a.folds = a.folds if a.folds is not None else (4 if a.dev else 5)
    subjects = tuple(s for s in SUBJECTS if s not in TEST_SUBJECTS) if a.dev else SUBJECTS
    tag = "dev" if a.dev else "cv"
    out = a.out or (None if a.fold else f"docs/benchmarks/watch-{tag}-{a.arch}.json")
    rows = []
    try:
        if (a.jsonl is None) != (a.recipe is None):
            raise UserError("--jsonl and --recipe go together: name the recipe the fold rows are filed under")
        if not 2 <= a.folds <= len(subjects):
            raise UserError(f"--folds {a.folds}: choose 2 to {len(subjects)} (there are {len(subjects)} subjects"
                            f"{' outside the test split' if a.dev else ''})")
        overrides = parse_sets(a.set)
        for key in overrides:
            if key in RESERVED:
                raise UserError(f"--set {key}=...: cv sets {key} itself; {RESERVED[key]}")
        for path, flag in ((out, "--out"), (a.jsonl, "--jsonl")):
            if path:
                atomic.check_writable(path, flag)  # before any training
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
            if a.jsonl:
                append_row(a.jsonl, {"arch": a.arch, "recipe": a.recipe, "seed": base.seed, **rows[-1], "box": box()})
        accs = np.array([r["test_acc"] for r in rows])
        which = f"{a.folds}-fold" if not a.fold else f"folds {sorted(set(a.fold))} of {a.folds}"
        print(f"watch {a.arch}: subject-wise {which} test accuracy {accs.mean():.3f} +- {accs.std():.3f} "
              f"(min {accs.min():.3f}, max {accs.max():.3f})")
        if out:
            write_json(out, {"arch": a.arch, "subjects": list(subjects), "overrides": overrides, "folds": rows,
                             "mean": float(accs.mean()), "std": float(accs.std())})
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
