"""``python -m runtime check ARTIFACTS``: verify every file's sha256, then run the golden samples.

Each artifact (or the ones chosen with --backend/--artifact/--precision) is loaded through the
normal API (which verifies its sha256 first), run on the manifest's golden ``x_raw`` and compared
with the PyTorch scores (``runtime.metrics.compare``) within ``runtime.tolerances``. A whole-
sequence artifact is judged on ``scores``; a step artifact is streamed frame by frame and judged
on every step's scores (max |error|) and on the last step's decisions (top-1, accuracy). Exit 0
if every checked artifact passes, 1 if any fails, 2 on a usage error.
"""

from __future__ import annotations

import numpy as np

from runtime.apps.common import print_json
from runtime.errors import MissingDependency, UserError
from runtime.backends import backend_class
from runtime.manifest import Manifest
from runtime.metrics import compare
from runtime.tolerances import abs_limit, golden_top1_breaches, regression_breaches, score_breaches, tolerance_for


def add_arguments(p) -> None:
    p.add_argument("artifacts", help="artifact folder (with manifest.json)")
    p.add_argument("--backend", default=None, help="check only artifacts run by this backend")
    p.add_argument("--artifact", action="append", default=None, help="check only this artifact (repeatable)")
    p.add_argument("--precision", default=None, help="check only this precision")
    p.add_argument("--json", action="store_true", help="one JSON object per artifact")


def judge(metrics: dict, precision: str, rows: int) -> list[str]:
    """What breaks the tolerance policy on ``rows`` golden decisions (empty: passes).

    The golden rows are few (8 in an export), so decisions are judged as a sample: top-1
    disagreements fail only beyond what an artifact at the policy's agreement would show
    (``golden_top1_breaches``), and the accuracy drop is not judged (one row of 8 is 12.5 points;
    the export judged it on the whole test split, and the parity suite's sampled cells do the same).
    The scores themselves are judged as at export: max |error| for float formats, RMSE / range for
    integer ones, which sees a wrong scale or zero point even when no decision moves."""
    tol = tolerance_for(precision)
    bad = []
    limit = abs_limit(tol, metrics.get("ref_peak"))  # float formats: relative to the reference's peak score
    if limit is not None and metrics["max_abs_err"] > limit:
        bad.append(f"max|err| {metrics['max_abs_err']:.3g} > {limit:.3g}")
    if metrics.get("head") == "forecast":  # regression: relative error, MSE on the targets
        return bad + regression_breaches(tol, metrics)
    return bad + score_breaches(tol, metrics) + golden_top1_breaches(tol, precision, metrics["top1_agreement"], rows)


def check_entry(folder, entry: dict, golden, backend: str | None) -> dict:
    from runtime.model import load
    kind = entry.get("kind", "sequence")
    model = load(folder, artifact=entry["name"], backend=backend)
    x, ref, y = golden["x_raw"], golden["scores"], golden["y"]
    if kind == "step":
        stream = model.stream().run(x)
        m_all = compare(stream.reshape(-1, stream.shape[-1]), golden["stream_scores"].reshape(-1, stream.shape[-1]),
                        head="forecast" if np.ndim(y) == 2 and y.dtype.kind == "f" else "classify")
        judged = stream if getattr(model, "frames", False) else stream[:, -1]  # frames: every step's decision
        metrics = compare(judged, ref, y)
        metrics["max_abs_err"], metrics["ref_peak"] = m_all["max_abs_err"], m_all["ref_peak"]
        if "top1_agreement" in metrics:
            metrics["stream_top1_agreement_all_steps"] = m_all["top1_agreement"]
    else:
        judged = model.predict(x)
        metrics = compare(judged, ref, y)
    metrics["decisions"] = int(np.prod(np.shape(judged)[:-1]))  # rows, or rows x steps for a frames head
    return metrics


def run(args) -> int:
    man = Manifest.read(args.artifacts)
    if args.backend:
        backend_class(args.backend)  # an unknown name is a usage error, not "nothing could be checked"
        for name in args.artifact or []:  # a named artifact the backend has none of: say so, not "nothing checked"
            man.require_runtime(man.by_name(name), args.backend)
    if args.precision and args.precision not in {a.get("precision") for a in man.artifacts}:
        have = sorted({str(a.get("precision")) for a in man.artifacts})
        raise UserError(f"no artifact in {man.folder} has precision {args.precision!r}: it has {', '.join(have) or 'none'}")
    steps = ("stream_scores",) if any(a.get("kind") == "step" for a in man.artifacts) else ()
    golden = man.golden("x_raw", "scores", "y", *steps)  # sha256-verified
    failures, checked, missing = 0, 0, 0
    # 1) every listed file (a C entry's header too), whether or not a backend for it is installed here
    for entry in man.artifacts:
        if entry.get("status", "ok") != "ok":
            continue
        try:
            man.verified(entry)
        except UserError as e:
            _report(args, entry, "FAIL", str(e))
            failures += 1
    if failures:
        return 1
    # 2) the golden samples through every selected artifact
    for entry in man.artifacts:
        if args.artifact and entry.get("name") not in args.artifact:
            continue
        if args.precision and entry.get("precision") != args.precision:
            continue
        if args.backend and entry.get("runtime") != args.backend:
            continue
        if entry.get("status", "ok") != "ok":
            _report(args, entry, "skip", f"export status {entry.get('status')}: {entry.get('error')}")
            continue
        try:
            metrics = check_entry(man.folder, entry, golden, args.backend)
        except MissingDependency as e:
            if args.backend or args.artifact:
                raise
            _report(args, entry, "skip", str(e))
            missing += 1
            continue
        checked += 1
        bad = judge(metrics, entry.get("precision", "float32"), rows=metrics["decisions"])
        failures += bool(bad)
        _report(args, entry, "FAIL" if bad else "ok", "; ".join(bad), metrics)
    if args.artifact:
        unknown = set(args.artifact) - set(man.names())
        if unknown:
            raise UserError(f"no artifact named {', '.join(sorted(unknown))} in {man.folder}: choose from {', '.join(man.names())}")
    selection = [f"--{k} {v}" for k in ("backend", "precision") if (v := getattr(args, k))]
    selection += [f"--artifact {name}" for name in args.artifact or []]
    if checked == 0 and selection and not missing:  # the selection, not a missing library, left nothing
        ok = [a for a in man.artifacts if a.get("status", "ok") == "ok"]
        by_runtime = {r: sorted({str(a.get("precision")) for a in ok if a.get("runtime") == r})
                      for r in dict.fromkeys(a.get("runtime") for a in ok)}
        listing = "; ".join(f"{r} ({', '.join(ps)})" for r, ps in by_runtime.items()) or "none: re-export"
        raise UserError(f"no artifact selected by {' '.join(selection)} can run: the artifacts in {man.folder} "
                        f"that can are for {listing}; choose among them, or drop the selection to check them all")
    if checked == 0:
        raise UserError(f"nothing in {man.folder} could be checked with the backends installed here "
                        f"(see the skipped lines): install one, e.g. `pip install -e '.[onnx]'`")
    print(f"{checked - failures}/{checked} artifacts within tolerance" if not args.json else "", end="\n" if not args.json else "")
    return 1 if failures else 0


def _report(args, entry: dict, verdict: str, why: str, metrics: dict | None = None) -> None:
    if args.json:
        print_json({"artifact": entry.get("name"), "verdict": verdict, "why": why, "metrics": metrics})
        return
    line = f"{verdict:4}  {entry.get('name', '?'):28} {entry.get('precision') or '?':14}"  # null for a failed export
    if metrics and metrics.get("head") == "forecast":
        line += (f" max|err| {metrics['max_abs_err']:.2e}  rel err {metrics['rel_err']:.2e}"
                 f"  MSE {metrics.get('target_mse', float('nan')):.4f} (ref {metrics.get('reference_target_mse', float('nan')):.4f})")
    elif metrics:
        line += (f" max|err| {metrics['max_abs_err']:.2e}  top1 {metrics['top1_agreement']:.3f}"
                 f"  acc {metrics.get('accuracy', float('nan')):.3f} (ref {metrics.get('reference_accuracy', float('nan')):.3f})")
    if why:
        line += f"  {why}"
    print(line, flush=True)
