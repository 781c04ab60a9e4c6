"""Plain C export: a self-contained C99 library per model, float32 and int8.

Entry point for the export pipeline: ``export_c(model, meta, data, out_dir) -> list[dict]``
(manifest records, docs/contracts.md). Each precision is a folder ``c-<precision>/`` holding
``<prefix>.h``/``<prefix>.c``, a Makefile, a CMakeLists.txt and an Arduino library (``arduino/``).

Modules: ``quantize`` (calibration, int8 weights), ``reference`` (numpy twin of the C, bit-exact
for int8), ``codegen`` (the C text), ``emit`` (C formatting), ``package`` (build files),
``build`` (host gcc), ``harness`` (file-driven main used on the host and on Cortex-M).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from runtime.atomic import write_json
from runtime.errors import UserError

PRECISIONS = ("float32", "int8")


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def task_name(meta: dict) -> str:
    """The checkpoint's task as the run and artifact folders name it: a data path gives its folder or
    file name, however it was typed (``data/csv``, ``./data/csv/``, absolute: ``csv``)."""
    return Path(str(meta.get("task") or "")).name or "model"


def model_prefix(meta: dict, arch: str, precision: str) -> str:
    """``<task>_<arch>_<precision>`` as a C identifier (``task_name``)."""
    from export.c.emit import identifier
    return identifier(f"{task_name(meta)}_{arch}_{precision}")


def prepare(model, meta: dict, data=None, quant: dict | None = None):
    """(float weights ``fm``, ``quant`` record, integer model ``qm``); calibrates when ``quant`` is None."""
    from export.c import quantize as Q
    fm = Q.float_weights(model)
    if quant is None:
        if data is None:
            raise UserError("int8 C export needs calibration data: pass the training split (SequenceData)")
        mean = np.asarray(meta["input_mean"], np.float32)
        std = np.asarray(meta["input_std"], np.float32)
        quant = Q.calibrate(fm, (data.X_train - mean) / std)
    return fm, quant, Q.quantize(fm, quant)


def export_c(model, meta: dict, data, out_dir, precisions=PRECISIONS, quant: dict | None = None) -> list[dict]:
    """Write ``c-float32/`` and ``c-int8/`` under ``out_dir``; return their manifest records. When the
    model is beyond an int8 limit (a scale, the int32 bounds proof), the int8 records are failed ones
    and the float32 library is still written; asked for int8 alone, that limit is raised.

    ``data`` is the task's ``SequenceData``: its training split calibrates the int8 scales (once;
    the result is the record's ``quant``) and its test split gives the records' metrics, computed
    with the numpy twin of the C (``reference.py``; the C itself is checked against it by tests).
    """
    from export.c import codegen, package
    from export.c import reference as R
    from export.c.quantize import float_weights
    from export.manifest import failed_record
    from runtime.metrics import compare

    out_dir = Path(out_dir)
    spec = model.spec
    fm, qm, records, int8_failed = float_weights(model), None, [], []
    if "int8" in precisions:
        try:
            fm, quant, qm = prepare(model, meta, data, quant)
        except UserError as e:  # an int8 limit (scales, int32 bounds): the float32 library has none of them
            if (data is None and quant is None) or tuple(precisions) == ("int8",):
                raise  # (no calibration data at all; or the int8 library was all that was asked for)
            precisions = [p for p in precisions if p != "int8"]
            int8_failed = [failed_record(name, f"{name}: {e}", format="c", runtime="c", precision="int8", kind=kind)
                           for name, kind in (("c-int8", "sequence"), ("c-int8-step", "step"))]
    desc = f"{spec.arch.upper()} {spec.input_size}->{'->'.join(map(str, spec.hidden_sizes))}->{spec.num_classes}"

    x_eval = y_eval = ref = None
    if data is not None:
        import torch
        mean = np.asarray(meta["input_mean"], np.float32)
        std = np.asarray(meta["input_std"], np.float32)
        x_eval, y_eval = ((data.X_test - mean) / std).astype(np.float32), data.y_test
        if spec.head == "forecast":  # targets in the model's normalized space (training/forecast.py)
            from training.forecast import target_space
            y_eval = target_space(y_eval, mean, std)
        with torch.no_grad():
            ref = model(torch.from_numpy(x_eval)).numpy()

    # what the header tells a firmware engineer about the inputs (normalization, window, class names)
    preprocess = {"mean": [float(v) for v in meta["input_mean"]], "std": [float(v) for v in meta["input_std"]],
                  "seq_len": meta.get("seq_len"),
                  "class_names": list(meta.get("class_names") or []) if spec.head != "forecast" else None}
    for precision in precisions:
        prefix = model_prefix(meta, spec.arch, precision)
        folder = out_dir / f"c-{precision}"
        if precision == "int8":
            src = codegen.generate_int8(qm, prefix, preprocess)
            write_json(folder / "quant.json", quant)
        elif precision == "float32":
            src = codegen.generate_float(fm, prefix, preprocess)
        else:
            raise UserError(f"unknown C precision {precision!r}: use float32 or int8")
        what = {"forecast": "forecaster", "frames": "per-frame classifier (streaming)"}.get(spec.head, "classifier")
        files = package.write_package(src, folder, f"{precision} {desc} sequence {what} ({task_name(meta)})")
        if x_eval is not None:  # validation on target: test windows and the scores they must give
            from export.c.selftest import selftest_header
            from runtime.atomic import write_text
            selftest = folder / f"{src.prefix}_selftest.h"
            write_text(selftest, selftest_header(src, x_eval, qm if precision == "int8" else fm))
            files.append(selftest)
        files += [folder / "quant.json"] if precision == "int8" else []
        q_in = {"scale": quant["input"]["scale"], "zero_point": 0} if precision == "int8" else None
        q_out = {"scale": quant["output"]["scale"], "zero_point": 0} if precision == "int8" else None
        state_shapes = [[1, h] for h in spec.hidden_sizes for _ in range(2 if spec.arch == "lstm" else 1)]
        rec = {
            "name": f"c-{precision}", "file": f"c-{precision}/{src.source_name}",
            "sha256": _sha256(folder / src.source_name), "size_bytes": (folder / src.source_name).stat().st_size,
            "format": "c", "runtime": "c", "precision": precision, "kind": "sequence",
            "inputs": [{"name": "x", "shape": [None, None, spec.input_size], "dtype": "int8" if q_in else "float32", "quant": q_in}],
            "outputs": [{"name": "scores", "shape": [None, spec.num_classes], "dtype": "int32" if q_out else "float32", "quant": q_out}],
            "state": {"mode": "variables", "reset": f"{prefix}_reset", "type": f"{prefix}_state",
                      "step": f"{prefix}_step", "shapes": state_shapes},
            "c": {"prefix": prefix, "dir": f"c-{precision}", "header": src.header_name, "source": src.source_name,
                  "files": [str(Path(f).relative_to(out_dir)) for f in files], "weight_bytes": src.weight_bytes,
                  # every file of the package (the header above all: the source includes it) is checked
                  # before it is compiled (runtime.manifest.Manifest.verified, runtime/backends/c.py)
                  "file_sha256": {str(Path(f).relative_to(out_dir)): _sha256(f) for f in files}},
            "ops": {("LSTM" if spec.arch == "lstm" else "GRU"): spec.num_layers, "Gemm": 1},
            "quantized": ("weights int8 per gate row (symmetric), activations int8 in / int16 Q0.15 state, "
                          "int32 accumulators, table sigmoid/tanh, integer only") if precision == "int8" else "nothing (float32)",
            "quant": quant if precision == "int8" else None,
            "status": "ok", "error": None,
        }
        frames = spec.head == "frames"
        if x_eval is not None:  # frames: every step's scores [N, T, K] (what the step function emits)
            if precision == "int8":
                scores = R.dequantize_scores(R.int_run(qm, R.quantize_input(x_eval, quant["input"]["scale"]), stream=frames))
            else:
                scores = R.float_run(fm, x_eval, stream=frames).astype(np.float32)
            m = compare(scores, ref, y_eval)
            m["computed_with"] = "export/c/reference.py (numpy twin of the C; C == reference is tested)"
            rec["metrics"], rec["accuracy"] = m, m.get("accuracy")
        if frames:
            # The C library is streaming-only for a frames head: ``<prefix>_step`` emits the scores of
            # every frame, while the whole-sequence entry point returns the last step's scores only.
            # So the step record carries the per-frame verification, and the sequence record is
            # reported as unsupported (not exported) rather than silently giving [N, K].
            step = dict(rec, name=f"c-{precision}-step", kind="step",
                        inputs=[{**rec["inputs"][0], "shape": [None, spec.input_size]}],
                        note="frames head: use the step function (one frame in, that frame's scores out)")
            seq = {k: v for k, v in rec.items() if k not in ("metrics", "accuracy")}
            seq.update(status="unsupported", accuracy=None, metrics={},
                       error=f"c-{precision}: the whole-sequence C entry point returns the last step's scores only; "
                             f"a frames model streams with {prefix}_step (record c-{precision}-step, verified per frame)")
            records += [seq, step]
            continue
        records.append(rec)
        # the same library streams: a "step" record (one frame [B, C]) for runtime.load(...).stream()
        step = {k: v for k, v in rec.items() if k not in ("metrics", "accuracy")}
        step.update(name=f"c-{precision}-step", kind="step",
                    inputs=[{**rec["inputs"][0], "shape": [None, spec.input_size]}])
        records.append(step)
    return records + int8_failed
