"""Compare two training recipes on the dev folds, seed by seed: the rule by which a recipe is adopted.

    python -m training.compare docs/benchmarks/watch-dev-reverse-roll.jsonl --arch lstm \\
        --baseline "default (train_overlap 0.75, 50 epochs)" --candidate "default + tempo=0.2"

Reads the fold rows that ``python -m training.cv --dev --jsonl FILE --recipe NAME`` appends (one
JSON object per fold: arch, recipe, seed, fold, test_acc, ...). For every seed that both recipes ran
on all folds, the seed's score is the mean of its fold accuracies; the candidate minus the baseline,
seed by seed, gives paired differences. A single seed moves a 4-fold mean by about a point on watch
(docs/watch-experiments.md), so one seed decides nothing: the candidate is adopted only when the mean paired
difference exceeds ``k`` standard errors (sd / sqrt(n), k = 2 by default), which needs at least two
seeds and a difference that is larger than the seeds' disagreement about it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import UserError


def fold_sets(rows: list[dict], arch: str, recipe: str) -> dict[int, dict[int, float]]:
    """{seed: {fold: test accuracy}} of one recipe's rows."""
    out: dict[int, dict[int, float]] = {}
    for r in rows:
        if r.get("arch") == arch and r.get("recipe") == recipe:
            out.setdefault(int(r["seed"]), {})[int(r["fold"])] = float(r["test_acc"])
    return out


def seed_scores(by_seed: dict[int, dict[int, float]], folds: set[int]) -> dict[int, float]:
    """{seed: mean test accuracy over ``folds``} for the seeds that ran exactly those folds, so that two
    recipes are only ever compared on the same folds."""
    return {s: sum(f.values()) / len(f) for s, f in sorted(by_seed.items()) if set(f) == folds}


@dataclass(frozen=True)
class Paired:
    seeds: tuple[int, ...]
    differences: tuple[float, ...]  # candidate - baseline per seed, in accuracy points (0..100)
    mean: float
    standard_error: float  # sample sd / sqrt(n); nan with one seed
    k: float

    @property
    def adopt(self) -> bool:
        """True when the mean difference is positive and exceeds k standard errors."""
        return len(self.differences) >= 2 and self.mean > self.k * self.standard_error

    @property
    def verdict(self) -> str:
        if len(self.differences) < 2:
            return "undecided: one seed in common, the rule needs at least two"
        rel = ">" if self.adopt else "<="
        # the threshold and the standard error both spelled out: "2 x standard error 0.37" alone was
        # once read as a threshold of 0.37 (docs/watch-experiments.md, target replication)
        return (f"{'adopt' if self.adopt else 'do not adopt'}: mean {self.mean:+.2f} {rel} "
                f"{self.k * self.standard_error:.2f} = {self.k:g} x standard error {self.standard_error:.2f}")


def paired_difference(baseline: dict[int, float], candidate: dict[int, float], k: float = 2.0) -> Paired:
    """Pair the two recipes' seed scores (fractions 0..1) on their common seeds; points in the result."""
    seeds = tuple(sorted(set(baseline) & set(candidate)))
    if not seeds:
        raise UserError("the two recipes share no seed with the same folds run; run the missing seeds or folds "
                        "(python -m training.cv --dev --set seed=S --jsonl FILE --recipe NAME)")
    d = tuple(100 * (candidate[s] - baseline[s]) for s in seeds)
    mean = sum(d) / len(d)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) if len(d) > 1 else math.nan
    return Paired(seeds, d, mean, se, k)


def _whole(value) -> bool:
    """A whole number: an int, or a float such as 1.0 (not a bool, not 0.7)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())


def check_row(row: dict, where: str) -> dict:
    """The row with seed and fold as ints and test_acc as a float, or one clear error naming ``where`` (file:line)."""
    if not isinstance(row.get("arch"), str):
        raise UserError(f"{where}: arch must be a string such as \"gru\", got {row.get('arch')!r}; fix or remove the line")
    if not isinstance(row.get("recipe"), str) or not row["recipe"].strip():
        raise UserError(f"{where}: recipe must be a non-empty string, got {row.get('recipe')!r}; fix or remove the line")
    for key in ("seed", "fold"):
        if not _whole(row[key]):
            raise UserError(f"{where}: {key} must be a whole number, got {row[key]!r}; fix or remove the line")
    acc = row["test_acc"]
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not math.isfinite(acc) or not 0 <= acc <= 1:
        raise UserError(f"{where}: test_acc must be a finite fraction from 0 to 1 (0.93, not 93), got {acc!r}; fix or remove the line")
    return {**row, "seed": int(row["seed"]), "fold": int(row["fold"]), "test_acc": float(acc)}


def read_rows(path: str | Path) -> list[dict]:
    """The JSON objects of a .jsonl file, one per non-empty line; a bad line or a repeated
    (arch, recipe, seed, fold) is one clear error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}; give the .jsonl file that training.cv --jsonl wrote") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}); give the .jsonl file that training.cv --jsonl wrote") from None
    rows = []
    seen: dict[tuple, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not a JSON object ({e.msg}); each line must be one fold row") from None
        if not isinstance(row, dict) or not {"arch", "recipe", "seed", "fold", "test_acc"} <= row.keys():
            raise UserError(f"{path}:{n}: a fold row needs arch, recipe, seed, fold and test_acc")
        row = check_row(row, f"{path}:{n}")
        key = (row["arch"], row["recipe"], row["seed"], row["fold"])
        if key in seen:
            raise UserError(f"{path}: lines {seen[key]} and {n} are both {key[0]} recipe {key[1]!r} seed {key[2]} "
                            f"fold {key[3]}; keep one of them")
        seen[key] = n
        rows.append(row)
    return rows


def paired_scores(rows, arch, baseline, candidate, path) -> tuple[dict[int, float], dict[int, float]]:
    """Both recipes' seed scores over the folds either of them ran (a seed that missed one is left out)."""
    base, cand = fold_sets(rows, arch, baseline), fold_sets(rows, arch, candidate)
    for recipe, by_seed in ((baseline, base), (candidate, cand)):
        if not by_seed:
            known = sorted({r["recipe"] for r in rows if r["arch"] == arch})
            raise UserError(f"no {arch} rows of recipe {recipe!r} in {path}; it has: " + "; ".join(map(repr, known)))
    folds = set().union(*(f.keys() for f in [*base.values(), *cand.values()]))
    return seed_scores(base, folds), seed_scores(cand, folds)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jsonl", help="fold rows written by python -m training.cv --jsonl")
    p.add_argument("--arch", default="gru", choices=["gru", "lstm"])
    p.add_argument("--baseline", required=True, help="recipe name of the baseline rows")
    p.add_argument("--candidate", required=True, help="recipe name of the candidate rows")
    p.add_argument("--k", type=float, default=2.0, help="standard errors the mean difference must exceed (default 2)")
    a = p.parse_args(argv)
    try:
        if not (a.k > 0 and math.isfinite(a.k)):
            raise UserError(f"--k {a.k:g}: the number of standard errors must be a finite number above 0 (default 2)")
        rows = read_rows(a.jsonl)
        base, cand = paired_scores(rows, a.arch, a.baseline, a.candidate, a.jsonl)
        result = paired_difference(base, cand, a.k)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'seed':>4}  {'baseline':>8}  {'candidate':>9}  {'difference':>10}")
    for s, d in zip(result.seeds, result.differences):
        print(f"{s:>4}  {100 * base[s]:>7.2f}%  {100 * cand[s]:>8.2f}%  {d:>+10.2f}")
    unpaired = sorted(set(base) ^ set(cand))
    if unpaired:
        print(f"seeds run by one recipe only (not paired): {unpaired}")
    n = len(result.seeds)
    print(f"{a.arch}: {a.candidate!r} against {a.baseline!r} over {n} seed{'' if n == 1 else 's'}: {result.verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
