"""Forecasting (regression head): pure numpy functions shared by data, training, export and parity.

A forecast model reads ``n_in`` frames ``[T, C]`` and outputs the next ``horizon`` frames of all
``C`` channels, flattened time-major: output ``k = s * C + c`` is frame ``t + 1 + s`` of channel
``c``. Outputs live in the **normalized** feature space, ``(x - input_mean) / input_std`` with the
checkpoint's own per-channel statistics: accelerometer (m/s^2) and gyroscope (rad/s) channels then
weigh alike in the MSE, and the int8 output scale sees values of order 1, like the inputs.
Datasets keep targets in raw units (``SequenceData.y_*`` ``[N, horizon * C]``); ``target_space``
maps them with the checkpoint's normalization.
"""

from __future__ import annotations

import numpy as np


def cut(rec: np.ndarray, n_in: int, horizon: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """One recording ``[T, C]`` -> inputs ``[N, n_in, C]`` and raw targets ``[N, horizon * C]``."""
    rec = np.asarray(rec, np.float32)
    c = rec.shape[1]
    starts = range(0, len(rec) - (n_in + horizon) + 1, hop)
    if len(rec) < n_in + horizon:
        return np.empty((0, n_in, c), np.float32), np.empty((0, horizon * c), np.float32)
    X = np.stack([rec[s:s + n_in] for s in starts])
    Y = np.stack([rec[s + n_in:s + n_in + horizon].reshape(-1) for s in starts])
    return X, Y


def output_names(channels: list[str], horizon: int) -> list[str]:
    """Names of the flattened outputs: ``t+1:acc_x``, ... (what ``class_names`` holds for a forecast)."""
    return [f"t+{s + 1}:{ch}" for s in range(horizon) for ch in channels]


def target_space(y_raw: np.ndarray, mean, std) -> np.ndarray:
    """Raw targets ``[N, horizon * C]`` -> the normalized space the model predicts in."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    y = np.asarray(y_raw, np.float32)
    c = len(mean)
    if y.ndim != 2 or y.shape[1] % c:
        raise ValueError(f"forecast targets must be [N, horizon * {c}], got {y.shape}")
    return ((y.reshape(len(y), -1, c) - mean) / std).reshape(len(y), -1).astype(np.float32)


def last_value(x_norm: np.ndarray, horizon: int) -> np.ndarray:
    """The naive forecast: the last input frame repeated ``horizon`` times ``[N, horizon * C]``."""
    x = np.asarray(x_norm, np.float32)
    return np.tile(x[:, -1], (1, horizon))


def errors(pred: np.ndarray, target: np.ndarray) -> dict:
    """MSE and MAE of ``pred`` against ``target`` (same shape), in the targets' units."""
    d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    if d.size == 0:
        return {"mse": 0.0, "mae": 0.0}
    return {"mse": float(np.mean(d ** 2)), "mae": float(np.mean(np.abs(d)))}


def report(pred: np.ndarray, target: np.ndarray, x_norm: np.ndarray, horizon: int) -> dict:
    """Model vs the naive last-value forecast on the same windows (normalized units).

    ``mse_ratio`` < 1 means the model beats repeating the last frame.
    """
    model = errors(pred, target)
    naive = errors(last_value(x_norm, horizon), target)
    return {"mse": model["mse"], "mae": model["mae"], "naive_mse": naive["mse"], "naive_mae": naive["mae"],
            "mse_ratio": model["mse"] / max(naive["mse"], 1e-30), "mae_ratio": model["mae"] / max(naive["mae"], 1e-30)}
