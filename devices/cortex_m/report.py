"""``invoke firmware``: build a C model for a Cortex-M target, run it under QEMU, report its cost.

Report per model and core: flash (weights + code of the model object, ``arm-none-eabi-size``),
RAM (state struct + deepest stack along gcc's call graph, ``-fcallgraph-info=su``), executed instructions per inference
(exact, counted by a QEMU TCG plugin between two marker functions), instructions per
multiply-accumulate, and whether the guest's scores equal the host build's bit for bit.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from devices.cortex_m import firmware as F
from devices.targets import CortexMTarget, get_target
from devices.work_folder import work_folder
from export.c import build as HB
from export.c import footprint
from runtime.errors import UserError

COUNTING = "QEMU TCG plugin (devices/cortex_m/icount_plugin.c): exact executed-instruction count of one whole-sequence inference"


def check_budget(arch: str, input_size: int, hidden, classes: int, precision: str, target: CortexMTarget) -> dict:
    """Refuse (UserError) a model whose estimated flash or RAM exceeds the target's budget. Before any build."""
    est = footprint.estimate(arch, input_size, hidden, classes, precision)
    for what, need, have in (("flash", est["flash"], target.flash_bytes), ("RAM", est["ram"], target.ram_bytes)):
        if need > have:
            raise UserError(f"{precision} {arch.upper()} {input_size}->{'->'.join(map(str, hidden))}->{classes} needs about "
                            f"{need / 1024:.1f} KB of {what} but {target.name} ({target.part}) has {have / 1024:.0f} KB: "
                            f"use int8, smaller layers, or a bigger target")
    return est


def macs_per_step(model: dict) -> int:
    """Multiply-accumulates of the recurrent layers per frame (``model``: the manifest's model facts)."""
    gates = 4 if model["arch"] == "lstm" else 3
    macs, n_in = 0, model["input_size"]
    for h in model["hidden_sizes"]:
        macs += gates * h * (n_in + h)
        n_in = h
    return macs


def measure(lib_dir, prefix: str, precision: str, model: dict, target: CortexMTarget, x: np.ndarray, work_dir,
            opt: str = "-O2", timeout: float = 120) -> dict:
    """Build + run one C library on one target; ``model`` = manifest ``model`` dict; ``x`` = frames for the device."""
    hidden = list(model["hidden_sizes"])
    est = check_budget(model["arch"], model["input_size"], hidden, model["num_classes"], precision, target)
    work = Path(work_dir)
    fw = F.build(lib_dir, prefix, precision, target, work / target.name, opt)
    run = F.run(fw, x, timeout=timeout)
    host_exe = HB.build_harness(lib_dir, prefix, precision, work / "host" / f"harness_{prefix}")
    host = HB.run_harness(host_exe, x, precision)
    if precision == "int8":
        identical = bool(np.array_equal(run.scores, host))
        max_diff = float(np.max(np.abs(run.scores.astype(np.int64) - host.astype(np.int64))))
    else:
        identical = bool(np.array_equal(run.scores.view(np.int32), host.view(np.int32)))
        max_diff = float(np.max(np.abs(run.scores - host)))
    # float32: the guest's libm and FPU contraction differ from the host's; judged like every float32
    # runtime (runtime/tolerances.py), relative to the scores' peak
    from runtime.tolerances import abs_limit, tolerance_for
    limit = 0.0 if precision == "int8" else abs_limit(tolerance_for("float32"), float(np.max(np.abs(host))))
    selftest = F.run_selftest(lib_dir, prefix, precision, target, work / "selftest")
    sizes = F.object_sizes(fw.model_obj)
    stack = F.stack_bound(fw.stack_usage, prefix)
    G = 4 if model["arch"] == "lstm" else 3
    macs_step = macs_per_step(model)
    steps = int(x.shape[1])
    instr = run.instructions[0] if run.instructions else None
    weight_bytes = sum(G * h * (i + h) for h, i in zip(hidden, [model["input_size"]] + hidden[:-1])) + model["num_classes"] * hidden[-1]
    weight_bytes *= 1 if precision == "int8" else 4
    ram = (run.state_bytes or 0) + stack["stack"]
    return {
        "target": target.name, "part": target.part, "qemu_machine": target.qemu_machine, "dsp": target.dsp,
        "model": f"{model['arch'].upper()} {model['input_size']}->{'->'.join(map(str, hidden))}->{model['num_classes']}",
        "precision": precision, "opt": opt, "prefix": prefix,
        "flash": {"model_total": sizes["flash"], "weights_and_tables": sizes["rodata"], "code": sizes["code"],
                  "data": sizes["data"], "weight_bytes": weight_bytes,
                  "budget_rule": int(1.3 * weight_bytes + 8192),
                  "within_rule": sizes["flash"] <= 1.3 * weight_bytes + 8192, "estimate": est["flash"]},
        "ram": {"state": run.state_bytes, "stack": stack["stack"], "total": ram, "below_4kb": ram < 4096,
                "stack_chain": stack["chain"], "stack_external_calls": stack["external"],
                "stack_frames": stack["frames"], "estimate": est["ram"]},
        "instructions": {"per_inference": instr, "steps": steps, "per_step": (instr / steps) if instr else None,
                         "macs_per_step": macs_step, "macs_per_inference": macs_step * steps,
                         "per_mac": (instr / (macs_step * steps)) if instr else None, "method": COUNTING},
        "host_identical": identical, "host_max_diff": max_diff, "host_limit": limit,
        "host_within_limit": bool(max_diff <= limit), "sequences_checked": int(x.shape[0]),
        "selftest_wrong_scores": selftest,
    }


def format_report(r: dict) -> str:
    f, m, i = r["flash"], r["ram"], r["instructions"]
    lines = [
        f"{r['model']} {r['precision']} on {r['target']} ({r['qemu_machine']} under QEMU; budget of a {r['part']}), {r['opt']}",
        f"  flash  {f['model_total']:>8} B  = weights/tables {f['weights_and_tables']} + code {f['code']} + data {f['data']}"
        f"   (rule 1.3 x {f['weight_bytes']} weight bytes + 8 KB = {f['budget_rule']}: {'ok' if f['within_rule'] else 'EXCEEDED'})",
        f"  RAM    {m['total']:>8} B  = state {m['state']} + stack {m['stack']} (deepest call chain "
        f"{' -> '.join(m['stack_chain'])}{'; calls to ' + ', '.join(m['stack_external_calls']) + ' not counted' if m['stack_external_calls'] else ''})"
        f"   ({'< 4 KB' if m['below_4kb'] else '>= 4 KB'})",
    ]
    if i["per_inference"]:
        lines.append(f"  instr  {i['per_inference']:>8}    per inference of {i['steps']} steps ({i['per_step']:.0f}/step); "
                     f"{i['macs_per_inference']} MACs -> {i['per_mac']:.2f} instructions/MAC")
    if r["host_identical"]:
        verdict = "bit-identical to"
    elif r.get("host_within_limit"):
        verdict = f"within the float32 tolerance ({r['host_limit']:.2g}; libm and FPU rounding differ) of"
    else:
        verdict = "DIFFERS from"
    lines.append(f"  output {verdict} the host gcc build on {r['sequences_checked']} sequences "
                 f"(max diff {r['host_max_diff']:g})")
    st = r.get("selftest_wrong_scores")
    lines.append(f"  self-test ({r['prefix']}_selftest.h, what to run on the real board): "
                 + ("not in this package (exported before it existed: re-export)" if st is None
                    else "passed: every score as exported" if st == 0 else f"FAILED: {st} score(s) differ"))
    lines.append(f"  counted with: {i['method']}")
    return "\n".join(lines)


OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3", "-Os", "-Oz", "-Og")


def firmware(target: str = "cortex-m4", artifacts: str | None = None, precision: str = "int8", opt: str = "-O2",
             sequences: int = 4, timeout: float = 120, work_dir: str | None = None, as_json: bool = False,
             checkpoint: str | None = None) -> str:
    """What ``invoke firmware --target cortex-m4 [--artifacts DIR | --checkpoint RUN]`` runs: build, run, report.

    ``artifacts``: an exported artifact folder (manifest.json with a ``c-<precision>`` entry); its
    golden windows are the inputs. ``checkpoint``: a run folder / model.safetensors instead: the C
    library is generated here from it (calibrated on its task's training split) and the inputs are
    test windows. Default: ``artifacts/watch-gru`` if it exists, else ``runs/watch-gru``.
    Returns the printable report (or JSON).
    """
    tgt = get_target(target)
    if precision not in ("int8", "float32"):
        raise UserError(f"--precision {precision!r}: the C library comes in int8 or float32")
    if opt not in OPT_LEVELS:  # one gcc optimization level: the report names it, so it must be what gcc ran
        raise UserError(f"--opt {opt!r}: choose one of {', '.join(OPT_LEVELS)}")
    if artifacts is None and checkpoint is None:
        artifacts = "artifacts/watch-gru" if Path("artifacts/watch-gru/manifest.json").is_file() else None
        checkpoint = None if artifacts else "runs/watch-gru"
    # the builds are only measured, the report names none of them: a work folder of our own is removed
    # when the run ends, whatever happened; one the caller gave (``work_dir``) is the caller's to keep
    with work_folder(work_dir, "rnn-edge-fw-") as work:
        if artifacts:
            lib_dir, prefix, model, x = c_library_and_inputs(Path(artifacts), precision, sequences, work)
        else:
            lib_dir, prefix, model, x = _from_checkpoint(Path(checkpoint), precision, sequences, work / "c")
        rep = measure(lib_dir, prefix, precision, model, tgt, x, work, opt, timeout)
    return json.dumps(rep, indent=2) if as_json else format_report(rep)


def c_library_and_inputs(folder: Path, precision: str, sequences: int, work_dir=None):
    """(library folder, prefix, model facts, device input) of an artifact folder's ``c-<precision>``
    entry (sha256-checked), the input being its first ``sequences`` golden windows."""
    from runtime.backends.base import Quant
    from runtime.manifest import Manifest
    from runtime.quant import quantize
    man = Manifest.read(folder)
    entry = man.by_name(f"c-{precision}")
    if man.model.get("head") == "frames":
        # a frames model: the C library is streaming-only (c-<p> is "unsupported"); the step record
        # names the same library. The count below is one whole-sequence call, i.e. the recurrence
        # of every step plus the head once: a per-frame head adds K x H MACs on each other step.
        entry = man.by_name(f"c-{precision}-step")
    man.verified(entry)
    x = np.asarray(man.golden("x")["x"][:sequences], np.float32)  # sha256-checked; damage is one line
    if precision == "int8":
        x = quantize(x, Quant.from_json(entry["inputs"][0]["quant"]), "int8")
    # compiled from checked copies of the listed files only (security audit: `-I <artifact folder>`
    # let an unlisted header there shadow a system one)
    lib = man.verified_c(entry, Path(work_dir or tempfile.mkdtemp(prefix="rnn-edge-c-")) / "verified-c")
    return lib, entry["c"]["prefix"], man.model, x


def _from_checkpoint(path: Path, precision: str, sequences: int, out: Path):
    from export.c import export_c
    from export.c import reference as R
    from training.checkpoint import load_model
    from training.data import load_task
    model, meta = load_model(path)
    data = load_task(meta["task"])
    recs = export_c(model, meta, data, out, precisions=(precision,))
    rec = recs[0]
    mean, std = np.asarray(meta["input_mean"], np.float32), np.asarray(meta["input_std"], np.float32)
    x = ((data.X_test[:sequences] - mean) / std).astype(np.float32)
    if precision == "int8":
        x = R.quantize_input(x, rec["quant"]["input"]["scale"])
    spec = model.spec
    facts = {"arch": spec.arch, "input_size": spec.input_size, "hidden_sizes": list(spec.hidden_sizes),
             "num_classes": spec.num_classes}
    return out / rec["c"]["dir"], rec["c"]["prefix"], facts, x
