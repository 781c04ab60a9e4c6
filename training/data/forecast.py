"""Forecasting tasks: predict the next frames of a sensor series (``SequenceData`` with ``head="forecast"``).

``watch-forecast``: the real smartwatch IMU of the ``watch`` task (same file, same subject-wise
split: test subjects 2 and 7, validation 5). Inputs 2 s (100 frames at 50 Hz), targets the next
0.2 s (10 frames) of all 6 channels, a window every 0.5 s. ``fixture-forecast``: tiny synthetic
sinusoids for the tests. Targets are raw units, ``[N, horizon * C]`` time-major (training/forecast.py).
"""

from __future__ import annotations

import numpy as np

from training.data.base import SequenceData, check_range
from training.forecast import cut, output_names


def _split(recs, subjects, n_in, horizon, hop, test_subjects, val_subjects):
    parts = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for rec, subject in zip(recs, subjects):
        split = "test" if subject in test_subjects else "val" if subject in val_subjects else "train"
        X, Y = cut(rec, n_in, horizon, hop)
        parts[split][0].append(X)
        parts[split][1].append(Y)
    return {k: (np.concatenate(x), np.concatenate(y)) for k, (x, y) in parts.items()}


def load_watch_forecast(input_s: float = 2.0, horizon_s: float = 0.2, hop_s: float = 0.5,
                        test_subjects=(2, 7), val_subjects=(5,)) -> SequenceData:
    from training.data.watch import SAMPLE_RATE_HZ, check_subjects, read_recordings
    check_subjects(test_subjects, val_subjects)
    n_in, horizon = int(round(input_s * SAMPLE_RATE_HZ)), int(round(horizon_s * SAMPLE_RATE_HZ))
    hop = int(round(hop_s * SAMPLE_RATE_HZ))
    for name, value, frames in (("input_s", input_s, n_in), ("horizon_s", horizon_s, horizon), ("hop_s", hop_s, hop)):
        check_range("task watch-forecast", name, value, frames >= 1,
                    f"at least one frame ({1 / SAMPLE_RATE_HZ:g} s at {SAMPLE_RATE_HZ} Hz)")
    recs, _labels, subjects, _classes, channels = read_recordings()
    a = _split(recs, subjects, n_in, horizon, hop, test_subjects, val_subjects)
    return SequenceData(
        "watch-forecast", output_names(list(channels), horizon), *a["train"], *a["val"], *a["test"],
        info={"source": "seglearn watch_dataset.npy (real smartwatch IMU)", "channels": list(channels),
              "sample_rate_hz": SAMPLE_RATE_HZ, "window": n_in, "horizon": horizon, "hop": hop,
              "test_subjects": list(map(int, test_subjects)), "val_subjects": list(map(int, val_subjects))},
        head="forecast")


def load_fixture_forecast(seed: int = 0, n_rec: int = 24, rec_len: int = 160, length: int = 24, horizon: int = 3,
                          channels: int = 3, hop: int = 4) -> SequenceData:
    """Noisy sums of two sinusoids per channel, recordings split 4:1:1 (a test fixture, not a benchmark)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rec_len)[:, None]
    recs = []
    for _ in range(n_rec):
        f = rng.uniform(0.03, 0.09, (2, channels))
        ph = rng.uniform(0, 2 * np.pi, (2, channels))
        x = np.sin(2 * np.pi * f[0] * t + ph[0]) + 0.5 * np.sin(2 * np.pi * f[1] * t + ph[1])
        recs.append((x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32))
    groups = np.arange(n_rec) % 6  # "subjects": 0-3 train, 4 validation, 5 test
    a = _split(recs, groups, length, horizon, hop, (5,), (4,))
    names = [f"ch{i}" for i in range(channels)]
    return SequenceData("fixture-forecast", output_names(names, horizon), *a["train"], *a["val"], *a["test"],
                        info={"source": "synthetic sinusoids (forecast test fixture)", "synthetic": True,
                              "channels": names, "window": length, "horizon": horizon, "hop": hop},
                        head="forecast")
