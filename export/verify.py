"""Check an artifact against the float PyTorch model, by the tolerance of its precision.

Reusable by every exporter (ONNX, TFLite, C): give ``verify_predict`` a callable
``predict(x_norm [N, T, C] float32) -> scores [N, K]`` running the artifact in its runtime, the
artifact's precision, and the ``Reference`` (PyTorch scores on the held-out test split). It
returns the record fields ``accuracy``, ``metrics``, ``status`` and ``error``::

    from export.verify import reference_for, verify_predict
    ref = reference_for(model, meta, data)          # cached per model and data
    record.update(verify_predict(lambda x: my_runtime(x), "int8", ref))

Streaming artifacts also pass ``stream(x_norm [N, T, C]) -> per-step scores [N, T, K]``: it is
compared step by step with ``model.stream`` and, at the last step, with PyTorch's whole-sequence
scores (``stream_vs_sequence_max_abs``, judged by the precision's ``max_abs``). An exporter that
also has the whole-sequence graph of the same runtime puts the last-step difference to it in
``metrics["stream_vs_own_sequence_max_abs"]``: float32 must agree within ``STREAM_TOLERANCE``.

Status: ``ok`` (within tolerance), ``out-of-tolerance`` (ran, but outside the policy in
runtime/tolerances.py; ``error`` says which limit), ``failed`` (did not run; set by the caller).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from runtime.errors import UserError
from runtime.metrics import compare
from runtime.tolerances import abs_limit, regression_breaches, score_breaches, tolerance_for

STREAM_TOLERANCE = 1e-5  # float32 step-by-step vs whole-sequence scores (acceptance criterion)
N_GOLDEN = 8
N_STREAM = 64


@dataclasses.dataclass
class Reference:
    """PyTorch float scores on the normalized test split, plus the golden subset."""

    x: np.ndarray  # [N, T, C] normalized test windows
    y: np.ndarray  # [N] labels; forecast: [N, K] targets in the model's normalized space
    scores: np.ndarray  # [N, K] PyTorch logits (forecast: predicted frames)
    accuracy: float | None  # None for a forecast (see ``forecast``)
    stream_idx: np.ndarray  # indices of the windows streamed step by step
    stream_scores: np.ndarray  # [n, T, K] PyTorch per-step logits on those windows
    golden_idx: np.ndarray  # indices of the golden samples (a prefix of stream_idx)
    x_raw: np.ndarray  # [N, T, C] raw test windows (golden.npz keeps x_raw[golden_idx])
    head: str = "classify"
    forecast: dict | None = None  # forecast: MSE/MAE of PyTorch and of the naive last-value forecast


def sequence_from_stream(per_step: np.ndarray, head: str) -> np.ndarray:
    """What the whole-sequence graph outputs, from a stream ``[N, T, K]``: the last step, or (frames) every step."""
    return per_step if head == "frames" else per_step[:, -1]


def normalize(X: np.ndarray, meta: dict) -> np.ndarray:
    """``(X - input_mean) / input_std``, the manifest's ``preprocess`` step."""
    mean = np.asarray(meta["input_mean"], np.float32)
    std = np.asarray(meta["input_std"], np.float32)
    return ((np.asarray(X, np.float32) - mean) / std).astype(np.float32)


def _spread(y: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` indices covering every class first (round robin over classes), sorted.

    Forecast targets ``[N, K]`` have no classes: ``n`` indices spread evenly over the split.
    """
    if np.ndim(y) == 2:
        return np.unique(np.linspace(0, len(y) - 1, min(n, len(y))).round().astype(np.int64))
    by_class = [list(np.flatnonzero(y == c)) for c in np.unique(y)]
    picked: list[int] = []
    while len(picked) < min(n, len(y)):
        for idx in by_class:
            if idx and len(picked) < n:
                picked.append(int(idx.pop(0)))
    return np.asarray(picked, dtype=np.int64)


_CACHE: dict = {}


def check_data_fits(model, data) -> None:
    """One line, before any work, when the data the export calibrates and verifies on is not the
    shape the model was trained for (a data file changed since training)."""
    if data.input_size != model.spec.input_size:
        raise UserError(f"the data has {data.input_size} channels but the model expects {model.spec.input_size}: "
                        f"export with the task the checkpoint was trained on")


def reference_for(model, meta: dict, data) -> Reference:
    """Build (once per model and data object) the PyTorch reference on the test split."""
    check_data_fits(model, data)
    key = (id(model), id(data))
    if key in _CACHE:
        return _CACHE[key]
    import torch
    x = normalize(data.X_test, meta)
    head = getattr(model.spec, "head", "classify")
    y = data.y_test
    if head == "forecast":
        from training.forecast import report, target_space
        y = target_space(y, meta["input_mean"], meta["input_std"])
    with torch.no_grad():
        scores = np.concatenate([model(torch.from_numpy(x[i:i + 512])).numpy() for i in range(0, len(x), 512)])
        stream_idx = _spread(y, N_STREAM)
        stream_scores = model.stream(torch.from_numpy(x[stream_idx])).numpy()
    accuracy = fc = None
    if head == "forecast":
        fc = report(scores, y, x, y.shape[1] // x.shape[2])
    else:  # frames: scores [N, T, K], labels [N, T]: frame accuracy over every frame
        accuracy = float(np.mean(scores.argmax(-1) == y))
    ref = Reference(x=x, y=y, scores=scores, accuracy=accuracy,
                    stream_idx=stream_idx, stream_scores=stream_scores, golden_idx=stream_idx[:N_GOLDEN],
                    x_raw=np.asarray(data.X_test, np.float32), head=head, forecast=fc)
    _CACHE.clear()  # keep one: references hold the whole test split
    _CACHE[key] = ref
    return ref


def judge(metrics: dict, precision: str) -> tuple[str, str | None]:
    """``(status, error)`` of ``metrics`` (runtime.metrics.compare output) under the policy."""
    tol = tolerance_for(precision)
    problems = []
    limit = abs_limit(tol, metrics.get("ref_peak"))  # float formats: relative to the reference's peak score
    if limit is not None and metrics["max_abs_err"] > limit:
        problems.append(f"max |error| {metrics['max_abs_err']:.3g} > {limit:.3g}")
    if metrics.get("head") == "forecast":  # regression: error metrics, no decisions to agree on
        problems += regression_breaches(tol, metrics)
    else:
        problems += score_breaches(tol, metrics)  # integer formats: the scores' size, not only decisions
        if metrics["top1_agreement"] < tol.min_top1_agreement:
            problems.append(f"top-1 agreement {metrics['top1_agreement']:.4f} < {tol.min_top1_agreement:.4f}")
    drop = metrics.get("accuracy_drop")
    if drop is not None and drop > tol.max_accuracy_drop + 1e-9:
        problems.append(f"accuracy drop {100 * drop:.2f} points > {100 * tol.max_accuracy_drop:.2f}")
    stream_err = metrics.get("stream_vs_sequence_max_abs")  # vs PyTorch: the precision's limit
    if limit is not None and stream_err is not None and stream_err > limit:
        problems.append(f"streaming differs from PyTorch's whole-sequence scores by {stream_err:.3g} > {limit:.3g}")
    own = metrics.get("stream_vs_own_sequence_max_abs")  # same runtime, same kernels: stricter
    if precision == "float32" and own is not None and own > STREAM_TOLERANCE:
        problems.append(f"streaming differs from the whole-sequence graph by {own:.3g} > {STREAM_TOLERANCE:g}")
    if problems:
        return "out-of-tolerance", f"{precision} outside tolerance: " + "; ".join(problems)
    return "ok", None


def verify_predict(predict, precision: str, reference: Reference, *, stream=None) -> dict:
    """Run ``predict`` (and ``stream``) on the test split; the record's verification fields."""
    scores = np.asarray(predict(reference.x), dtype=np.float32)
    metrics = compare(scores, reference.scores, reference.y)
    if stream is not None:
        per_step = np.asarray(stream(reference.x[reference.stream_idx]), dtype=np.float32)
        if per_step.shape != reference.stream_scores.shape:
            raise ValueError(f"stream returned shape {per_step.shape}, expected {reference.stream_scores.shape}")
        metrics["stream_max_abs_err"] = float(np.max(np.abs(per_step - reference.stream_scores)))
        if reference.head == "forecast":
            from runtime.metrics import regression
            metrics["stream_rel_err"] = regression(per_step, reference.stream_scores)["rel_err"]
        metrics["stream_vs_sequence_max_abs"] = float(np.max(np.abs(sequence_from_stream(per_step, reference.head)
                                                                    - reference.scores[reference.stream_idx])))
        metrics["stream_windows"] = int(len(reference.stream_idx))
    status, error = judge(metrics, precision)
    return {"accuracy": metrics.get("accuracy"), "metrics": metrics, "status": status, "error": error}


def check_onnx_file(path) -> None:
    """``onnx.checker`` on the saved file (full check, with shape inference)."""
    import onnx
    onnx.checker.check_model(str(path), full_check=True)
