"""Run every cell of an artifact folder on the same held-out inputs, measure, compare, judge.

``run_matrix(folder) -> Matrix``. The steps: load the held-out inputs and the live PyTorch
reference (parity.inputs), ask every provider for its cells (parity.providers), run each on its
rows, compute the metrics against the reference (runtime.metrics), then the metrics between
cells (LSB distance between integer runtimes, streaming vs whole-sequence), and judge every cell
by runtime/tolerances.py.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import time
import traceback
from pathlib import Path

import numpy as np

from parity.cells import ERROR, FAIL, PASS, SKIP, STREAM, WHOLE, CellResult
from parity.inputs import SAMPLE_TEST_ROWS, HeldOut, load_heldout
from parity.judge import judge, lsb_rules_for
from parity.providers import REGISTRY, Context, collect
from runtime.errors import UserError
from runtime.manifest import Manifest
from runtime.metrics import agreement, compare, lsb_per_row, stream_compare, target_errors


@dataclasses.dataclass
class Matrix:
    folder: Path
    arch: str
    task: str
    heldout: HeldOut
    results: list[CellResult]
    not_exported: list[dict]  # manifest entries whose export failed: {"name", "status", "error"}
    seconds: float

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status in (FAIL, ERROR)]

    @property
    def ok(self) -> bool:
        return not self.failed

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def result(self, cell_id: str) -> CellResult:
        for r in self.results:
            if r.id == cell_id:
                return r
        raise KeyError(f"no cell {cell_id!r}; cells are {', '.join(r.id for r in self.results)}")

    def to_json(self) -> dict:
        return {"folder": str(self.folder), "arch": self.arch, "task": self.task, "ok": self.ok,
                "head": self.heldout.head,
                "inputs": self.heldout.sources, "seconds": round(self.seconds, 2),
                "counts": {s: self.count(s) for s in (PASS, FAIL, ERROR, SKIP)},
                "failed": [r.id for r in self.failed], "not_exported": self.not_exported,
                "cells": [r.to_json() for r in self.results]}


def _metrics(held: HeldOut, cell, out) -> tuple[dict, np.ndarray]:
    rows = held.rows(cell.inputs)
    ref = held.reference[rows]
    scores = np.asarray(out.scores, np.float32)
    if scores.shape != ref.shape:
        raise ValueError(f"cell returned scores of shape {scores.shape}, expected {ref.shape}")
    finite = bool(np.all(np.isfinite(scores))) and (out.stream is None or bool(np.all(np.isfinite(out.stream))))
    m = compare(np.nan_to_num(scores, nan=1e30), ref, head=held.head)
    m["finite"] = finite
    # Task accuracy and its drop are judged on the whole test split only; cells that run a sample
    # (streaming, emulated devices) report theirs, unjudged: on ~100 rows one flip is ~1 point. They
    # are judged on top-1 agreement, error metrics and LSB distance to their host twin instead.
    # Forecasts: the same with the MSE on the true future frames instead of accuracy.
    full = cell.inputs == "all" and len(held.y) > held.golden_rows
    idx = np.arange(len(held.y))[held.accuracy_rows if full else slice(0, len(scores))]
    y = held.y[idx]
    if held.head == "forecast":
        t = target_errors(np.nan_to_num(scores[idx], nan=1e30), held.reference[idx], y)
        if not full:
            t["sample_target_mse_increase"] = t.pop("target_mse_increase")
        m.update(t)
        m["targets_on"] = "test split" if full else f"{cell.inputs} rows"
    else:
        m["accuracy"] = float(np.mean(scores[idx].argmax(-1) == y))
        m["reference_accuracy"] = float(np.mean(held.reference[idx].argmax(-1) == y))
        drop = m["reference_accuracy"] - m["accuracy"]
        m["accuracy_on"] = "test split" if full else f"{cell.inputs} rows"
        m["accuracy_drop" if full else "sample_accuracy_drop"] = drop
    m["accuracy_examples"] = int(len(idx))
    if len(scores) <= held.golden_rows:  # the golden rows only (--golden-only, the golden cell): judged as a sample
        m["golden_decisions"] = int(np.prod(scores.shape[:-1]))  # rows, or rows x steps for a frames head
    if out.stream is not None:
        m.update(stream_compare(np.nan_to_num(out.stream, nan=1e30), held.reference_stream[: len(out.stream)],
                                head=held.head))
    return m, np.abs(scores.astype(np.float64) - ref)


def _run_cell(held: HeldOut, cell) -> CellResult:
    if cell.skip:
        return CellResult(cell, SKIP, failures=[cell.skip])
    rows = held.rows(cell.inputs)
    x = held.x_raw[rows]
    t0 = time.perf_counter()
    try:
        out = cell.run(x)
        seconds = time.perf_counter() - t0
        metrics, errors = _metrics(held, cell, out)
    except Exception as e:  # UserError from runtime.load included: the cell could not run -> ERROR, named
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, UserError):
            line = traceback.format_exception_only(type(e), e)[-1].strip()
        return CellResult(cell, ERROR, failures=[f"could not run: {line[:300]}"], seconds=time.perf_counter() - t0)
    return CellResult(cell, PASS, metrics=metrics, seconds=seconds, n_inputs=len(x), errors=errors.ravel(), outputs=out)


def _base_variant(cell_id: str, arch: str, precision: str, runtime: str) -> str:
    rest = cell_id[len(f"{arch}-{precision}-{runtime}"):].strip("-")
    return "-".join(w for w in rest.split("-") if w and w != "stream")


def _between_cells(results: list[CellResult], head: str = "classify") -> None:
    """Metrics that compare two cells: streaming vs whole-sequence, LSB distance of integer runtimes."""
    ran = [r for r in results if r.status == PASS and r.outputs is not None]
    for s in ran:
        c = s.cell
        if c.mode == STREAM and c.runtime != "golden":
            wholes = [w for w in ran if w.cell.mode == WHOLE and w.cell.runtime == c.runtime
                      and w.cell.precision == c.precision]
            base = _base_variant(c.id, c.arch, c.precision, c.runtime)
            same = [w for w in wholes if _base_variant(w.id, c.arch, c.precision, c.runtime) == base]
            w = (same or wholes or [None])[0]
            if w is not None:
                n = min(len(s.outputs.scores), len(w.outputs.scores))
                s.metrics["stream_vs_whole"] = dict(agreement(s.outputs.scores[:n], w.outputs.scores[:n], head=head),
                                                    against=w.id)
        for rule in lsb_rules_for(c.runtime, c.precision, c.arch):
            others = [o for o in ran if o.cell.runtime == rule.against and o.cell.precision == c.precision
                      and o.cell.mode == c.mode and (not rule.same_file or o.cell.file == c.file)]
            for o in others:
                scale = c.output_scale or o.cell.output_scale
                n = min(len(s.outputs.scores), len(o.outputs.scores))
                if not scale and rule.max_lsb == 0:  # float outputs of an integer graph: identical or not
                    diff = np.abs(np.asarray(s.outputs.scores[:n], np.float64) - o.outputs.scores[:n])
                    per_row = diff.reshape(n, -1).max(1) if n else np.zeros(0)
                    s.metrics.setdefault("exact", {})[o.id] = {
                        "max_abs_diff": float(per_row.max()) if n else 0.0, "rows_differing": int((per_row > 0).sum()),
                        "rows": n, "reason": rule.reason}
                    continue
                if not scale:
                    s.metrics.setdefault("notes", []).append(f"no output scale to measure LSBs against {o.id}")
                    continue
                per_row = lsb_per_row(s.outputs.scores[:n], o.outputs.scores[:n], scale)
                s.metrics.setdefault("lsb", {})[o.id] = {
                    "lsb": int(per_row.max()) if per_row.size else 0, "rows_over": int((per_row > rule.max_lsb).sum()),
                    "max_lsb": rule.max_lsb, "rows_allowed_over": rule.rows_allowed_over(n), "worst_lsb": rule.cap(),
                    "scale": scale, "rows": n, "reason": rule.reason}


def run_matrix(folder, *, test_split: bool = True, max_test: int | None = None, only: list[str] | None = None,
               providers: tuple[str, ...] = REGISTRY, progress: bool = True,
               sample_test_rows: int = SAMPLE_TEST_ROWS) -> Matrix:
    """Run and judge every cell for the artifact folder ``folder``.

    ``only``: fnmatch patterns on cell ids (e.g. ``["*-int8-*"]``); ``max_test``: cap on test-split
    rows (0: golden only); ``providers``: provider modules to ask (default: all registered);
    ``sample_test_rows``: test rows added to the golden rows for streaming and emulated-device cells.
    """
    t0 = time.perf_counter()
    folder = Path(folder)
    manifest = Manifest.read(folder)
    arch = str(manifest.model.get("arch") or "model")
    held, model = load_heldout(manifest, test_split=test_split, max_test=max_test, sample_test_rows=sample_test_rows)
    ctx = Context(folder=folder, manifest=manifest, arch=arch, heldout=held, model=model)
    cells = collect(ctx, providers)
    if only:
        cells = [c for c in cells if any(fnmatch.fnmatch(c.id, pat) for pat in only)]
        if not cells:
            raise UserError(f"no cell matches {' '.join(only)}: list them with --list")
    bar = cells
    if progress:
        from tqdm import tqdm
        bar = tqdm(cells, desc=f"parity {arch}", unit="cell", leave=False)
    results = []
    try:
        for cell in bar:
            if progress:
                bar.set_postfix_str(cell.id)
            results.append(_run_cell(held, cell))
    finally:
        for close in ctx.cleanup:
            close()
    _between_cells(results, held.head)
    for r in results:
        if r.status == PASS:
            r.failures = judge(r.cell.precision, r.metrics)
            r.status = FAIL if r.failures else PASS
    not_exported = [{"name": a.get("name"), "status": a.get("status"), "error": a.get("error")}
                    for a in manifest.artifacts if a.get("status", "ok") != "ok"]
    return Matrix(folder, arch, str(manifest.data.get("task", "")), held, results, not_exported,
                  time.perf_counter() - t0)
