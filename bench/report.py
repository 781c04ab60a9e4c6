"""A benchmark result -> docs/benchmarks/bench.json, bench.md and PNG plots (all written atomically)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from runtime.atomic import write_bytes, write_json, write_text
from runtime.errors import UserError


def _f(v, fmt="{:.3f}", none="-"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return fmt.format(v)


def _kb(n):
    return "-" if n is None else (f"{n / 1024:.1f} KB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.2f} MB")


def _section(title: str, intro: str, header: list[str], rows: list[dict], cells, error_cells) -> list[str]:
    """A report section: title, intro, then a table with one line per row (``cells(row)``), or for a
    row that failed, ``error_cells(row)`` and its error."""
    L = [f"## {title}", "", intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        vals = error_cells(r) + [f"error: {r['error']}"] if "error" in r else cells(r)
        L.append("| " + " | ".join(map(str, vals)) + " |" + "|" * (len(header) - len(vals)))
    return L + [""]


def _mcu_row(r: dict) -> list:
    i = r["instructions"]
    return [r["model"], r["precision"], r["target"], f"{i['per_inference']:,}", f"{i['macs_per_inference']:,}",
            f"{i['per_mac']:.2f}", f"{r['flash']['model_total']:,} B", f"{r['ram']['total']:,} B", _vs_host(r)]


def _vs_host(r: dict) -> str:
    """The guest's scores against the host gcc build: int8 must be bit-identical; float32 may differ
    by libm / FPU rounding within the float32 tolerance."""
    if r["host_identical"]:
        return "bit-identical"
    if r.get("host_within_limit"):
        return f"within {r['host_limit']:.1g} (float32 tolerance)"
    return "**DIFFERS**"


def _pi_row(r: dict) -> list:
    n, p = r["neon"], r["portable"]
    return [r["model"], f"{n['instructions']:,}", f"{n['per_mac']:.2f}", f"{p['instructions']:,}", f"{p['per_mac']:.2f}",
            f"{r['portable_over_neon']:.2f}x", n["host_identical"] and p["host_identical"]]


def markdown(result: dict, plots: list[str]) -> str:
    m = result["machine"]
    L = ["# Benchmark: runtimes, microcontrollers, TFLite Micro, scaling, training", "",
         f"Reproduce: `invoke bench` (or `python -m bench{' --quick' if result.get('quick') else ''}`). "
         f"Run {result['started']} UTC, {result['seconds']:.0f} s{' (quick mode)' if result.get('quick') else ''}."
         + "".join(f" The {q} section is carried over from the run of {when} UTC (this run measured other parts only)."
                   for q, when in (result.get("carried") or {}).items()), "",
         f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, {m['memory_gb']} GB, {m['platform']}, Python {m['python']}; "
         f"load average {m['load_avg_start']} at the start, {m.get('load_avg_end', '-')} at the end (a shared box: "
         f"absolute times are noisy, compare ratios measured in the same run). One thread everywhere.",
         "Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) + ".",
         "Tools: " + "; ".join(f"{v}" for v in m["tools"].values() if v) + ".", ""]
    L += ["## Goals", "", "| goal | figure | status | note |", "|---|---|---|---|"]
    for g in result.get("goals", []):
        st = "n/a" if g["met"] is None else ("met" if g["met"] else "**MISSED**")
        L.append(f"| {g['goal']} | {g['figure']} | {st} | {g['note']} |")
    L.append("")
    for model in result.get("runtimes", []):
        mm = model["model"]
        L += [f"## Runtimes: {mm['arch'].upper()} {mm['input_size']}->{'->'.join(map(str, mm['hidden_sizes']))}->{mm['num_classes']} "
              f"({model['folder']})", "",
              f"Batch 1, {mm.get('seq_len')} steps, median and p90 after warm-up. Memory: peak RSS of a child process per "
              f"artifact above its post-import base (load = importing the backend + loading; run = during inference). "
              f"Accuracy: export's measurement on the test split ({model.get('test_examples')} windows); "
              f"reference {100 * (model.get('reference_accuracy') or 0):.2f}%.", "",
              "| artifact | runtime | precision | kind | median | p90 | load peak MB | run peak MB | size | accuracy | drop (points) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in model["rows"]:
            if "error" in r:
                L.append(f"| {r['artifact']} | {r.get('runtime')} | {r.get('precision')} | {r.get('kind')} | error: {r['error']} |||||||")
                continue
            if "sequence" in r:
                med, p90 = f"{r['sequence']['median_ms']:.3f} ms", f"{r['sequence']['p90_ms']:.3f} ms"
            else:
                med, p90 = f"{r['step']['median_ms'] * 1e3:.1f} us/step", f"{r['step']['p90_ms'] * 1e3:.1f} us"
            mem = r.get("memory", {})
            size = _kb(r.get("size_bytes")) + (f" (arena {_kb(r['arena_bytes'])})" if r.get("arena_bytes") else "")
            acc = _f(r.get("accuracy"), "{:.2%}")
            L.append(f"| {r['artifact']} | {r['runtime']} | {r['precision']} | {r['kind']} | {med} | {p90} | "
                     f"{_f(mem.get('load_peak_mb'), '{:.1f}')} | {_f(mem.get('run_peak_mb'), '{:.1f}')} | {size} | {acc} | "
                     f"{_f(r.get('accuracy_drop_points'), '{:+.2f}')} |")
        L.append("")
    if result.get("mcu"):
        L += _section(
            "Microcontrollers (QEMU, exact instruction counts)",
            "One whole-sequence inference counted by a QEMU TCG plugin; -O2; flash = the model object (weights + code); "
            "RAM = state + deepest stack along gcc's call graph (-fcallgraph-info=su; libc/libm frames not counted). MAC floor: 1 instruction/MAC for a scalar loop, 0.5 with SMLAD "
            "(two 16-bit MACs per instruction), before loads, requantization and activations.",
            ["model", "precision", "target", "instructions", "MACs", "instr/MAC", "flash", "RAM", "guest vs host gcc build"],
            result["mcu"], _mcu_row, lambda r: [r["folder"], r["precision"], r["target"]])
    if result.get("pi"):
        L += _section(
            "Raspberry Pi 4 (aarch64 Cortex-A72 under qemu-aarch64, exact instruction counts)",
            "The exported int8 C cross-compiled (-O2 -march=armv8-a -mtune=cortex-a72) as generated (NEON SMLAL dot "
            "products) and with `<PREFIX>_PORTABLE` (plain C loop); one whole-sequence inference counted by the TCG "
            "plugin. Counts, not times: no Pi is reachable from here.",
            ["model", "NEON instructions", "instr/MAC", "portable instructions", "instr/MAC", "portable / NEON",
             "bit-identical with host"],
            result["pi"], _pi_row, lambda r: [r["folder"]])
    t = result.get("tflm")
    if t:
        L += ["## TFLite Micro vs our int8 C (same int8 LSTM, on the host)", ""]
        if "error" in t:
            L += [f"Not measured: {t['error']}", ""]
        else:
            rt, kn, ram, sz, acc, ag = t["runtime_level"], t["kernel_level"], t["ram"], t["size"], t["accuracy"], t["agreement_golden"]
            L += [f"{t['model']} from {t['folder']}; {t['inputs']}.", "",
                  "| measure | our int8 C | TFLite Micro | ratio |", "|---|---|---|---|",
                  f"| CPU time through runtime.load (median) | {rt['c_cpu_ms']['median_ms']:.3f} ms | {rt['tflm_cpu_ms']['median_ms']:.3f} ms | {rt['speedup']:.2f}x faster |",
                  f"| wall time through runtime.load (median) | {rt['c_ms']['median_ms']:.3f} ms | {rt['tflm_ms']['median_ms']:.3f} ms | {rt['speedup_wall']:.2f}x faster |",
                  f"| CPU time, bare engine (median) | {kn['c_cpu_ms']['median_ms']:.3f} ms | {kn['tflm_cpu_ms']['median_ms']:.3f} ms | {kn['speedup']:.2f}x faster |",
                  f"| wall time, bare engine (median) | {kn['c_ms']['median_ms']:.3f} ms | {kn['tflm_ms']['median_ms']:.3f} ms | {kn['speedup_wall']:.2f}x faster |",
                  *([f"| CPU time, bare engine, our C built without SIMD (`<PREFIX>_PORTABLE`; median) | "
                     f"{kn['c_portable_cpu_ms']['median_ms']:.3f} ms | {kn['tflm_cpu_ms']['median_ms']:.3f} ms | "
                     f"{kn['speedup_portable']:.2f}x faster |"] if "c_portable_cpu_ms" in kn else []),
                  f"| RAM | {ram['c_bytes']} B ({ram['c_source']}: state {ram['c_state_bytes']} + stack {ram['c_stack_bytes']}) | "
                  f"{ram['tflm_arena_bytes']} B arena (+ interpreter objects, stack) | {_f(ram['saving'], '{:.1%}')} less |",
                  f"| size | {_kb(sz['c_flash_bytes'])} flash (weights + code) | {_kb(sz['tflm_flatbuffer_bytes'])} flatbuffer "
                  f"(+ interpreter code) | {_f(sz['ratio'], '{:.2f}')}x |",
                  f"| test accuracy (reference {_f(acc['reference'], '{:.2%}')}) | {_f(acc['c_int8'], '{:.2%}')} | {_f(acc['tflm_int8'], '{:.2%}')} | |",
                  "", f"On the golden sequences: C and TFLM agree on top-1 {ag['c_vs_tflm_top1']:.0%} (max score difference "
                  f"{ag['c_vs_tflm_max_abs']:.3g}); C vs float {ag['c_vs_float_top1']:.0%}, TFLM vs float {ag['tflm_vs_float_top1']:.0%}.",
                  "Through runtime.load both engines run a whole sequence per call (our C backend: one ctypes call of "
                  "`<prefix>_run`); the bare-engine rows remove the Python around them. On this x86-64 host our C's dot "
                  "products use SSE2 while TFLite Micro's host build runs its portable reference kernels; the "
                  "`<PREFIX>_PORTABLE` row compares plain C with plain C.", ""]
    s = result.get("scaling")
    if s:
        L += ["## Scaling", "", f"{s['model']}: hidden sweep at {s['fixed']['hidden_sweep_length']} steps, length sweep at "
              f"hidden {s['fixed']['length_sweep_hidden']}. Latency = host CPU time (process_time) of one sequence, batch 1, median "
              "(wall time beside it: calls longer than a scheduler slice also wait on this shared box); M4 = exact instructions under QEMU "
              "(budget lifted to the board's memory where a size would not fit a typical M4 part).", "",
              "| sweep | hidden | length | MACs | bare C ms (CPU) | runtime c ms (CPU) | bare C ms (wall) | M4 instructions | instr/MAC | fits M4 part |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for sweep, rows in s["sweeps"].items():
            for r in rows:
                m4 = r.get("m4") or {}
                L.append(f"| {sweep} | {r['hidden']} | {r['length']} | {r['macs']:,} | {r['kernel_c']['median_ms']:.3f} | "
                         f"{r['runtime_c']['median_ms']:.3f} | {_f(r['kernel_c'].get('wall_median_ms'), '{:.3f}')} | {_f(m4.get('instructions'), '{:,}')} | {_f(m4.get('per_mac'), '{:.2f}')} | "
                         f"{m4.get('fits_m4_part_budget', '-')} |")
        L += ["", "| sweep | measure | slope | intercept | R^2 | max deviation from the line |", "|---|---|---|---|---|---|"]
        for sweep, fits in s["fits"].items():
            for what, f in fits.items():
                if what.endswith("elementwise"):
                    L.append(f"| {sweep} | M4 instr = a + b MACs + c units | {f['per_mac']:.3f}/MAC, {f['per_element_op']:.1f}/unit | "
                             f"{f['intercept']:.0f} | {f['r2']:.5f} | {f['max_rel_dev']:.1%} |")
                elif f.get("r2") is not None:
                    L.append(f"| {sweep} | {what} | {f['slope']:.4g}/MAC | {f['intercept']:.4g} | {f['r2']:.5f} | {f['max_rel_dev']:.1%} |")
        L.append("")
    tr = result.get("training")
    if tr:
        L += ["## Training throughput (CPU, one thread)", "", "| task | arch | hidden | epochs | seconds | sequences/s |", "|---|---|---|---|---|---|"]
        for r in tr["short_run"]:
            L.append(f"| {r['task']} | {r['arch']} | {r['hidden']} | {r['epochs']} | {r['train_seconds']:.1f} | {r['sequences_per_s']:.0f} |")
        L += ["", "Time to target accuracy (full training) and GPU figures: `invoke train-bench` -> docs/benchmarks/training.md"
              + (" (quoted in bench.json)." if "train_bench" in tr else " (not present at the time of this run)."), ""]
    if plots:
        L += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(L)


# -- plots ----------------------------------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def plots(result: dict) -> dict[str, bytes]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    out: dict[str, bytes] = {}
    models = result.get("runtimes", [])
    if models:
        fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 6), squeeze=False)
        for ax, model in zip(axes[0], models):
            rows = [r for r in model["rows"] if "sequence" in r]
            names = [f"{r['artifact']}" for r in rows]
            med = [r["sequence"]["median_ms"] for r in rows]
            p90 = [r["sequence"]["p90_ms"] for r in rows]
            y = np.arange(len(rows))
            ax.barh(y, med, color="tab:blue", label="median")
            ax.errorbar(med, y, xerr=[np.zeros(len(med)), np.maximum(0, np.subtract(p90, med))], fmt="none", ecolor="gray", label="to p90")
            ax.set_yticks(y, names, fontsize=8)
            ax.set_xscale("log")
            ax.set_xlabel("ms per sequence (batch 1, log scale)")
            ax.set_title(f"{model['model']['arch'].upper()} {model['model']['hidden_sizes']}: latency per sequence")
            ax.invert_yaxis()
            ax.legend(fontsize=8)
        out["runtimes_latency.png"] = _png(fig)
    mcu = [r for r in result.get("mcu", []) if "instructions" in r and r["precision"] == "int8"]
    if mcu:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = sorted({r["target"] for r in mcu}, key=lambda t: ["cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55"].index(t) if t in ("cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55") else 9)
        ms = sorted({r["model"] for r in mcu})
        w = 0.8 / max(1, len(ms))
        for k, mname in enumerate(ms):
            vals = [next((r["instructions"]["per_mac"] for r in mcu if r["model"] == mname and r["target"] == t), 0) for t in labels]
            ax.bar(np.arange(len(labels)) + k * w, vals, w, label=mname)
        ax.axhline(2.0, color="red", ls="--", lw=1, label="goal (M4): 2")
        ax.axhline(1.0, color="gray", ls=":", lw=1, label="scalar MAC floor: 1")
        ax.axhline(0.5, color="gray", ls="-.", lw=1, label="SMLAD floor: 0.5")
        ax.set_xticks(np.arange(len(labels)) + w * (len(ms) - 1) / 2, labels)
        ax.set_ylabel("instructions per MAC (int8)")
        ax.set_title("Cortex-M, one inference, exact counts under QEMU")
        ax.legend(fontsize=8)
        out["mcu_instructions_per_mac.png"] = _png(fig)
    s = result.get("scaling")
    if s:
        for what, ylabel, fname, keys in (
                ("latency", "CPU ms per sequence (host, median)", "scaling_latency.png", (("kernel_c", "kernel (one call)"), ("runtime_c", "runtime c backend"))),
                ("instructions", "Cortex-M4 instructions per inference", "scaling_instructions.png", (("m4", "Cortex-M4"),))):
            if what == "instructions" and not all("m4" in r for rows in s["sweeps"].values() for r in rows):
                continue
            fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
            for ax, (sweep, rows) in zip(axes, s["sweeps"].items()):
                x = np.array([r["macs"] for r in rows], float)
                for key, label in keys:
                    yv = np.array([r[key]["instructions"] if key == "m4" else r[key]["median_ms"] for r in rows], float)
                    ax.plot(x, yv, "o", label=label)
                    f = s["fits"][sweep].get("m4_instructions" if key == "m4" else f"{key}_ms")
                    if f and f.get("r2") is not None:
                        xx = np.linspace(0, x.max() * 1.05, 50)
                        ax.plot(xx, f["intercept"] + f["slope"] * xx, "--", lw=1, label=f"line, R^2 {f['r2']:.4f}")
                for r in rows:
                    ax.annotate(f"H{r['hidden']}" if sweep == "hidden" else f"T{r['length']}", (r["macs"], r["m4"]["instructions"] if what == "instructions" else r["kernel_c"]["median_ms"]),
                                fontsize=7, xytext=(3, -9), textcoords="offset points")
                ax.set_xlabel("MACs per inference")
                ax.set_ylabel(ylabel)
                ax.set_title(f"{sweep} sweep")
                ax.legend(fontsize=8)
            out[fname] = _png(fig)
    t = result.get("tflm")
    if t and "error" not in t:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        lv = ["runtime_level", "kernel_level"]
        c = [t[k]["c_cpu_ms"]["median_ms"] for k in lv]
        tf = [t[k]["tflm_cpu_ms"]["median_ms"] for k in lv]
        xs = np.arange(2)
        axes[0].bar(xs - 0.2, c, 0.4, label="our int8 C")
        axes[0].bar(xs + 0.2, tf, 0.4, label="TFLite Micro")
        axes[0].set_xticks(xs, ["through runtime.load", "bare engine"])
        axes[0].set_ylabel("CPU ms per sequence (median)")
        axes[0].legend(fontsize=8)
        axes[0].set_title(t["model"] + ": latency (host)")
        ram = t["ram"]
        axes[1].bar(["our C: state + stack", "TFLM arena"], [ram["c_bytes"] or 0, ram["tflm_arena_bytes"] or 0], color=["tab:blue", "tab:orange"])
        axes[1].set_ylabel("bytes")
        axes[1].set_title("RAM")
        out["tflm_vs_c.png"] = _png(fig)
    return out


def carry_over(result: dict, out_dir, measured: tuple[str, ...], all_parts: tuple[str, ...]) -> list[str]:
    """Put into ``result`` the sections of the parts not measured now from ``out_dir/bench.json``, so that a
    partial run (``--only pi``) updates its parts of the report instead of replacing the whole report.
    Returns the parts carried; ``result["carried"]`` records when each was measured."""
    path = Path(out_dir) / "bench.json"
    if set(measured) >= set(all_parts) or not path.is_file():
        return []
    try:
        old = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is damaged ({e}): a partial run would replace the whole report; remove it, "
                        f"run every part, or choose another --out") from None
    carried = [q for q in all_parts if q not in measured and isinstance(old, dict) and q in old]
    for q in carried:
        result[q] = old[q]
    if carried:
        before = old.get("carried") or {}
        result["carried"] = {q: before.get(q, old.get("started")) for q in carried}
    return carried


def write(result: dict, out_dir) -> list[Path]:
    """Write bench.json, bench.md and the plots under ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = plots(result)
    paths = []
    for name, data in pngs.items():
        write_bytes(out_dir / name, data)
        paths.append(out_dir / name)
    write_json(out_dir / "bench.json", result)
    write_text(out_dir / "bench.md", markdown(result, list(pngs)))
    return [out_dir / "bench.json", out_dir / "bench.md", *paths]
