"""``fixture``: a tiny synthetic task for fast tests (not a benchmark of anything).

Each class is a noisy sinusoid pattern with its own frequency per channel, so a small RNN learns
it in seconds. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

from training.data.base import SequenceData


def make_split(rng: np.random.Generator, n: int, length: int, channels: int, classes: int):
    y = rng.integers(0, classes, n)
    t = np.arange(length)[None, :, None]
    freq = 0.04 + 0.05 * ((y[:, None, None] + np.arange(channels)[None, None, :]) % classes)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, channels))
    X = np.sin(2 * np.pi * freq * t + phase) + 0.3 * rng.standard_normal((n, length, channels))
    return X.astype(np.float32), y


def load_fixture(seed: int = 0, n_train: int = 384, n_eval: int = 128, length: int = 24,
                 channels: int = 3, classes: int = 4) -> SequenceData:
    rng = np.random.default_rng(seed)
    tr, va, te = (make_split(rng, n, length, channels, classes) for n in (n_train, n_eval, n_eval))
    return SequenceData("fixture", [f"c{i}" for i in range(classes)], *tr, *va, *te,
                        info={"source": "synthetic sinusoids (test fixture)", "synthetic": True})
