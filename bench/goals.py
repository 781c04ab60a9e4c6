"""The issue's acceptance goals, judged on a benchmark result: each gives the figure and met / MISSED."""

from __future__ import annotations

SPEEDUP_GOAL = 2.0  # our int8 C vs TFLite Micro, same LSTM
RAM_SAVING_GOAL = 0.5
ACCURACY_DROP_GOAL = 1.0  # points, int8 vs float reference
M4_PER_MAC_GOAL = 2.0
LINEAR_R2_GOAL = 0.99
LINEAR_DEV_GOAL = 0.10  # no point further than 10% from the fitted line


def judge(result: dict) -> list[dict]:
    goals: list[dict] = []

    def add(goal, figure, met, note=""):
        goals.append({"goal": goal, "figure": figure, "met": None if met is None else bool(met), "note": note})

    t = result.get("tflm")
    if t and "error" not in t:
        rt, kn = t["runtime_level"], t["kernel_level"]
        add(f"int8 C >= {SPEEDUP_GOAL:g}x faster than TFLite Micro (same LSTM, host, through runtime.load)",
            f"{rt['speedup']:.2f}x ({rt['c_cpu_ms']['median_ms']:.3f} vs {rt['tflm_cpu_ms']['median_ms']:.3f} ms CPU/sequence; "
            f"wall {rt['speedup_wall']:.2f}x)",
            rt["speedup"] >= SPEEDUP_GOAL,
            f"bare engines (one call each, no Python): {kn['speedup']:.2f}x "
            f"({kn['c_cpu_ms']['median_ms']:.3f} vs {kn['tflm_cpu_ms']['median_ms']:.3f} ms CPU; wall {kn['speedup_wall']:.2f}x)"
            + (f"; our C without SIMD (SSE2 off, as TFLM's reference kernels): {kn['speedup_portable']:.2f}x"
               if "speedup_portable" in kn else ""))
        r = t["ram"]
        if r.get("saving") is not None:
            add(f"int8 C uses >= {RAM_SAVING_GOAL:.0%} less RAM than TFLite Micro's arena",
                f"{r['saving']:.1%} less ({r['c_bytes']} B vs arena {r['tflm_arena_bytes']} B)",
                r["saving"] >= RAM_SAVING_GOAL, r["c_source"])
    for model in result.get("runtimes", []):
        ref = model.get("reference_accuracy")
        rows = [r for r in model["rows"] if r.get("precision") == "int8" and r.get("accuracy") is not None]
        c = next((r for r in rows if r["artifact"] == "c-int8"), None)
        if c is not None and ref is not None:
            worst = max(rows, key=lambda r: r["accuracy_drop_points"])
            add(f"int8 accuracy drop <= {ACCURACY_DROP_GOAL:g} point ({model['model']['arch'].upper()}, our C)",
                f"{c['accuracy_drop_points']:+.2f} points ({100 * ref:.2f}% -> {100 * c['accuracy']:.2f}%)",
                c["accuracy_drop_points"] <= ACCURACY_DROP_GOAL,
                f"worst int8 artifact: {worst['artifact']} {worst['accuracy_drop_points']:+.2f} points "
                f"(test split, {model.get('test_examples')} windows)")
    for r in result.get("mcu", []):
        if r.get("target") == "cortex-m4" and r.get("precision") == "int8" and "instructions" in r:
            pm = r["instructions"]["per_mac"]
            add(f"Cortex-M4 instructions per MAC <= {M4_PER_MAC_GOAL:g} ({r['model']})", f"{pm:.2f}",
                pm <= M4_PER_MAC_GOAL, f"{r['instructions']['per_inference']} instructions / {r['instructions']['macs_per_inference']} MACs")
    s = result.get("scaling")
    if s:
        for sweep, fits in s["fits"].items():
            for what in ("m4_instructions", "kernel_c_ms"):
                f = fits.get(what)
                if not f or f.get("r2") is None:
                    continue
                label = "Cortex-M4 instructions" if what == "m4_instructions" else "host CPU time (bare C)"
                add(f"{label} linear in MACs over the {sweep} sweep (R^2 >= {LINEAR_R2_GOAL}, every point within "
                    f"{LINEAR_DEV_GOAL:.0%} of the line)",
                    f"R^2 {f['r2']:.4f}, max deviation {f['max_rel_dev']:.1%}",
                    f["r2"] >= LINEAR_R2_GOAL and f["max_rel_dev"] <= LINEAR_DEV_GOAL,
                    _two_term_note(fits) if what == "m4_instructions" else "")
    return goals


def _two_term_note(fits: dict) -> str:
    two = fits.get("m4_instructions_macs_plus_elementwise")
    if not two:
        return ""
    return (f"with a per-unit term: {two['per_mac']:.2f} instr/MAC + {two['per_element_op']:.1f} instr per gate unit, "
            f"R^2 {two['r2']:.5f}, max deviation {two['max_rel_dev']:.1%}")
