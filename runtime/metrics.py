"""Parity metrics between a runtime's scores and the reference's: pure numpy functions."""

from __future__ import annotations

import numpy as np


def compare(scores: np.ndarray, reference: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Error metrics of ``scores`` against ``reference`` (both [N, K]); accuracy if labels given."""
    a = np.asarray(scores, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"scores shape {a.shape} differs from reference shape {r.shape}")
    d = a - r
    flat_a, flat_r = a.reshape(len(a), -1), r.reshape(len(r), -1)
    cos = np.sum(flat_a * flat_r, 1) / np.maximum(np.linalg.norm(flat_a, axis=1) * np.linalg.norm(flat_r, axis=1), 1e-30)
    out = {
        "max_abs_err": float(np.max(np.abs(d))) if d.size else 0.0,
        "mae": float(np.mean(np.abs(d))) if d.size else 0.0,
        "rmse": float(np.sqrt(np.mean(d ** 2))) if d.size else 0.0,
        "rel_l2": float(np.linalg.norm(d) / max(np.linalg.norm(r), 1e-30)),
        "cosine_min": float(np.min(cos)) if len(cos) else 1.0,
        "top1_agreement": float(np.mean(a.argmax(-1) == r.argmax(-1))),
    }
    if labels is not None:
        out["accuracy"] = float(np.mean(a.argmax(-1) == labels))
        out["reference_accuracy"] = float(np.mean(r.argmax(-1) == labels))
        out["accuracy_drop"] = out["reference_accuracy"] - out["accuracy"]
    return out


def lsb_diff(q_a: np.ndarray, q_b: np.ndarray) -> int:
    """Largest difference, in LSBs, between two integer outputs of the same scale."""
    return int(np.max(np.abs(np.asarray(q_a, np.int64) - np.asarray(q_b, np.int64)))) if np.size(q_a) else 0


def lsb_distance(a: np.ndarray, b: np.ndarray, scale: float) -> int:
    """Largest difference between two dequantized outputs, in LSBs of their shared output ``scale``.

    For integer runtimes that dequantize with the same scale, ``(q_a - q_b) * scale`` is what
    the float outputs differ by, so rounding ``|a - b| / scale`` recovers ``|q_a - q_b|`` exactly.
    """
    if not scale or scale <= 0:
        raise ValueError(f"output scale must be positive, got {scale}")
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return int(np.max(np.rint(d / scale))) if d.size else 0


def stream_compare(stream: np.ndarray, reference_stream: np.ndarray) -> dict:
    """Per-frame scores ``[N, T, K]`` of a streaming run against the reference's, every frame counted."""
    a = np.asarray(stream, np.float64)
    r = np.asarray(reference_stream, np.float64)
    if a.shape != r.shape:
        raise ValueError(f"stream shape {a.shape} differs from reference stream shape {r.shape}")
    d = np.abs(a - r)
    return {"stream_max_abs_err": float(d.max()) if d.size else 0.0,
            "stream_mae": float(d.mean()) if d.size else 0.0,
            "stream_top1_agreement": float(np.mean(a.argmax(-1) == r.argmax(-1))) if d.size else 1.0}


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """How closely two runs of the same precision agree (e.g. streaming vs whole-sequence)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return {"max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0,
            "top1_agreement": float(np.mean(a.argmax(-1) == b.argmax(-1))) if a.size else 1.0}
