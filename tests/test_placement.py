"""training/placement.py: gravity directions, the Kabsch rotation and the posture offsets of the watch recordings."""

from __future__ import annotations

import numpy as np
import pytest

from training.placement import (angles_deg, best_rotation, gravity_directions, main, offsets_deg,
                                rotation_angle_axis, subject_placement)


def rotation(axis, deg) -> np.ndarray:
    """Rodrigues: R = I + sin(t) K + (1 - cos(t)) K^2 for the unit axis's cross-product matrix K."""
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    t = np.radians(deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def unit_rows(n, seed):
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_best_rotation_recovers_a_known_turn_and_its_angle_and_axis():
    a = unit_rows(14, 0)
    r = rotation([0.3, 0.7, 0.6], 31.0)
    found = best_rotation(a, a @ r.T)
    assert np.allclose(found, r, atol=1e-12)
    angle, axis = rotation_angle_axis(found)
    assert angle == pytest.approx(31.0, abs=1e-9)
    assert np.allclose(axis, np.array([0.3, 0.7, 0.6]) / np.linalg.norm([0.3, 0.7, 0.6]), atol=1e-9)


def test_best_rotation_stays_a_rotation_when_a_reflection_would_fit_better():
    a = unit_rows(14, 1)
    mirrored = a * np.array([-1.0, 1.0, 1.0])  # only a reflection maps a onto this exactly
    r = best_rotation(a, mirrored)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert angles_deg(a @ r.T, mirrored).mean() > 1.0  # the best rotation cannot do what the reflection does


def test_gravity_directions_reflect_wrist_0_into_wrist_1s_frame():
    still = np.tile([0.6, 0.0, -0.8, 0.1, 0.2, 0.3], (50, 1))  # gravity only, plus a gyroscope that is ignored
    d = gravity_directions([still, still], [1, 0])
    assert np.allclose(d, [[0.6, 0.0, -0.8], [-0.6, 0.0, -0.8]])


def test_a_subject_wearing_the_watch_turned_is_found_and_the_turn_undone():
    """Six subjects, seven exercises each: subject 6 holds every exercise like the others but with the
    watch turned by 31 deg. Its offsets are large, one rotation removes them, the rotation is the turn;
    the others' medians are not pulled off by it (a median, not a mean)."""
    base = unit_rows(7, 2)
    turn = rotation([0.3, 0.7, 0.6], 31.0)
    jitter = [rotation(unit_rows(1, 10 + s)[0], 2.0) for s in range(6)]  # a small posture difference per subject
    directions = np.concatenate([base @ j.T for j in jitter[:5]] + [base @ jitter[5].T @ turn.T])
    labels = np.tile(np.arange(7), 6)
    subjects = np.repeat(np.arange(1, 7), 7)
    off = offsets_deg(directions, labels, subjects)
    # a direction turns by less than 31 deg the nearer it lies to the turn's axis
    assert off[subjects == 6].mean() > 20 and off[subjects == 6].min() > 10 and off[subjects != 6].max() < 5
    p = subject_placement(directions, labels, subjects, 6)
    assert p["offset_deg"] > 20 and p["after_rotation_deg"] < 5
    assert p["rotation_deg"] == pytest.approx(31.0, abs=3.0)
    assert subject_placement(directions, labels, subjects, 1)["rotation_deg"] < 5


def test_the_files_wrist_field_is_the_other_wrist_by_reflection():
    """On the real recordings: reflected, wrist 0's median gravity direction lies within 8 deg of wrist
    1's for every exercise; unreflected it is 10 to 176 deg away (so `side` is the wrist)."""
    from training.data.watch import read_recordings
    from training.placement import recording_postures
    p = recording_postures()
    recs, labels, subjects, _names, _ = read_recordings()
    assert np.array_equal(p.labels, labels) and np.array_equal(p.subjects, subjects)
    assert sorted(set(p.wrists.tolist())) == [0, 1]
    as_recorded = gravity_directions(recs, np.ones_like(p.wrists))
    assert np.allclose(p.directions[p.wrists == 1], as_recorded[p.wrists == 1])

    def median(d, mask):
        m = np.median(d[mask], axis=0)
        return m / np.linalg.norm(m)

    for c in range(7):
        w0, w1 = (labels == c) & (p.wrists == 0), (labels == c) & (p.wrists == 1)
        assert angles_deg(median(p.directions, w0), median(p.directions, w1)) < 8.0
        assert angles_deg(median(as_recorded, w0), median(p.directions, w1)) > 10.0


def test_the_placement_report_lists_every_subject_and_refuses_a_negative_count(capsys):
    assert main(["--worst", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 10 + 1 + 3 and out[0].startswith("subject")
    assert main(["--worst", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --worst -1: give how many recordings to list, 0 or more"


def test_rank_correlation_shares_ties_and_reads_only_single_subject_folds():
    from training.placement import loso_accuracy, ranks, spearman
    assert ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 7, 5, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))  # no order to correlate with
    rows = [{"arch": "gru", "recipe": "default", "seed": 0, "test_subjects": [2], "test_acc": 0.70},
            {"arch": "gru", "recipe": "default", "seed": 1, "test_subjects": [2], "test_acc": 0.80},
            {"arch": "gru", "recipe": "default", "seed": 0, "test_subjects": [1, 3], "test_acc": 0.99},
            {"arch": "lstm", "recipe": "default", "seed": 0, "test_subjects": [4], "test_acc": 0.60},
            {"arch": "gru", "recipe": "other", "seed": 0, "test_subjects": [5], "test_acc": 0.50}]
    assert loso_accuracy(rows, "gru") == {2: pytest.approx(0.75)}


def test_the_loso_report_draws_its_plot_and_names_what_is_missing(tmp_path, capsys):
    import json
    rows = [{"arch": "gru", "recipe": "default", "seed": 0, "fold": s - 1, "test_subjects": [s], "test_acc": a}
            for s, a in ((1, 0.95), (2, 0.75), (3, 0.90), (7, 0.85))]
    fold_file = tmp_path / "loso.jsonl"
    fold_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--loso", str(fold_file), "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("gru: 4 subjects, rank correlation of offset and held-out accuracy")
    # subjects 2 and 7 pooled, weighted by their test windows
    from training.data.watch import load_watch
    n2, n7 = (len(load_watch(test_subjects=(s,)).y_test) for s in (2, 7))
    assert out[-1] == ("gru: subjects 2, 7 pooled over their windows, each held out with the other trained on: "
                       f"{100 * (0.75 * n2 + 0.85 * n7) / (n2 + n7):.1f}%")
    fold_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))  # subject 7 not held out: no pooled line
    assert main(["--loso", str(fold_file)]) == 0
    assert all("pooled" not in line for line in capsys.readouterr().out.splitlines())
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fold_file.write_text(json.dumps({**rows[0], "test_subjects": [1, 2]}) + "\n")
    assert main(["--loso", str(fold_file)]) == 2
    assert "holds no leave-one-subject-out rows" in capsys.readouterr().err
    assert main(["--plot", str(tmp_path / "q.png")]) == 2
    assert capsys.readouterr().err.strip() == "error: --plot draws the --loso rows: give --loso FILE too"
