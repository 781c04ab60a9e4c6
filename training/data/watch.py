"""``watch``: real smartwatch IMU recordings of shoulder-rehabilitation exercises.

Accelerometer + gyroscope (6 channels) at 50 Hz, 7 exercise classes, 10 subjects, 140
recordings. The data file ships inside the seglearn wheel; we locate it without importing
seglearn, check its sha256 and read it with an allow-list unpickler (it is a pickled dict).

Windows: 2 s (100 samples) with 50% overlap. Splits are by subject, so the test accuracy is on
people the model has never seen.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from runtime.errors import UserError
from runtime.imu_features import check_features, feature_channels, imu_features
from training.data.base import SequenceData
from training.data.safe_npy import load_object_npy

SHA256 = "eb122f23cdf06ef6bd6c6c5312958ec5cf9d038e2e6d457b8081662c75a42537"
SAMPLE_RATE_HZ = 50
# The same watch on the other wrist: a reflection x -> -x of the accelerometer (a polar vector);
# the gyroscope measures an axial vector, which a reflection M turns into det(M) * M @ w =
# (wx, -wy, -wz). (Negating wx instead, as for a polar vector, lowered dev-CV accuracy: 86.1% vs 90.0%.)
# Used by the mirroring augmentation (training/trainer.py) and by training/placement.py.
MIRROR_SIGNS = (-1.0, 1.0, 1.0, 1.0, -1.0, -1.0)
TEST_SUBJECTS = (2, 7)
VAL_SUBJECTS = (5,)
SUBJECTS = tuple(range(1, 11))  # the recordings' subject ids


def find_watch_file() -> Path:
    """Path of seglearn/data/watch_dataset.npy, found without importing seglearn."""
    spec = importlib.util.find_spec("seglearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the watch dataset ships in the seglearn wheel, which is not installed: run `pip install --no-deps seglearn==1.2.5`")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "watch_dataset.npy"
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall with `pip install --force-reinstall --no-deps seglearn==1.2.5`")
    return path


def read_watch_file(path: Path | None = None) -> dict:
    """The dataset's dict (X, y, subject, side, y_labels, X_labels), after its sha256 is checked."""
    path = path or find_watch_file()
    data = path.read_bytes()  # hashed and unpickled from the same bytes: the file is not read twice
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise UserError(f"{path} has sha256 {digest[:12]}..., not the known watch dataset: reinstall seglearn==1.2.5")
    return load_object_npy(path, data=data)


def read_recordings(path: Path | None = None):
    """The raw recordings: list of [T, 6] arrays, labels, subjects, class names, channel names."""
    d = read_watch_file(path)
    return d["X"], np.asarray(d["y"]), np.asarray(d["subject"]), list(d["y_labels"]), list(d["X_labels"])


def window(rec: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Cut one recording [T, C] into windows [N, length, C] starting every ``hop`` samples."""
    starts = range(0, len(rec) - length + 1, hop)
    return np.stack([rec[s:s + length] for s in starts]) if len(rec) >= length else np.empty((0, length, rec.shape[1]))


def decimate(rec: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping groups of ``factor`` samples (a box low-pass, then downsampling)."""
    n = len(rec) // factor * factor
    return rec[:n].reshape(-1, factor, rec.shape[1]).mean(1) if factor > 1 else rec


def check_split_options(window_s: float, overlap: float, decimation: int, test_subjects, val_subjects,
                        train_overlap: float | None = None) -> None:
    """One clear error for windowing or split options that cannot work (a pure check)."""
    if decimation < 1:
        raise UserError(f"decimation = {decimation}: choose 1 (50 Hz) or more")
    if not window_s * SAMPLE_RATE_HZ / decimation >= 2:
        raise UserError(f"window_s = {window_s} at decimation = {decimation} ({SAMPLE_RATE_HZ / decimation:g} Hz) holds "
                        f"fewer than 2 samples: choose a longer window or a smaller decimation (e.g. 2.0 and 1)")
    if not 0 <= overlap < 1:
        raise UserError(f"overlap = {overlap}: choose a fraction at least 0 and below 1 (e.g. 0.5)")
    if train_overlap is not None and not 0 <= train_overlap < 1:
        raise UserError(f"train_overlap = {train_overlap}: choose a fraction at least 0 and below 1 (e.g. 0.9), "
                        f"or leave it out to window training data like the rest")
    check_subjects(test_subjects, val_subjects)


def check_subjects(test_subjects, val_subjects) -> None:
    """Held-out subjects must exist, be disjoint and leave some subject to train on."""
    for name, group in (("test_subjects", test_subjects), ("val_subjects", val_subjects)):
        bad = [s for s in group if s not in SUBJECTS]
        if bad or not group:
            raise UserError(f"{name} = {list(group)}: choose one or more of the subjects {', '.join(map(str, SUBJECTS))}")
    both = sorted(set(test_subjects) & set(val_subjects))
    if both:
        raise UserError(f"subject(s) {', '.join(map(str, both))} in both test_subjects and val_subjects: a subject belongs to one split")
    if len(set(test_subjects) | set(val_subjects)) >= len(SUBJECTS):
        raise UserError(f"test_subjects and val_subjects leave no subject to train on: the data has subjects "
                        f"{min(SUBJECTS)}-{max(SUBJECTS)}; hold out fewer")


def load_watch(window_s: float = 2.0, overlap: float = 0.5, decimation: int = 1,
               test_subjects=TEST_SUBJECTS, val_subjects=VAL_SUBJECTS, val_in_train: bool = False,
               train_overlap: float | None = None, features: str = "raw") -> SequenceData:
    """Windows of every recording, split by subject. ``val_in_train`` also trains on the validation
    subjects (with ``keep = "last"``, when the epoch budget was chosen beforehand, e.g. by
    ``python -m training.cv --dev``); their windows then still feed the validation curve.
    ``train_overlap`` windows the training split more densely than validation and test (e.g. 0.9:
    a window every 0.2 s), so training sees more of each recording's offsets; the evaluation splits
    keep ``overlap``. ``features``: "raw" (the six channels) or "magnitude" (+ |a| and |w|, a dev-fold
    experiment, ``runtime/imu_features.py``)."""
    check_split_options(window_s, overlap, decimation, test_subjects, val_subjects, train_overlap)
    check_features(features)
    recs, labels, subjects, class_names, channels = read_recordings()
    rate = SAMPLE_RATE_HZ / decimation
    recs = [imu_features(decimate(np.asarray(r, dtype=np.float32), decimation), features) for r in recs]
    channels = list(channels) + feature_channels(features)
    length = int(round(window_s * rate))
    hop = max(1, int(round(length * (1 - overlap))))
    train_hop = hop if train_overlap is None else max(1, int(round(length * (1 - train_overlap))))
    parts = {"train": ([], []), "val": ([], []), "test": ([], [])}
    groups = []  # the subject of each training window
    test_recordings = []  # the recording (index in the file) of each test window
    for index, (rec, label, subject) in enumerate(zip(recs, labels, subjects)):
        split = "test" if subject in test_subjects else "val" if subject in val_subjects else "train"
        rec = np.asarray(rec, dtype=np.float32)
        w = window(rec, length, train_hop if split == "train" else hop)
        parts[split][0].append(w)
        parts[split][1].append(np.full(len(w), int(label)))
        if split == "test":
            test_recordings.append(np.full(len(w), index))
        if split == "train":
            groups.append(np.full(len(w), int(subject)))
        if split == "val" and val_in_train:
            wt = window(rec, length, train_hop)
            parts["train"][0].append(wt)
            parts["train"][1].append(np.full(len(wt), int(label)))
            groups.append(np.full(len(wt), int(subject)))
    arrays = {k: (np.concatenate(x), np.concatenate(y)) for k, (x, y) in parts.items()}
    empty = [k for k, (x, _) in arrays.items() if not len(x)]
    if empty:
        longest = max(len(r) for r in recs) / rate
        raise UserError(f"window_s = {window_s} s is longer than every recording of the {empty[0]} split "
                        f"(the longest recording of all: {longest:.1f} s): choose e.g. window_s = 2.0")
    return SequenceData(
        name="watch", class_names=class_names,
        X_train=arrays["train"][0], y_train=arrays["train"][1],
        X_val=arrays["val"][0], y_val=arrays["val"][1],
        X_test=arrays["test"][0], y_test=arrays["test"][1],
        info={"source": "seglearn watch_dataset.npy (real smartwatch IMU)", "channels": channels,
              "sample_rate_hz": rate, "window": length, "hop": hop, "train_hop": train_hop,
              "test_subjects": list(map(int, test_subjects)), "val_subjects": list(map(int, val_subjects)),
              "val_in_train": bool(val_in_train)},
        groups_train=np.concatenate(groups),
        recordings_test=np.concatenate(test_recordings),
    )
