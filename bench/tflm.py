"""TFLite Micro's interpreter against our int8 C on the same int8 LSTM, on the host, in one run.

Latency is CPU time per call (``time.process_time``, both run on the calling thread), with wall
time beside it: on a shared, loaded box wall time includes preemption. Both come from one artifact folder (the same checkpoint, exported once): ``tflm-int8`` (TFLite's
fused int8 UNIDIRECTIONAL_SEQUENCE_LSTM, run by the ``tflite-micro`` wheel, the MCU interpreter
built for x86, whose kernels are TFLM's portable reference kernels) and ``c-int8`` (our generated
C, compiled by gcc -O2: on x86-64 its dot products use SSE2). Same inputs (the golden sequences),
timed interleaved, in alternating order, so machine noise hits both alike:

- ``runtime`` level: ``runtime.load(...).predict`` on one sequence for each (normalization,
  quantization, the backend call, dequantization; one ctypes call of ``<prefix>_run``, one TFLM
  invoke);
- ``kernel`` level: pre-quantized int8 in, raw scores out: one ctypes call of ``<prefix>_run`` vs
  TFLM's ``reset`` + ``set_input`` + ``invoke`` + ``get_output``; and our C built with
  ``<PREFIX>_PORTABLE`` (the plain C loop, no SIMD), scalar code against scalar code.

RAM: TFLM's tensor arena (the export's measured minimum, manifest ``arena_bytes``; the
interpreter's own objects and stack come on top) against our state + stack on Cortex-M4 (QEMU
build, stack along gcc's call graph; ``bench.mcu``). Size: the .tflite flatbuffer against our whole model
object on Cortex-M4 (weights + code); TFLM's interpreter code is not counted. Accuracy: the
manifest's test-split figures; agreement: the two on the golden sequences.
"""

from __future__ import annotations

import ctypes
import tempfile
from pathlib import Path

import numpy as np

from bench.timing import interleaved
from runtime.errors import UserError


def _level(res: dict) -> dict:
    (cw, cc), (tw, tc) = res["c"], res["tflm"]
    out = {"c_ms": summary_ms(cw), "tflm_ms": summary_ms(tw), "c_cpu_ms": summary_ms(cc), "tflm_cpu_ms": summary_ms(tc),
           "speedup_wall": float(np.median(tw) / np.median(cw)), "speedup": float(np.median(tc) / np.median(cc))}
    if "c_portable" in res:
        pw, pc = res["c_portable"]
        out.update(c_portable_ms=summary_ms(pw), c_portable_cpu_ms=summary_ms(pc),
                   speedup_portable_wall=float(np.median(tw) / np.median(pw)), speedup_portable=float(np.median(tc) / np.median(pc)))
    return out


def _kernel_calls(c_model, t_model, x_raw: np.ndarray, c_dir: Path, work: Path):
    """Zero-argument callables running the bare engines on pre-quantized int8 input: our C as the C
    backend compiled it, our C built with ``<PREFIX>_PORTABLE`` (from ``c_dir``: checked copies of the
    package's files), and TFLM."""
    from export.c.build import build_shared
    from runtime.quant import quantize
    cb = c_model.sequence_graph.backend
    tb = t_model.sequence_graph.backend
    xc = np.ascontiguousarray(quantize(c_model.normalize(x_raw), c_model.quant["input"], "int8")[0])
    xt = np.ascontiguousarray(quantize(t_model.normalize(x_raw), t_model.quant["input"], "int8"))
    run = getattr(cb.lib, f"{cb.prefix}_run")
    run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int8), ctypes.c_int32, ctypes.POINTER(ctypes.c_int32)]
    run.restype = None
    state = ctypes.create_string_buffer(cb.state_bytes)
    scores = np.zeros(cb.classes, np.int32)
    xp, sp, steps = xc.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), scores.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), len(xc)
    it = tb.interpreter

    def c_call():
        run(state, xp, steps, sp)
        return scores

    so = build_shared(c_dir, cb.prefix, work / f"lib{cb.prefix}_portable.so", "int8",
                      defines=(f"{cb.prefix.upper()}_PORTABLE",))
    plib = ctypes.CDLL(str(so.resolve()))
    prun = getattr(plib, f"{cb.prefix}_run")
    prun.argtypes, prun.restype = run.argtypes, None
    pstate = ctypes.create_string_buffer(cb.state_bytes)

    def portable_call():
        prun(pstate, xp, steps, sp)
        return scores

    def tflm_call():
        it.reset()
        it.set_input(xt, 0)
        it.invoke()
        return it.get_output(0)
    return c_call, portable_call, tflm_call


def summary_ms(t: np.ndarray) -> dict:
    return {"median_ms": float(np.median(t) * 1e3), "p90_ms": float(np.percentile(t, 90) * 1e3), "n": int(len(t))}


def compare_tflm_host(folder, rounds: int = 200, warmup: int = 10, m4_row: dict | None = None) -> dict:
    """The comparison on one LSTM artifact folder with ``c-int8`` and ``tflm-int8`` entries."""
    import runtime
    from runtime.manifest import Manifest
    folder = Path(folder)
    man = Manifest.read(folder)
    if man.model.get("arch") != "lstm":
        raise UserError(f"{folder} holds a {man.model.get('arch')} model: TFLite Micro has no GRU kernel, compare an LSTM")
    names = set(man.names())
    if not {"c-int8", "tflm-int8"} <= names:
        raise UserError(f"{folder} lacks c-int8 or tflm-int8: export it with all kinds (python -m export --arch lstm)")
    c_entry, t_entry = man.by_name("c-int8"), man.by_name("tflm-int8")
    c_model = runtime.load(folder, artifact="c-int8", threads=1)
    t_model = runtime.load(folder, artifact="tflm-int8", threads=1)
    golden = man.golden("x_raw", "scores")  # sha256-checked; damage is one line
    xs = golden["x_raw"]

    i = [0]

    def seq():  # cycle through the golden sequences, the same one for both within a round
        return xs[(i[0] // 2) % len(xs)][None]

    def rt_c():
        i[0] += 1
        return c_model.predict(seq())

    def rt_t():
        i[0] += 1
        return t_model.predict(seq())
    rt = interleaved({"c": rt_c, "tflm": rt_t}, rounds, warmup)
    with tempfile.TemporaryDirectory(prefix="rnn-edge-bench-tflm-") as work:
        c_dir = man.verified_c(c_entry, Path(work) / "verified-c")  # never compiled from the folder itself
        c_call, p_call, t_call = _kernel_calls(c_model, t_model, xs[:1], c_dir, Path(work))
        kn = interleaved({"c": c_call, "c_portable": p_call, "tflm": t_call}, rounds, warmup)

    sc = np.concatenate([c_model.predict(xs[j:j + 1]) for j in range(len(xs))])
    st = np.concatenate([t_model.predict(xs[j:j + 1]) for j in range(len(xs))])
    ref = golden["scores"]

    ours_ram = ours_flash = None
    ram_source = "Cortex-M4 build (state + deepest stack along gcc's call graph)"
    if m4_row and "ram" in m4_row:
        ours_ram, ours_flash = m4_row["ram"]["total"], m4_row["flash"]["model_total"]
        state, stack = m4_row["ram"]["state"], m4_row["ram"]["stack"]
    else:
        state, stack = c_model.sequence_graph.backend.state_bytes, None
        ours_ram, ram_source = state, "host C state struct only (no Cortex-M4 build in this run)"
    arena = int(t_entry.get("arena_bytes") or 0) or None
    tfl_size = int(t_entry["size_bytes"])
    ref_acc = (man.data.get("reference") or {}).get("accuracy")
    out = {
        "folder": str(folder), "model": f"LSTM {man.model['input_size']}->{'->'.join(map(str, man.model['hidden_sizes']))}->{man.model['num_classes']}",
        "inputs": f"{len(xs)} golden sequences of {xs.shape[1]} steps, batch 1, interleaved, {rounds} rounds after {warmup} warm-up",
        "runtime_level": _level(rt), "kernel_level": _level(kn),
        "speedup_measure": "ratio of median CPU times (process_time); wall-clock ratio beside it",
        "ram": {"tflm_arena_bytes": arena, "c_bytes": ours_ram, "c_state_bytes": state, "c_stack_bytes": stack,
                "c_source": ram_source, "saving": (1 - ours_ram / arena) if arena and ours_ram else None},
        "size": {"tflm_flatbuffer_bytes": tfl_size, "c_flash_bytes": ours_flash,
                 "c_source_bytes": int(c_entry["size_bytes"]),
                 "ratio": (ours_flash / tfl_size) if ours_flash else None,
                 "note": "TFLM's interpreter code is not counted in its size; ours is the whole model object (weights + code)"},
        "accuracy": {"reference": ref_acc, "c_int8": c_entry.get("accuracy"), "tflm_int8": t_entry.get("accuracy")},
        "agreement_golden": {"c_vs_tflm_top1": float(np.mean(sc.argmax(1) == st.argmax(1))),
                             "c_vs_tflm_max_abs": float(np.max(np.abs(sc - st))),
                             "c_vs_float_top1": float(np.mean(sc.argmax(1) == ref.argmax(1))),
                             "tflm_vs_float_top1": float(np.mean(st.argmax(1) == ref.argmax(1)))},
    }
    return out
