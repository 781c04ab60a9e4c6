"""The recipe-adoption rule (training/compare.py) and the fold rows training.cv files for it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from runtime.errors import UserError
from training.compare import fold_sets, main, paired_difference, paired_scores, read_rows, seed_scores

DEV_ROWS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "watch-dev-reverse-roll.jsonl"


def rows(recipe, accs_by_seed, arch="lstm"):
    return [{"arch": arch, "recipe": recipe, "seed": s, "fold": f, "test_acc": a}
            for s, accs in accs_by_seed.items() for f, a in enumerate(accs)]


def test_seed_scores_average_the_folds_and_drop_an_unfinished_seed():
    r = rows("base", {0: [0.90, 0.92, 0.94, 0.88], 1: [0.91, 0.93, 0.95, 0.89], 2: [0.5, 0.5]})
    r += rows("base", {0: [0.0] * 4}, arch="gru")  # another architecture is not mixed in
    scores = seed_scores(fold_sets(r, "lstm", "base"), {0, 1, 2, 3})
    assert sorted(scores) == [0, 1]
    assert scores[0] == pytest.approx(0.91) and scores[1] == pytest.approx(0.92)


def test_recipes_are_compared_on_the_same_folds_only():
    """A candidate run on fold 0 alone is not set against the baseline's four-fold means."""
    r = rows("base", {0: [0.90, 0.92, 0.94, 0.88], 1: [0.91, 0.93, 0.95, 0.89]}) + rows("one fold", {0: [0.99], 1: [0.99]})
    base, cand = paired_scores(r, "lstm", "base", "one fold", "rows.jsonl")
    assert sorted(base) == [0, 1] and cand == {}
    with pytest.raises(UserError, match="share no seed with the same folds run"):
        paired_difference(base, cand)


def test_paired_difference_is_the_mean_over_seeds_with_its_standard_error():
    base = {0: 0.90, 1: 0.92, 2: 0.91, 3: 0.93}
    cand = {0: 0.92, 1: 0.93, 2: 0.93, 3: 0.94, 4: 0.99}  # seed 4 has no baseline: not paired
    p = paired_difference(base, cand)
    assert p.seeds == (0, 1, 2, 3)
    assert p.differences == pytest.approx((2.0, 1.0, 2.0, 1.0))
    assert p.mean == pytest.approx(1.5)
    assert p.standard_error == pytest.approx(math.sqrt(1 / 3) / 2)  # sample sd sqrt(1/3), four seeds
    assert p.adopt and p.verdict.startswith("adopt: mean +1.50 > 0.58 = 2 x standard error 0.29")


def test_a_gain_that_the_seeds_disagree_on_is_not_adopted():
    """+1.5 on average, but one seed says -2: the mean is within two standard errors."""
    base = {0: 0.90, 1: 0.90, 2: 0.90, 3: 0.90}
    p = paired_difference(base, {0: 0.93, 1: 0.93, 2: 0.88, 3: 0.92})
    assert p.mean == pytest.approx(1.5) and not p.adopt
    assert p.verdict.startswith("do not adopt")
    assert paired_difference(base, {0: 0.95}).verdict.startswith("undecided: one seed in common")
    assert not paired_difference(base, {0: 0.95}).adopt
    with pytest.raises(UserError, match="share no seed"):
        paired_difference(base, {7: 0.95})


def test_compare_reads_the_documented_dev_rows(capsys):
    """docs/watch-experiments.md: tempo on the LSTM, seeds 0-3, mean paired difference +0.0 +- 0.5: not adopted."""
    assert main([str(DEV_ROWS), "--arch", "lstm", "--baseline", "default (train_overlap 0.75, 50 epochs)",
                 "--candidate", "default + tempo=0.2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["0", "91.24%", "92.38%", "+1.15"]
    assert out[-1].endswith("over 4 seeds: do not adopt: mean +0.01 <= 0.95 = 2 x standard error 0.47")


def test_compare_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "rows.jsonl"
    bad.write_text(json.dumps(rows("a", {0: [0.9]})[0]) + "\n{not json\n")
    assert main([str(bad), "--baseline", "a", "--candidate", "b", "--arch", "lstm"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}:2: not a JSON object (Expecting property name enclosed in double quotes); each line must be one fold row"
    bad.write_text(json.dumps(rows("a", {0: [0.9]})[0]) + "\n")
    assert main([str(bad), "--baseline", "a", "--candidate", "b", "--arch", "lstm"]) == 2
    assert capsys.readouterr().err.strip() == f"error: no lstm rows of recipe 'b' in {bad}; it has: 'a'"
    assert main([str(tmp_path / "none.jsonl"), "--baseline", "a", "--candidate", "b"]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad.write_text('{"arch": "gru"}\n')
    with pytest.raises(UserError, match=r"rows.jsonl:1: a fold row needs arch, recipe, seed, fold and test_acc"):
        read_rows(bad)


def test_cv_files_fold_rows_that_compare_pairs(tmp_path, capsys):
    """Two one-epoch recipes on dev fold 0, seed 0: each run appends its row after the file's earlier
    lines; compare pairs them on their one common seed and will not decide on it."""
    from training.cv import main as cv
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"arch": "gru", "recipe": "earlier", "seed": 0, "fold": 0, "test_acc": 0.5}')  # no newline
    tiny = ["--arch", "lstm", "--dev", "--fold", "0", "--set", "hidden=8", "--set", "swa=0", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "cv.json"), "--jsonl", str(jsonl)]
    assert cv(tiny + ["--set", "epochs=1", "--recipe", "one epoch"]) == 0
    assert cv(tiny + ["--set", "epochs=2", "--recipe", "two epochs"]) == 0
    got = read_rows(jsonl)
    assert [r["recipe"] for r in got] == ["earlier", "one epoch", "two epochs"]
    assert got[1]["arch"] == "lstm" and got[1]["seed"] == 0 and got[1]["fold"] == 0 and got[1]["test_subjects"] == [1, 3]
    assert got[2]["test_acc"] == json.loads(Path(tmp_path / "cv.json").read_text())["folds"][0]["test_acc"]
    assert "cores" in got[1]["box"]
    capsys.readouterr()
    assert main([str(jsonl), "--arch", "lstm", "--baseline", "one epoch", "--candidate", "two epochs"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("over 1 seed: undecided: one seed in common, the rule needs at least two")
    assert cv(tiny[:-2] + ["--jsonl", str(jsonl)]) == 2
    assert capsys.readouterr().err.strip() == "error: --jsonl and --recipe go together: name the recipe the fold rows are filed under"


GOOD = {"arch": "gru", "recipe": "a", "seed": 0, "fold": 0, "test_acc": 0.9}


@pytest.mark.parametrize("change, message", [
    ({"seed": "abc"}, "seed must be a whole number, got 'abc'"),
    ({"seed": None}, "seed must be a whole number, got None"),
    ({"seed": 0.7}, "seed must be a whole number, got 0.7"),
    ({"fold": True}, "fold must be a whole number, got True"),
    ({"test_acc": "x"}, "test_acc must be a finite fraction from 0 to 1 (0.93, not 93), got 'x'"),
    ({"test_acc": math.nan}, "test_acc must be a finite fraction from 0 to 1 (0.93, not 93), got nan"),
    ({"test_acc": 80}, "test_acc must be a finite fraction from 0 to 1 (0.93, not 93), got 80"),
    ({"recipe": ["a"]}, "recipe must be a non-empty string, got ['a']"),
    ({"recipe": " "}, "recipe must be a non-empty string, got ' '"),
])
def test_a_malformed_fold_row_is_one_error_naming_its_line(tmp_path, capsys, change, message):
    bad = tmp_path / "rows.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "seed": 1, **change}) + "\n")
    assert main([str(bad), "--baseline", "a", "--candidate", "b"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}:2: {message}; fix or remove the line"


def test_whole_float_seeds_are_read_as_ints(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({**GOOD, "seed": 1.0, "fold": 2.0}) + "\n")
    assert read_rows(path) == [{**GOOD, "seed": 1, "fold": 2}]


def test_a_repeated_fold_row_is_refused_naming_both_lines(tmp_path, capsys):
    bad = tmp_path / "rows.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in [GOOD, {**GOOD, "arch": "lstm"}, {**GOOD, "test_acc": 0.5}]) + "\n")
    assert main([str(bad), "--baseline", "a", "--candidate", "b"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}: lines 1 and 3 are both gru recipe 'a' seed 0 fold 0; keep one of them"


def test_a_file_that_is_not_utf8_is_one_error(tmp_path, capsys):
    bad = tmp_path / "rows.jsonl"
    bad.write_bytes(b"\xff\xfe{}\n")
    assert main([str(bad), "--baseline", "a", "--candidate", "b"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {bad} is not UTF-8 text (byte 0); "
                                               "give the .jsonl file that training.cv --jsonl wrote")


@pytest.mark.parametrize("k", ["-5", "0", "nan"])
def test_k_must_be_above_zero(tmp_path, capsys, k):
    assert main([str(DEV_ROWS), "--arch", "lstm", "--baseline", "a", "--candidate", "b", "--k", k]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --k {float(k):g}: the number of standard errors must be "
                                               "a finite number above 0 (default 2)")
