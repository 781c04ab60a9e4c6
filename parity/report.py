"""Parity reports: a terminal table, ``parity.json``, and ``parity.md`` with PNG plots.

All functions take the ``Matrix`` objects of one run (one per artifact folder, e.g. LSTM + GRU).
Files are written atomically (runtime.atomic). matplotlib is imported only to draw the plots.
"""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import numpy as np

from parity.cells import ERROR, FAIL, PASS, SKIP
from runtime.atomic import write_bytes, write_json, write_text
from runtime.tolerances import LSB_RULES, POLICY, STREAM_RULE, abs_limit, allowed_disagreements

STATUS = {PASS: "PASS", FAIL: "FAIL", ERROR: "ERROR", SKIP: "SKIPPED"}


def _g(v, fmt="{:.2e}") -> str:
    return "" if v is None else fmt.format(v)


def _lsb(m: dict) -> str:
    lsb = m.get("lsb") or {}
    parts = [f"{d['lsb']}" + ("=" if d["lsb"] == 0 else "") for d in lsb.values()]
    # float outputs that must be identical: "=" or the largest difference
    parts += ["=" if not d["rows_differing"] else f"{d['max_abs_diff']:.2g}" for d in (m.get("exact") or {}).values()]
    return ", ".join(parts)


def _drop(m: dict) -> str:
    if "accuracy_drop" in m:
        return f"{100 * m['accuracy_drop']:+.2f}"
    if "sample_accuracy_drop" in m:  # measured on a sample, not judged
        return f"({100 * m['sample_accuracy_drop']:+.2f})"
    return ""


def _mse_up(m: dict) -> str:
    if "target_mse_increase" in m:
        return f"{100 * m['target_mse_increase']:+.2f}%"
    if "sample_target_mse_increase" in m:  # measured on a sample, not judged
        return f"({100 * m['sample_target_mse_increase']:+.2f}%)"
    return ""


def _is_forecast(matrix) -> bool:
    return getattr(matrix.heldout, "head", "classify") == "forecast"


def header(matrix) -> list[str]:
    return FORECAST_HEADER if _is_forecast(matrix) else HEADER


def forecast_rows(matrix) -> list[list[str]]:
    """A forecast (regression) matrix: error metrics instead of top-1 / accuracy."""
    return [_row(r, [_g(r.metrics.get("rel_err")), _g(r.metrics.get("stream_rel_err")),
                     _g(r.metrics.get("target_mse"), "{:.4f}"), _g(r.metrics.get("reference_target_mse"), "{:.4f}"),
                     _mse_up(r.metrics)]) for r in matrix.results]


def _row(r, middle: list[str]) -> list[str]:
    """A cell's row: what ran and the error sizes, then the head's own columns (``middle``), then
    quantization step, stream-vs-whole, status and why."""
    m = r.metrics
    sw = m.get("stream_vs_whole")
    note = "; ".join(r.failures) if r.status != PASS else ""
    return [r.id, r.cell.runtime, r.cell.precision, r.cell.mode, str(r.n_inputs or ""),
            _g(m.get("max_abs_err")), _g(m.get("mae")), _g(m.get("rmse")), *middle,
            _lsb(m), _g(sw and sw["max_abs_diff"]), STATUS[r.status], note]


def rows(matrix) -> list[list[str]]:
    """One row per cell: the columns of the terminal and Markdown tables."""
    if _is_forecast(matrix):
        return forecast_rows(matrix)
    return [_row(r, [_g(r.metrics.get("rel_l2")), _g(r.metrics.get("cosine_min"), "{:.6f}"),
                     _g(r.metrics.get("top1_agreement"), "{:.2%}"), _g(r.metrics.get("accuracy"), "{:.2%}"),
                     _drop(r.metrics)]) for r in matrix.results]


HEADER = ["cell", "runtime", "precision", "mode", "n", "max|err|", "MAE", "RMSE", "relL2", "cos min",
          "top-1 agr", "accuracy", "drop pts", "LSB", "stream-whole", "status", "why"]
# forecast: "rel err" = RMSE / range of the float reference's outputs; "MSE"/"ref MSE": against the true
# future frames (normalized units) of the runtime and of PyTorch float on the same rows
FORECAST_HEADER = ["cell", "runtime", "precision", "mode", "n", "max|err|", "MAE", "RMSE", "rel err",
                   "frame rel err", "MSE", "ref MSE", "MSE +%", "LSB", "stream-whole", "status", "why"]


def golden_only_note(matrix) -> str | None:
    """What a matrix run on the golden rows only (--golden-only, or no test split here) judges."""
    n = matrix.heldout.sources["golden"]
    if matrix.heldout.sources["test"]:
        return None
    if _is_forecast(matrix):
        return f"golden rows only ({n}): the MSE increase on the targets is not judged (it is on the test split)"
    return (f"golden rows only ({n}): judged as a sample, like `python -m runtime check`: a cell fails on top-1 only "
            f"with more disagreements than its precision's agreement allows on {n} rows (int8: "
            f"{allowed_disagreements(n, POLICY['int8'].min_top1_agreement)} of {n}; float32: none); the accuracy drop "
            f"is not judged (it is on the test split); errors, scores, LSBs and per-frame agreement are judged as usual")


def terminal(matrices) -> str:
    lines = []
    for mx in matrices:
        table = [header(mx)] + rows(mx)
        width = [min(max(len(r[i]) for r in table), 70) for i in range(len(table[0]))]
        lines.append(f"\n{mx.arch.upper()}  {mx.folder}  ({mx.heldout.sources['golden']} golden + "
                     f"{mx.heldout.sources['test']} test rows, sample {mx.heldout.sample_rows}; {mx.seconds:.1f} s)")
        note = golden_only_note(mx)
        if note:
            lines.append(note)
        for i, r in enumerate(table):
            lines.append("  ".join(c[:70].ljust(width[j]) for j, c in enumerate(r)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in width))
        for a in mx.not_exported:
            lines.append(f"  not exported: {a['name']} ({a['status']}): {a['error']}")
    lines.append("")
    lines.append(summary(matrices))
    return "\n".join(lines)


def summary(matrices) -> str:
    parts = []
    for mx in matrices:
        parts.append(f"{mx.arch}: {mx.count(PASS)} passed, {mx.count(FAIL)} failed, {mx.count(ERROR)} errors, "
                     f"{mx.count(SKIP)} skipped")
    failed = [r.id for mx in matrices for r in mx.failed]
    verdict = "PARITY FAILED: " + ", ".join(failed) if failed else "PARITY OK"
    return "; ".join(parts) + "\n" + verdict


def to_json(matrices, command: str | None = None) -> dict:
    return {"format": "rnn-edge-parity/1", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "ok": all(m.ok for m in matrices),
            "policy": {k: {"max_abs": t.max_abs, "min_top1_agreement": t.min_top1_agreement,
                           "max_accuracy_drop": t.max_accuracy_drop, "reason": t.reason,
                           "max_rel_err": t.max_rel_err, "max_target_mse_increase": t.max_target_mse_increase,
                           "regression_reason": t.regression_reason, "relative_to_peak": t.relative_to_peak}
                       for k, t in POLICY.items()},
            "lsb_rules": [r.__dict__ for r in LSB_RULES],
            "matrices": [m.to_json() for m in matrices]}


# -- plots -------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_errors(matrix) -> bytes:
    """Histogram of |score - reference| per runtime x precision (log scale), one panel per precision."""
    plt = _plt()
    ran = [r for r in matrix.results if r.errors is not None and r.cell.runtime != "golden"]
    precisions = sorted({r.cell.precision for r in ran}, key=lambda p: list(POLICY).index(p) if p in POLICY else 99)
    counts = [sum(r.cell.precision == p for r in ran) + 1 for p in precisions] or [1]
    heights = [max(2.4, 0.17 * n) for n in counts]
    fig, axes = plt.subplots(len(heights), 1, figsize=(8, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, p in zip(axes[:, 0], precisions):
        cells = [r for r in ran if r.cell.precision == p]
        lo = max(min(float(np.min(r.errors[r.errors > 0])) if np.any(r.errors > 0) else 1e-9 for r in cells), 1e-10)
        hi = max(max(float(np.max(r.errors)) for r in cells), lo * 10)
        bins = np.logspace(np.log10(lo), np.log10(hi), 40)
        for r in cells:
            e = np.clip(r.errors, lo, None)
            ax.hist(e, bins=bins, histtype="step", linewidth=1.4, label=r.id[len(matrix.arch) + 1:])
        tol = POLICY.get(p)
        if tol and tol.max_abs:  # the strictest limit a cell was judged by (float limits scale with the peak score)
            limit = min(abs_limit(tol, r.metrics.get("ref_peak")) for r in cells)
            ax.axvline(limit, color="red", linestyle="--", linewidth=1, label=f"limit {limit:.3g}"
                       + (f" ({tol.max_abs:g} x peak)" if limit > tol.max_abs else ""))
        ax.set_xscale("log")
        ax.set_title(f"{matrix.arch.upper()} {p}: |score - PyTorch float| per output", fontsize=10)
        ax.set_ylabel("outputs")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1, 0].set_xlabel("absolute error (log; exact zeros drawn at the left edge)")
    fig.subplots_adjust(hspace=0.45)
    data = _png(fig)
    plt.close(fig)
    return data


def plot_accuracy(matrices) -> bytes:
    """Task accuracy per cell (bars) against the float reference (line), all architectures."""
    plt = _plt()
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(max(6, 0.42 * max(len(m.results) for m in matrices)) * n / max(1, n) + 2 * n, 4.2),
                             squeeze=False)
    colors = {PASS: "#3a7d44", FAIL: "#c0392b", ERROR: "#8e44ad", SKIP: "#bbbbbb"}
    for ax, mx in zip(axes[0], matrices):
        rs = [r for r in mx.results if r.cell.runtime != "golden"]
        acc = [r.metrics.get("accuracy", 0.0) for r in rs]
        golden_only = [r.metrics.get("accuracy_on", "test split") != "test split" for r in rs]
        ax.bar(range(len(rs)), acc, color=[colors[r.status] for r in rs],
               hatch=["//" if g else "" for g in golden_only], edgecolor="white")
        refs = [r.metrics.get("reference_accuracy") for r in rs]
        ax.scatter([i for i, v in enumerate(refs) if v is not None], [v for v in refs if v is not None],
                   marker="_", s=200, color="black", zorder=3, label="PyTorch float on the same rows")
        for i, r in enumerate(rs):  # cells without a number still get a mark
            if r.status in (ERROR, SKIP):
                ax.text(i, 0.0, "error" if r.status == ERROR else "skipped", rotation=90, ha="center", va="bottom",
                        fontsize=7, color=colors[r.status], transform=ax.get_xaxis_transform())
        ref = next((r.metrics.get("reference_accuracy") for r in rs if "reference_accuracy" in r.metrics
                    and r.metrics.get("accuracy_on") == "test split"), None)
        if ref is not None:
            ax.axhline(ref, color="black", linestyle="--", linewidth=0.8, label=f"PyTorch float, test split {ref:.2%}")
        ax.legend(fontsize=8, loc="lower right")
        ax.set_xticks(range(len(rs)))
        ax.set_xticklabels([r.id[len(mx.arch) + 1:] for r in rs], rotation=70, ha="right", fontsize=7)
        lo = min([a for a in acc if a > 0] + [ref or 1.0])
        ax.set_ylim(max(0.0, lo - 0.1), 1.0)
        ax.set_title(f"{mx.arch.upper()}: task accuracy per cell (green pass, red fail, purple error; "
                     f"hatched: sample rows only)", fontsize=10)
    data = _png(fig)
    plt.close(fig)
    return data


# -- markdown -----------------------------------------------------------------------------------
def markdown(matrices, plots: dict[str, str], command: str | None) -> str:
    L = ["# Parity report", ""]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L.append(f"Generated {when}" + (f" by:\n\n```sh\n{command}\n```" if command else "."))
    L += ["", "`invoke parity` runs the suite on the default export (`artifacts/watch-gru`, `artifacts/watch-lstm`; "
              "exported first when missing) and writes this report to `docs/parity/`."]
    L += ["", "**" + summary(matrices).replace("\n", "**  \n**") + "**", ""]
    L += ["Every cell runs the same held-out inputs (the artifact folder's `golden.npz`, then the task's test",
          "split) and is compared with the float PyTorch model run live from the training checkpoint.",
          "Scores are the model's output logits. `LSB`: distance in output LSBs to the integer runtime that",
          "must match it (`=`: bit-exact; float outputs of an integer graph count in LSBs of the int8 tensor",
          "they are dequantized from, or, in a manifest that does not record it, `=` or the largest",
          "difference). `stream-whole`: largest difference between streaming frame by frame and the",
          "whole-sequence run of the same runtime and precision. Streaming and emulated-device",
          "cells run a sample (the golden rows + test rows spread evenly over the split, `n`); their accuracy drop is shown in",
          "parentheses and not judged (one flip on ~100 rows is ~1 point): they are judged on top-1",
          "agreement, error metrics and their LSB distance to the same file on the host.", ""]
    if any(_is_forecast(mx) for mx in matrices):
        L += ["Forecast models (docs/forecasting.md) have no classes: their outputs are the next frames in",
              "normalized units, and their cells are judged by regression metrics instead of top-1 and accuracy:",
              "`rel err` = RMSE / range of the float reference's outputs, `frame rel err` the same over every",
              "streamed frame, `MSE` / `ref MSE` the cell's and PyTorch float's MSE against the true future",
              "frames, `MSE +%` the relative increase (judged on the test split only; in parentheses on sample",
              "rows, not judged).", ""]
    if any(mx.heldout.head == "frames" for mx in matrices):
        L += ["Frames models (docs/frames.md) output class scores after every frame, `[N, T, K]`: every",
              "metric counts every frame (top-1 = per-frame agreement with the float reference, accuracy =",
              "frame accuracy over all T frames, warm-up included), judged by the same per-precision rules.",
              "The C library is streaming-only for this head: its cells are the step (stream) cells.", ""]
    for mx in matrices:
        s = mx.heldout.sources
        L += [f"## {mx.arch.upper()} ({mx.task}, `{mx.folder}`)", "",
              f"{s['golden']} golden + {s['test']} test-split sequences"
              + (f" ({s['test_note']})" if s.get("test_note") else "") + f"; {mx.seconds:.1f} s.", ""]
        note = golden_only_note(mx)
        if note:
            L += [f"{note[0].upper()}{note[1:]}.", ""]
        L.append("| " + " | ".join(header(mx)) + " |")
        L.append("|" + "---|" * len(header(mx)))
        for r in rows(mx):
            L.append("| " + " | ".join(c.replace("|", "/") for c in r) + " |")
        for a in mx.not_exported:
            L.append(f"\nNot exported (not a cell): `{a['name']}` ({a['status']}): {a['error']}")
        if str(mx.folder) in plots:
            L += ["", f"![{mx.arch} error histograms]({plots[str(mx.folder)]})"]
        L.append("")
    if "accuracy" in plots:
        L += ["## Accuracy per cell", "", f"![accuracy per cell]({plots['accuracy']})", ""]
    L += ["## Tolerance policy (runtime/tolerances.py)", "", "| precision | max abs | min top-1 agreement | max accuracy drop | reason |",
          "|---|---|---|---|---|"]
    for k, t in POLICY.items():
        max_abs = "-" if t.max_abs is None else f"{t.max_abs:g}" + (" x max(1, peak)" if t.relative_to_peak else "")
        L.append(f"| {k} | {max_abs} | {t.min_top1_agreement:.2%} | "
                 f"{100 * t.max_accuracy_drop:.1f} pts | {t.reason} |")
    if any(_is_forecast(mx) for mx in matrices):
        L += ["", "Forecast (regression) cells: no top-1 / accuracy; `max abs` where set, and:", "",
              "| precision | max rel err (RMSE / reference range) | max MSE increase on the targets | reason |",
              "|---|---|---|---|"]
        for k, t in POLICY.items():
            L.append(f"| {k} | {t.max_rel_err:g} | {100 * t.max_target_mse_increase:g}% | {t.regression_reason} |")
    L += ["", "| runtime | must match | precision | arch | max LSB | reason |", "|---|---|---|---|---|---|"]
    for r in LSB_RULES:
        limit = f"{r.max_lsb}" + (f" ({r.cap()} on up to {r.rows_over_share:.0%} of rows)" if r.rows_over_share else "")
        L.append(f"| {r.runtime} | {r.against} | {r.precision} | {r.arch or 'both'} | {limit} | {r.reason} |")
    L += ["", f"Streaming: {STREAM_RULE}.", ""]
    L += ["## Cells", ""]
    for mx in matrices:
        for r in mx.results:
            L.append(f"- `{r.id}`: {r.cell.what}" + (f" - {STATUS[r.status]}: {'; '.join(r.failures)}" if r.failures else ""))
    return "\n".join(L) + "\n"


def write_reports(matrices, out_dir, command: str | None = None, plots: bool = True) -> list[Path]:
    """parity.json, parity.md and PNG plots under ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    written = []
    names: dict[str, str] = {}
    if plots:
        archs = [mx.arch for mx in matrices]
        for mx in matrices:  # two folders of one arch (e.g. watch-gru, kws-gru) get a plot each
            name = f"errors-{mx.arch}.png" if archs.count(mx.arch) == 1 else f"errors-{mx.arch}-{Path(mx.folder).name}.png"
            write_bytes(out / name, plot_errors(mx))
            names[str(mx.folder)] = name
            written.append(out / name)
        classify = [mx for mx in matrices if not _is_forecast(mx)]
        if classify:  # forecasts have no accuracy: their table carries the MSE on the targets
            write_bytes(out / "accuracy.png", plot_accuracy(classify))
            names["accuracy"] = "accuracy.png"
            written.append(out / "accuracy.png")
    write_json(out / "parity.json", to_json(matrices, command))
    write_text(out / "parity.md", markdown(matrices, names, command))
    return [out / "parity.json", out / "parity.md"] + written
