"""Sequence-labelling tasks (``SequenceData`` with ``head="frames"``, labels ``y [N, T]``).

``watch-frames``: the real smartwatch IMU of the ``watch`` task (same file, same subject-wise
split: test subjects 2 and 7, validation 5). Each sequence is 3 s (150 frames at 50 Hz) of ONE
subject: a piece of one exercise recording followed by a piece of a recording of another exercise
(change point uniform in [0.8 s, 2.2 s]), or, for 20% of sequences, a single exercise. Every frame
is labelled with its exercise. The join is abrupt (two recordings back to back), unlike a real
session where the arm moves between exercises; the figures are for that setting (docs/frames.md).
Sequences are drawn with a fixed seed per split, so every split is reproducible.

``fixture-frames``: tiny synthetic sequences for the tests (24 frames, 3 channels, 3 classes).
"""

from __future__ import annotations

import numpy as np

from training.data.base import SequenceData, check_range
from training.frames import join


def _draw(recs, labels, groups, length, n_per_group, min_seg, p_single, rng):
    """``n_per_group`` joined sequences per group (subject), from that group's recordings only."""
    X, Y = [], []
    for g in sorted(set(groups)):
        idx = [i for i in range(len(recs)) if groups[i] == g and len(recs[i]) >= length]
        classes = sorted({int(labels[i]) for i in idx})
        if not idx:
            continue
        for _ in range(n_per_group):
            i = idx[int(rng.integers(len(idx)))]
            others = [j for j in idx if int(labels[j]) != int(labels[i])]
            if rng.random() < p_single or len(classes) < 2 or not others:
                x, y = join(recs[i], None, int(labels[i]), -1, length, length, rng)
            else:
                j = others[int(rng.integers(len(others)))]
                change = int(rng.integers(min_seg, length - min_seg + 1))
                x, y = join(recs[i], recs[j], int(labels[i]), int(labels[j]), length, change, rng)
            X.append(x)
            Y.append(y)
    c = recs[0].shape[1]
    return (np.stack(X) if X else np.empty((0, length, c), np.float32)), (np.stack(Y) if Y else np.empty((0, length), np.int64))


def _split(recs, labels, subjects, test_subjects, val_subjects, length, counts, min_seg, p_single, seed):
    out = {}
    for k, split in enumerate(("train", "val", "test")):
        keep = [i for i, s in enumerate(subjects)
                if (split == "test") == (s in test_subjects) and (split == "val") == (s in val_subjects)]
        rng = np.random.default_rng([seed, k])
        out[split] = _draw([recs[i] for i in keep], [labels[i] for i in keep], [subjects[i] for i in keep],
                           length, counts[split], min_seg, p_single, rng)
    return out


def load_watch_frames(seed: int = 0, length_s: float = 3.0, min_segment_s: float = 0.8, p_single: float = 0.2,
                      per_subject_train: int = 200, per_subject_eval: int = 100, ignore_s: float = 0.5,
                      settle_s: float = 0.5, test_subjects=(2, 7), val_subjects=(5,)) -> SequenceData:
    from training.data.watch import SAMPLE_RATE_HZ, check_subjects, read_recordings
    check_subjects(test_subjects, val_subjects)
    rate = SAMPLE_RATE_HZ
    length, min_seg = int(round(length_s * rate)), int(round(min_segment_s * rate))
    where = "task watch-frames"
    check_range(where, "length_s", length_s, length >= 2, f"a length of at least 2 frames ({2 / rate:g} s at {rate} Hz)")
    check_range(where, "min_segment_s", min_segment_s, 0 <= min_seg <= length // 2,
                f"0 to half of length_s ({length_s} s), so that two segments fit")
    check_range(where, "p_single", p_single, 0 <= p_single <= 1, "a probability from 0 to 1")
    check_range(where, "ignore_s", ignore_s, 0 <= ignore_s and int(round(ignore_s * rate)) < length,
                f"0 or more and below length_s ({length_s} s), so that some frames are scored")
    check_range(where, "settle_s", settle_s, settle_s >= 0, "0 (score every frame as settled) or more")
    recs, labels, subjects, class_names, channels = read_recordings()
    recs = [np.asarray(r, np.float32) for r in recs]
    a = _split(recs, labels, subjects, tuple(test_subjects), tuple(val_subjects), length,
               {"train": per_subject_train, "val": per_subject_eval, "test": per_subject_eval}, min_seg, p_single, seed)
    return SequenceData(
        "watch-frames", list(class_names), *a["train"], *a["val"], *a["test"],
        info={"source": "seglearn watch_dataset.npy (real smartwatch IMU), pieces of two exercises of one subject joined",
              "channels": list(channels), "sample_rate_hz": rate, "window": length, "min_segment": min_seg,
              "p_single": p_single, "ignore_frames": int(round(ignore_s * rate)), "settle_frames": int(round(settle_s * rate)),
              "test_subjects": list(map(int, test_subjects)), "val_subjects": list(map(int, val_subjects))},
        head="frames")


def load_fixture_frames(seed: int = 0, n_rec: int = 36, rec_len: int = 80, length: int = 24, per_group: int = 40,
                        channels: int = 3) -> SequenceData:
    """Three classes of noisy sinusoids (class k: frequency and a channel-k offset), joined (a test fixture)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rec_len)[:, None]
    recs, labels = [], []
    for i in range(n_rec):
        k = i % 3
        f = (0.04, 0.11, 0.22)[k]
        x = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, (1, channels)))
        x[:, k] += 0.8
        recs.append((x + 0.15 * rng.standard_normal(x.shape)).astype(np.float32))
        labels.append(k)
    groups = [(i // 3) % 6 for i in range(n_rec)]  # "subjects" of 3 recordings (one per class): 0-3 train, 4 val, 5 test
    a = _split(recs, labels, groups, (5,), (4,), length, {"train": per_group, "val": per_group, "test": per_group},
               6, 0.2, seed)
    return SequenceData("fixture-frames", ["slow", "mid", "fast"], *a["train"], *a["val"], *a["test"],
                        info={"source": "synthetic sinusoids (frames test fixture)", "synthetic": True,
                              "channels": [f"ch{i}" for i in range(channels)], "window": length,
                              "ignore_frames": 3, "settle_frames": 3},
                        head="frames")
