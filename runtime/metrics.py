"""Parity metrics between a runtime's scores and the reference's: pure numpy functions."""

from __future__ import annotations

import numpy as np


def compare(scores: np.ndarray, reference: np.ndarray, labels: np.ndarray | None = None,
            *, head: str | None = None) -> dict:
    """Error metrics of ``scores`` against ``reference`` (both [N, K]); accuracy if labels given.

    ``head``: ``"classify"`` (top-1 agreement, accuracy on class labels ``[N]``) or ``"forecast"``
    (regression: no argmax; ``rel_err`` = RMSE / range of the reference, and with targets ``[N, K]``
    the MSE/MAE against them). Default: forecast when ``labels`` are 2-D float targets, else classify.
    Frames models (``head="frames"``) pass scores ``[N, T, K]`` and integer labels ``[N, T]``: the
    classify metrics then count every frame (top-1 agreement per frame, frame accuracy).
    """
    a = np.asarray(scores, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"scores shape {a.shape} differs from reference shape {r.shape}")
    if head is None:
        head = ("forecast" if labels is not None and np.ndim(labels) == 2 and np.asarray(labels).dtype.kind == "f"
                else "classify")
    d = a - r
    flat_a, flat_r = a.reshape(len(a), -1), r.reshape(len(r), -1)
    cos = np.sum(flat_a * flat_r, 1) / np.maximum(np.linalg.norm(flat_a, axis=1) * np.linalg.norm(flat_r, axis=1), 1e-30)
    out = {
        "max_abs_err": float(np.max(np.abs(d))) if d.size else 0.0,
        "mae": float(np.mean(np.abs(d))) if d.size else 0.0,
        "rmse": float(np.sqrt(np.mean(d ** 2))) if d.size else 0.0,
        "rel_l2": float(np.linalg.norm(d) / max(np.linalg.norm(r), 1e-30)),
        "cosine_min": float(np.min(cos)) if len(cos) else 1.0,
        "ref_peak": float(np.max(np.abs(r))) if r.size else 0.0,  # scales float limits (tolerances.abs_limit)
    }
    # errors relative to the range of the reference outputs, for every head (tolerances.score_breaches:
    # scores judged on decisions alone would pass a shifted or rescaled output, e.g. a dropped zero point)
    out.update(relative_errors(a, r))
    if head == "forecast":
        out["head"] = "forecast"  # its relative errors are above
        if labels is not None:
            out.update(target_errors(a, r, labels))
        return out
    out["top1_agreement"] = float(np.mean(a.argmax(-1) == r.argmax(-1)))
    if labels is not None:
        out["accuracy"] = float(np.mean(a.argmax(-1) == labels))
        out["reference_accuracy"] = float(np.mean(r.argmax(-1) == labels))
        out["accuracy_drop"] = out["reference_accuracy"] - out["accuracy"]
    return out


def relative_errors(outputs: np.ndarray, reference: np.ndarray) -> dict:
    """Errors relative to the reference outputs' range: ``ref_range`` = max - min over all reference
    outputs; ``rel_err`` = RMSE / ref_range; ``max_rel_err`` = max |error| / ref_range."""
    a = np.asarray(outputs, np.float64)
    r = np.asarray(reference, np.float64)
    d = a - r
    rng = float(np.max(r) - np.min(r)) if r.size else 0.0
    rmse = float(np.sqrt(np.mean(d ** 2))) if d.size else 0.0
    mx = float(np.max(np.abs(d))) if d.size else 0.0
    return {"ref_range": rng, "rel_err": rmse / max(rng, 1e-30), "max_rel_err": mx / max(rng, 1e-30)}


def regression(outputs: np.ndarray, reference: np.ndarray) -> dict:
    """A regression cell against the float reference: ``relative_errors``, marked as a forecast."""
    return {"head": "forecast", **relative_errors(outputs, reference)}


def target_errors(outputs: np.ndarray, reference: np.ndarray, targets: np.ndarray) -> dict:
    """MSE/MAE of a runtime's forecast and of the reference's against the true future frames.

    ``target_mse_increase``: relative MSE increase over the reference's (the regression analog of
    an accuracy drop; negative when the runtime happens to be closer to the targets).
    """
    a = np.asarray(outputs, np.float64)
    r = np.asarray(reference, np.float64)
    t = np.asarray(targets, np.float64)
    if t.shape != a.shape:
        raise ValueError(f"targets shape {t.shape} differs from outputs shape {a.shape}")
    if not t.size:
        return {}
    mse, ref_mse = float(np.mean((a - t) ** 2)), float(np.mean((r - t) ** 2))
    return {"target_mse": mse, "target_mae": float(np.mean(np.abs(a - t))),
            "target_rmse": float(np.sqrt(mse)), "reference_target_mse": ref_mse,
            "reference_target_mae": float(np.mean(np.abs(r - t))),
            "target_mse_increase": (mse - ref_mse) / max(ref_mse, 1e-30)}


def lsb_diff(q_a: np.ndarray, q_b: np.ndarray) -> int:
    """Largest difference, in LSBs, between two integer outputs of the same scale."""
    return int(np.max(np.abs(np.asarray(q_a, np.int64) - np.asarray(q_b, np.int64)))) if np.size(q_a) else 0


def lsb_per_row(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """Largest difference per row (first axis) between two dequantized outputs, in LSBs of their
    shared output ``scale``.

    For integer runtimes that dequantize with the same scale, ``(q_a - q_b) * scale`` is what
    the float outputs differ by, so rounding ``|a - b| / scale`` recovers ``|q_a - q_b|`` exactly.
    """
    if not scale or scale <= 0:
        raise ValueError(f"output scale must be positive, got {scale}")
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    if not d.size:
        return np.zeros(len(d), np.int64)
    return np.rint(d / scale).reshape(len(d), -1).max(axis=1).astype(np.int64)


def stream_compare(stream: np.ndarray, reference_stream: np.ndarray, *, head: str = "classify") -> dict:
    """Per-frame scores ``[N, T, K]`` of a streaming run against the reference's, every frame counted."""
    a = np.asarray(stream, np.float64)
    r = np.asarray(reference_stream, np.float64)
    if a.shape != r.shape:
        raise ValueError(f"stream shape {a.shape} differs from reference stream shape {r.shape}")
    d = np.abs(a - r)
    out = {"stream_max_abs_err": float(d.max()) if d.size else 0.0,
           "stream_mae": float(d.mean()) if d.size else 0.0,
           "stream_ref_peak": float(np.abs(r).max()) if r.size else 0.0}
    if head == "forecast":
        out["stream_rel_err"] = regression(a, r)["rel_err"] if d.size else 0.0
    else:
        out["stream_top1_agreement"] = float(np.mean(a.argmax(-1) == r.argmax(-1))) if d.size else 1.0
    return out


def agreement(a: np.ndarray, b: np.ndarray, *, head: str = "classify") -> dict:
    """How closely two runs of the same precision agree (e.g. streaming vs whole-sequence)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    out = {"max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0}
    if head == "forecast":
        out["rel_err"] = regression(a, b)["rel_err"] if a.size else 0.0
    else:
        out["top1_agreement"] = float(np.mean(a.argmax(-1) == b.argmax(-1))) if a.size else 1.0
    return out
