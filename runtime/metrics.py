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
