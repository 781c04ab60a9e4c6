"""Judge a cell's metrics against the tolerance policy (runtime/tolerances.py): one line per breach."""

from __future__ import annotations

import fnmatch

from runtime.tolerances import (LSB_RULES, abs_limit, golden_top1_breaches, regression_breaches, score_breaches,
                                tolerance_for)

EPS = 1e-12


def judge(precision: str, m: dict) -> list[str]:
    """Why a cell with these metrics breaks its precision's tolerance ([] when it does not).

    A cell that ran the golden rows only (``golden_decisions``: --golden-only, or the golden cell)
    has its per-row top-1 decisions (against the reference, and streaming against whole-sequence)
    judged as a sample, as ``python -m runtime check`` judges the same rows: it fails only with more
    disagreements than ``allowed_disagreements`` (int8: 2 of 8; exact precisions: none). Everything
    else, per-frame agreement included, and every cell on the test split or its sample keep the plain
    rules; the accuracy drop is judged on the whole test split only (``accuracy_drop`` is absent elsewhere)."""
    tol = tolerance_for(precision)
    bad: list[str] = []
    golden = m.get("golden_decisions")

    def top1(what: str, agreement: float) -> list[str]:
        if golden:
            return golden_top1_breaches(tol, precision, agreement, golden, what)
        if agreement < tol.min_top1_agreement - EPS:
            return [f"{what} agreement {agreement:.2%} < {tol.min_top1_agreement:.2%}"]
        return []

    if not m.get("finite", True):
        bad.append("outputs contain NaN or infinity")
    limit = abs_limit(tol, m.get("ref_peak"))  # float formats: relative to the reference's peak score
    stream_limit = abs_limit(tol, m.get("stream_ref_peak", m.get("ref_peak")))
    if limit is not None and m.get("max_abs_err", 0.0) > limit:
        bad.append(f"max abs error {m['max_abs_err']:.3g} > {limit:.3g}")
    forecast = m.get("head") == "forecast"
    if forecast:  # regression: relative error vs the reference and MSE on the targets, no top-1
        bad += regression_breaches(tol, m)
    else:  # integer formats: the scores' size too, not only their decisions
        bad += score_breaches(tol, m)
    if not forecast:
        bad += top1("top-1", m.get("top1_agreement", 1.0))
    if not forecast and m.get("accuracy_drop", 0.0) > tol.max_accuracy_drop + EPS:
        bad.append(f"accuracy drop {100 * m['accuracy_drop']:.2f} points > {100 * tol.max_accuracy_drop:.2f}")
    # streaming: every frame against the reference's frame, and the last frame against whole-sequence
    if stream_limit is not None and m.get("stream_max_abs_err", 0.0) > stream_limit:
        bad.append(f"per-frame max abs error {m['stream_max_abs_err']:.3g} > {stream_limit:.3g}")
    if not forecast and m.get("stream_top1_agreement", 1.0) < tol.min_top1_agreement - EPS:
        bad.append(f"per-frame top-1 agreement {m['stream_top1_agreement']:.2%} < {tol.min_top1_agreement:.2%}")
    sw = m.get("stream_vs_whole")
    if sw:
        if limit is not None and sw["max_abs_diff"] > limit:
            bad.append(f"streaming differs from whole-sequence {sw['against']} by {sw['max_abs_diff']:.3g} > {limit:.3g}")
        if forecast and sw.get("rel_err", 0.0) > tol.max_rel_err:
            bad.append(f"streaming vs whole-sequence {sw['against']} relative error {sw['rel_err']:.3g} > {tol.max_rel_err:g}")
        if not forecast:
            bad += top1(f"streaming vs whole-sequence {sw['against']} top-1", sw["top1_agreement"])
    for other, lsb in (m.get("lsb") or {}).items():
        bad += lsb_breaches(other, lsb)
    for other, ex in (m.get("exact") or {}).items():  # float outputs that must be bit-identical
        if ex["rows_differing"]:
            bad.append(f"differs from {other} by up to {ex['max_abs_diff']:.3g} (not bit-identical; "
                       f"{ex['rows_differing']} of {ex['rows']} rows)")
    return bad


def lsb_breaches(other: str, lsb: dict) -> list[str]:
    """Why an LSB distance to ``other`` breaks its rule: too many rows beyond ``max_lsb`` (all rows
    must be within it unless ``rows_allowed_over`` says otherwise), or one row beyond ``worst_lsb``."""
    allowed = lsb.get("rows_allowed_over", 0)
    rows_over = lsb.get("rows_over", int(lsb["lsb"] > lsb["max_lsb"]))
    rows = f"{rows_over} of {lsb['rows']} rows" if "rows" in lsb else f"{rows_over} rows"
    if rows_over > allowed:
        share = f" on more than {allowed} row{'s' * (allowed != 1)}" if allowed else ""
        limit = "not bit-exact" if lsb["max_lsb"] == 0 else f"> {lsb['max_lsb']} LSB allowed{share}"
        return [f"{lsb['lsb']} LSB from {other} ({limit}; {rows})"]
    cap = lsb.get("worst_lsb", lsb["max_lsb"])
    if lsb["lsb"] > cap:
        return [f"{lsb['lsb']} LSB from {other} (> {cap} LSB: no row may go beyond it)"]
    return []


def lsb_rules_for(runtime: str, precision: str, arch: str | None = None):
    """The LSB rules judged on a cell of ``runtime`` (rule runtimes are fnmatch patterns: ``cortex-m*``)."""
    return [r for r in LSB_RULES if fnmatch.fnmatchcase(runtime, r.runtime) and r.precision == precision
            and (r.arch is None or arch is None or r.arch == arch)]
