"""The table printed at the end of an export: one row per artifact."""

from __future__ import annotations


def _size(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MB"


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(manifest: dict) -> str:
    """Artifact, precision, size, accuracy, max |error| vs the float PyTorch scores, status."""
    ref = manifest.get("reference", {})
    if (manifest.get("model") or {}).get("head") == "forecast":
        return _forecast_table(manifest, ref)
    rows = [("artifact", "precision", "size", "accuracy", "max err vs float", "top-1 agree", "status")]
    rows.append(("pytorch (reference)", "float32", "-", _num(ref.get("accuracy"), ".4f"), "0", "1.0000", "reference"))
    for r in manifest.get("artifacts", []):
        m = r.get("metrics") or {}
        rows.append((r.get("name") or "?", r.get("precision") or "-", _size(r.get("size_bytes")),
                     _num(r.get("accuracy"), ".4f"), _num(m.get("max_abs_err"), ".3g"),
                     _num(m.get("top1_agreement"), ".4f"), r.get("status") or "-"))
    return _layout(rows, manifest)


def _forecast_table(manifest: dict, ref: dict) -> str:
    """A forecast model: MSE/MAE on the true future frames and RMSE / relative error vs PyTorch (normalized units)."""
    fc = ref.get("forecast") or {}
    rows = [("artifact", "precision", "size", "MSE vs targets", "MAE vs targets", "RMSE vs float", "rel err", "status"),
            ("pytorch (reference)", "float32", "-", _num(fc.get("mse"), ".4f"), _num(fc.get("mae"), ".4f"), "0", "0", "reference"),
            ("naive last value", "-", "-", _num(fc.get("naive_mse"), ".4f"), _num(fc.get("naive_mae"), ".4f"), "-", "-", "baseline")]
    for r in manifest.get("artifacts", []):
        m = r.get("metrics") or {}
        rows.append((r.get("name") or "?", r.get("precision") or "-", _size(r.get("size_bytes")),
                     _num(m.get("target_mse"), ".4f"), _num(m.get("target_mae"), ".4f"), _num(m.get("rmse"), ".3g"),
                     _num(m.get("rel_err"), ".3g"), r.get("status") or "-"))
    return _layout(rows, manifest)


def _layout(rows, manifest: dict) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for s in manifest.get("skipped", []):
        lines.append(f"skipped {s['family']}: {s['reason']}")
    return "\n".join(lines)


def problems(manifest: dict) -> list[str]:
    """One line per artifact that failed or is outside tolerance."""
    out = []
    for r in manifest.get("artifacts", []):
        if r.get("status") != "ok":
            msg = r.get("error") or r.get("status")
            name = r.get("name") or "?"
            out.append(msg if name in str(msg) else f"{name}: {msg}")
    return out
