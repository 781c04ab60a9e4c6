"""Sequence labelling (``head="frames"``): pure numpy functions shared by data, training, export and parity.

A frames model reads ``T`` frames ``[T, C]`` and outputs class scores after **every** frame,
``[T, K]``; each frame has its own label (``y [N, T]``). The tasks (training/data/frames.py) join
segments of different activities, so the model must notice when the activity changes.

- ``join``: two pieces of recordings of different classes back to back (or one piece: no change),
  with per-frame labels.
- The first frames of a sequence carry too little context to name the activity; training ignores
  the first ``ignore_frames`` frames in the loss and the headline frame accuracy skips them too.
- ``settled_mask``: frames at least ``settle`` frames after the start and after every label change;
  the accuracy there says how well the model labels an activity once it had time to see it.
"""

from __future__ import annotations

import numpy as np


def join(a: np.ndarray, b: np.ndarray | None, label_a: int, label_b: int, length: int, change: int,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``change`` frames from a random place in recording ``a``, then ``length - change`` from ``b``.

    ``b`` None: ``length`` frames of ``a`` only (no change). Returns ``x [length, C]``, ``y [length]``.
    """
    if b is None:
        s = int(rng.integers(0, len(a) - length + 1))
        return np.asarray(a[s:s + length], np.float32), np.full(length, label_a, np.int64)
    s = int(rng.integers(0, len(a) - change + 1))
    r = length - change
    t = int(rng.integers(0, len(b) - r + 1))
    x = np.concatenate([a[s:s + change], b[t:t + r]]).astype(np.float32)
    y = np.concatenate([np.full(change, label_a), np.full(r, label_b)]).astype(np.int64)
    return x, y


def settled_mask(y: np.ndarray, settle: int) -> np.ndarray:
    """``[N, T]`` True where at least ``settle`` frames passed since the start and since the last label change."""
    y = np.asarray(y)
    n, t = y.shape
    since = np.zeros((n, t), np.int64)
    for i in range(1, t):
        since[:, i] = np.where(y[:, i] == y[:, i - 1], since[:, i - 1] + 1, 0)
    return since >= settle


def frame_metrics(scores: np.ndarray, y: np.ndarray, ignore_frames: int = 0, settle: int = 0) -> dict:
    """Frame accuracy of ``scores [N, T, K]`` against ``y [N, T]``.

    ``frame_acc``: frames from ``ignore_frames`` on; ``frame_acc_all``: every frame; ``settled_acc``:
    frames ``settle`` or more after the start and after each change (``settled_mask``).
    """
    pred = np.asarray(scores).argmax(-1)
    y = np.asarray(y)
    ok = pred == y
    out = {"frame_acc": float(ok[:, ignore_frames:].mean()) if ok[:, ignore_frames:].size else 0.0,
           "frame_acc_all": float(ok.mean()) if ok.size else 0.0}
    if settle:
        m = settled_mask(y, settle)
        out["settled_acc"] = float(ok[m].mean()) if m.any() else 0.0
        out["settled_frames"] = float(m.mean()) if m.size else 0.0
    return out


def confusion(pred: np.ndarray, y: np.ndarray, k: int, ignore_frames: int = 0) -> np.ndarray:
    """Per-frame confusion matrix (rows: true class), frames from ``ignore_frames`` on."""
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (np.asarray(y)[:, ignore_frames:].ravel(), np.asarray(pred)[:, ignore_frames:].ravel()), 1)
    return m
