"""The tolerance policy: how far each precision may stray from the float PyTorch reference.

One table, each limit with its reason. Export verifies every artifact against it; the parity
suite judges every cell by it. Errors are on the model's output scores (logits).

Forecast (regression) models have no decisions to agree on: their cells are judged by
``max_abs`` (where set) and the regression limits instead of top-1 / accuracy:
``max_rel_err`` bounds RMSE / range of the reference outputs, ``max_target_mse_increase`` bounds
how much worse (relative MSE) the artifact forecasts the true future frames than the float model
(judged on the whole test split only, like an accuracy drop). ``regression_breaches`` applies them.

Frames (per-step classification) models are judged by the classification rules applied to every
frame: ``max_abs`` over all ``N * T * K`` outputs, top-1 agreement per frame, and the drop of frame
accuracy (all ``T`` frames) against the float reference. No limit is loosened for them.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Tolerance:
    max_abs: float | None  # largest |score - reference| allowed (None: not judged by it)
    min_top1_agreement: float  # fraction of inputs whose argmax equals the reference's
    max_accuracy_drop: float  # task accuracy points (0..1 scale) lost against the reference
    reason: str
    max_rel_err: float = 0.0  # RMSE / range of the reference outputs (forecasts; classifiers without max_abs)
    max_target_mse_increase: float = 0.0  # forecast: (MSE - reference MSE) / reference MSE on the targets
    regression_reason: str = ""
    relative_to_peak: bool = False  # floating-point formats: max_abs scales with the reference's peak |score|


POLICY: dict[str, Tolerance] = {
    "float32": Tolerance(1e-4, 1.0 - 1e-9, 0.0,
                         "same math in float32; only summation order and libm differ (observed ~1e-6 on 100-step RNNs). "
                         "Floating-point rounding is relative: the limit is 1e-4 x max(1, peak |reference score|)",
                         1e-5, 1e-4, "same math: the max_abs limit of 1e-4 on outputs of order 1 already implies ~1e-5 of "
                         "the range", relative_to_peak=True),
    "float16": Tolerance(5e-2, 0.98, 0.01,
                         "weights rounded to 11-bit mantissa (rel. error ~5e-4 per weight), compounded over the recurrence; "
                         "relative like float32: 5e-2 x max(1, peak |reference score|)",
                         0.005, 0.01, "11-bit weights: ~5e-4 relative per weight, compounded over the recurrence; "
                         "half a percent of the range, 1% more MSE", relative_to_peak=True),
    "dynamic-range": Tolerance(None, 0.97, 0.01,
                               "int8 weights with float activations: weight rounding error, no activation clipping",
                               0.03, 0.05, "int8 weights (up to 1/254 of each row's largest weight) with float "
                               "activations: 3% of the range, 5% more MSE"),
    "int8": Tolerance(None, 0.95, 0.01,
                      "int8 weights and activations, integer gates: judged on decisions (top-1, accuracy) and on RMSE / range "
                      "of the scores (max_rel_err below), not on the largest single error",
                      0.05, 0.10, "one int8 output LSB is 1/255 (0.4%) of the output range, and every step's int8 "
                      "activations and state add rounding of that order which the recurrence compounds over the "
                      "window: RMSE up to ~13 output LSBs (5% of the range); the forecast of the true frames may "
                      "lose at most 10% (MSE) against float. A wrong scale, state or kernel is tens of percent"),
    "int16x8": Tolerance(None, 0.97, 0.01,
                         "int16 activations, int8 weights: finer activations than int8",
                         0.02, 0.05, "int16 activations, int8 weights: finer than int8, same weight rounding"),
}


def score_breaches(tol: Tolerance, m: dict, *, prefix: str = "") -> list[str]:
    """Classifier (and frames) scores of a precision without a ``max_abs`` limit (int8, int16x8,
    dynamic-range): their RMSE relative to the reference scores' range may not exceed the same
    ``max_rel_err`` as a forecast's. Decisions alone (top-1, accuracy) cannot see a constant shift
    or a wrong scale of every score, e.g. a dropped output zero point: that is tens of LSBs, while
    the quantization itself stays within a few percent of the range (see each precision's reason)."""
    if tol.max_abs is not None or m.get("head") == "forecast" or "rel_err" not in m:
        return []
    if m["rel_err"] > tol.max_rel_err:
        return [f"{prefix}score error (RMSE / reference range) {m['rel_err']:.3g} > {tol.max_rel_err:g}"]
    return []


def regression_breaches(tol: Tolerance, m: dict, *, prefix: str = "") -> list[str]:
    """Why forecast metrics ``m`` (runtime.metrics.compare with head="forecast") break ``tol``."""
    bad = []
    if m.get("rel_err", 0.0) > tol.max_rel_err:
        bad.append(f"{prefix}relative error (RMSE / reference range) {m['rel_err']:.3g} > {tol.max_rel_err:g}")
    inc = m.get("target_mse_increase")
    if inc is not None and inc > tol.max_target_mse_increase + 1e-12:
        bad.append(f"{prefix}MSE on the targets {100 * inc:+.2f}% vs float > +{100 * tol.max_target_mse_increase:g}%")
    if m.get("stream_rel_err", 0.0) > tol.max_rel_err:
        bad.append(f"{prefix}per-frame relative error {m['stream_rel_err']:.3g} > {tol.max_rel_err:g}")
    return bad


def allowed_disagreements(rows: int, min_top1_agreement: float, p_value: float = 0.01) -> int:
    """The most top-1 disagreements among ``rows`` inputs that still fit ``min_top1_agreement``: the
    largest k that an artifact agreeing with the reference on exactly that share of all inputs
    shows at least ``p_value`` of the time (binomial upper tail). Made for the few golden rows a device
    checks: at the 95% of int8, 8 rows allow 2, so a healthy artifact (the watch GRU's int8 step graph
    agrees on 98.3% of the test split, and so shows one or more disagreements in 8 rows 13% of the
    time) is not failed by one unlucky row; a broken one disagrees on most rows. Exact precisions
    (agreement 1 - 1e-9) allow none."""
    q = min(max(0.0, 1.0 - min_top1_agreement), 1.0)
    if q == 0.0 or rows < 1:
        return 0
    if q == 1.0:
        return rows
    tail = 0.0  # P(disagreements >= k), summed from k = rows down (log-space terms: rows may be large)
    for k in range(rows, -1, -1):
        tail += math.exp(math.lgamma(rows + 1) - math.lgamma(k + 1) - math.lgamma(rows - k + 1)
                         + k * math.log(q) + (rows - k) * math.log1p(-q))
        if tail >= p_value:
            return k
    return 0


def golden_top1_breaches(tol: Tolerance, precision: str, agreement: float, decisions: int,
                         what: str = "top-1") -> list[str]:
    """Why top-1 ``agreement`` over a few golden ``decisions`` breaks ``tol`` judged as a sample
    (``allowed_disagreements``): what ``runtime check`` and parity's golden-only cells apply."""
    disagree, allowed = round((1 - agreement) * decisions), allowed_disagreements(decisions, tol.min_top1_agreement)
    if disagree <= allowed:
        return []
    return [f"{what} differs in {disagree} of {decisions} golden decisions (at most {allowed} fit the "
            f"{tol.min_top1_agreement:.0%} agreement of {precision})"]


def abs_limit(tol: Tolerance, peak: float | None = None) -> float | None:
    """The ``max_abs`` limit for outputs whose reference peaks at ``peak`` (largest |score|).

    Floating-point rounding error is relative to the magnitudes involved: a model whose scores
    (and, inside, cell states) are ten times larger makes ten times larger rounding differences
    with the same, correct math. So float formats scale ``max_abs`` by ``max(1, peak)``: outputs of
    order 1 keep the absolute limit, larger ones get the same relative one. Integer formats have
    no ``max_abs`` (they are judged on decisions, LSBs and RMSE / range: ``score_breaches``)."""
    if tol.max_abs is None:
        return None
    if tol.relative_to_peak and peak is not None and math.isfinite(peak):
        return tol.max_abs * max(1.0, float(peak))
    return tol.max_abs


def tolerance_for(precision: str) -> Tolerance:
    try:
        return POLICY[precision]
    except KeyError:
        raise KeyError(f"no tolerance defined for precision {precision!r}; add it to runtime/tolerances.py") from None


# -- between two runtimes (parity suite) -----------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LsbRule:
    """Two runtimes that dequantize integer outputs with the same scale may differ by at most
    ``max_lsb`` output LSBs (0: bit-exact) on every row, or, where ``rows_over_share`` is set, on all
    but that share of the rows, which may reach ``worst_lsb``. Judged on the cells whose runtime
    matches the fnmatch pattern ``runtime``, against every cell of runtime ``against`` (same
    precision and mode)."""

    runtime: str
    against: str
    precision: str
    max_lsb: int
    same_file: bool  # both run the very same artifact file (else: the same integer model)
    reason: str
    arch: str | None = None  # only for this architecture (None: both)
    rows_over_share: float = 0.0  # share of rows allowed beyond max_lsb (0: none)
    worst_lsb: int | None = None  # no row beyond this (None: max_lsb)

    def rows_allowed_over(self, rows: int) -> int:
        """How many of ``rows`` rows may lie beyond ``max_lsb`` (rounded down: 1 of 128, 10 of 1072)."""
        return int(self.rows_over_share * rows + 1e-9)

    def cap(self) -> int:
        """The distance no row may exceed."""
        return self.max_lsb if self.worst_lsb is None else self.worst_lsb


LSB_RULES: tuple[LsbRule, ...] = (
    LsbRule("c", "c-reference", "int8", 0, False,
            "the generated C and export/c/reference.py are the same integer-only math, operation for operation"),
    LsbRule("cortex-m*", "c", "int8", 0, True,
            "the same C source cross-compiled; integer math has no rounding freedom on any core"),
    LsbRule("rpi-c", "c", "int8", 0, True,
            "the same C source cross-compiled for aarch64 (NEON kernel, emulated Cortex-A72) vs built for x86 "
            "(SSE2 kernel): integer math has no rounding freedom on either CPU"),
    LsbRule("tflm", "litert", "int8", 16, True,
            "same int8 flatbuffer, different integer kernels: TFLite Micro's and LiteRT's round some requantizations "
            "differently (watch-lstm: LiteRT's reference op resolver, BUILTIN_REF, gives bit-identical outputs to its "
            "default one, so it is TFLite Micro's own LSTM kernel that differs), and a 1-LSB step difference can "
            "compound "
            "through the recurrence over the window. Measured: LSTM (fused op) 1 LSB on the fixture model, 3 to 10 "
            "on the watch-lstm checkpoints trained before weight averaging, and on the two since 0 to 4 on every row "
            "but one; GRU (unrolled) 4 on the fixture, 6 to 10 on watch-gru (T=100). In that one sequence (of 128 "
            "and of 1072) the compounding went on to 20 and 19 LSB (46 mid-window: python -m parity.trace, "
            "docs/parity-history.md), so up to 1% of the rows may "
            "lie beyond 16 LSB, none beyond 64 (a quarter of the int8 output range). A wrong kernel, scale or "
            "state moves most rows by tens to hundreds of LSBs",
            rows_over_share=0.01, worst_lsb=64),
    LsbRule("rpi-litert", "litert", "int8", 1, True,
            "same int8 file on aarch64 (NEON kernels, emulated Cortex-A72) vs x86 (AVX kernels): "
            "requantization rounding may differ by one step (devices/rpi/parity.py MAX_LSB)"),
    LsbRule("rpi-litert", "litert", "int16x8", 1, True, "as for int8: per-CPU integer kernels"),
    LsbRule("rpi-litert-ref", "litert-ref", "int8", 0, True,
            "the same int8 file on TFLite's reference kernels (portable integer C++, no XNNPACK) on aarch64 and "
            "on x86: integer math has no rounding freedom. Measured bit-exact on watch-gru and kws-gru, where the "
            "default kernels were 1 and 8 LSB apart across the two CPUs"),
    LsbRule("rpi-litert-ref", "litert-ref", "int16x8", 0, True, "as for int8: reference kernels, integer math"),
    LsbRule("tflm", "litert", "int16x8", 2, True,
            "same 16x8 flatbuffer, different integer kernels (as for int8)"),
)


# Streaming (one frame per call, state carried) must reproduce the whole-sequence run of the SAME
# runtime and precision. The model is the same; only the call pattern differs (and, for TFLite
# int8, the step graph is converted and calibrated on its own, so its scales may differ from the
# sequence graph's). It is judged with the precision's own Tolerance, applied to (last streamed
# frame vs whole-sequence scores) and to every frame against the reference's per-frame scores.
STREAM_RULE = ("streaming vs whole-sequence, same runtime and precision, and every streamed frame vs the "
               "reference's frame: judged by the precision's Tolerance")
