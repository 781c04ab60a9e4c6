"""Our int8 C model next to TensorFlow Lite Micro's int8 fused LSTM, on the same test windows.

TFLite Micro runs in its host interpreter (the ``tflite-micro`` wheel); the TFLite int8 model
comes from ``export.tflite_export`` (one conversion, in a child process). Reported: TFLM's smallest
working tensor arena next to our RAM (state + stack on Cortex-M4), both models' accuracy and
agreement with the float model, and how their scores compare with each other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from devices.work_folder import work_folder
from runtime.errors import UserError


def compare_tflm(checkpoint: str = "runs/watch-lstm", work_dir: str | None = None, measure_m4: bool = True) -> dict:
    import torch
    from export.c import export_c
    from export.c import reference as R
    from export.c import prepare
    from export.tflite_export import export_tflite
    from export.tflite_run import TFLMModel, dequantize, quantize
    from runtime.metrics import compare
    from training.checkpoint import load_model
    from training.data import load_task

    model, meta = load_model(checkpoint)
    if model.spec.arch != "lstm":
        raise UserError("TFLite Micro has no GRU kernel (a GRU must be unrolled): compare an LSTM checkpoint")
    data = load_task(meta["task"])
    with work_folder(work_dir, "rnn-edge-tflm-") as work:  # removed at the end unless the caller gave it
        recs = export_tflite(model, meta, data, work / "tflite", progress=False, only=["tflite-int8"])
        tflm = next((r for r in recs if r.get("runtime") == "tflm"), None)
        lite = next(r for r in recs if r.get("name") == "tflite-int8")
        if tflm is None or tflm.get("status") == "failed" or lite.get("status") == "failed":
            raise UserError(f"the TFLite int8 conversion failed: {(tflm or lite).get('error')}")
        mean, std = np.asarray(meta["input_mean"], np.float32), np.asarray(meta["input_std"], np.float32)
        x = ((data.X_test - mean) / std).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()

        path = work / "tflite" / lite["file"]
        xq_rec = next(r for r in lite["inputs"] if r["name"] == "x")["quant"]
        yq_rec = next(r for r in lite["outputs"] if r["name"] == "scores")["quant"]
        tm = TFLMModel(path, int(tflm["arena_bytes"]))
        raw = tm.run_sequences_raw(quantize(x, xq_rec["scale"], xq_rec["zero_point"], np.int8))
        tflm_scores = dequantize(raw, yq_rec["scale"], yq_rec["zero_point"])

        crec = export_c(model, meta, data, work / "c", precisions=("int8",))[0]
        _, quant, qm = prepare(model, meta, quant=crec["quant"])
        ours = R.dequantize_scores(R.int_run(qm, R.quantize_input(x, quant["input"]["scale"])))

        result = {
            "model": f"LSTM {model.spec.input_size}->{'->'.join(map(str, model.spec.hidden_sizes))}->{model.spec.num_classes}",
            "test_windows": int(len(x)),
            "float_accuracy": float(np.mean(ref.argmax(1) == data.y_test)),
            "tflm_int8": {"arena_bytes": int(tflm["arena_bytes"]), "model_bytes": int(path.stat().st_size),
                          **{k: v for k, v in compare(tflm_scores, ref, data.y_test).items() if k in ("accuracy", "top1_agreement", "max_abs_err")}},
            "c_int8": {k: v for k, v in compare(ours, ref, data.y_test).items() if k in ("accuracy", "top1_agreement", "max_abs_err")},
            "c_vs_tflm": {"top1_agreement": float(np.mean(ours.argmax(1) == tflm_scores.argmax(1))),
                          "max_abs_diff": float(np.max(np.abs(ours - tflm_scores))),
                          "mean_abs_diff": float(np.mean(np.abs(ours - tflm_scores)))},
        }
        if measure_m4:
            from devices.cortex_m.report import measure
            from devices.targets import get_target
            xq = R.quantize_input(x[:2], quant["input"]["scale"])
            facts = {"arch": "lstm", "input_size": model.spec.input_size, "hidden_sizes": list(model.spec.hidden_sizes),
                     "num_classes": model.spec.num_classes}
            rep = measure(work / "c" / crec["c"]["dir"], crec["c"]["prefix"], "int8", facts, get_target("cortex-m4"), xq, work / "m4")
            result["c_int8"].update(ram_bytes=rep["ram"]["total"], state_bytes=rep["ram"]["state"],
                                    stack_bytes=rep["ram"]["stack"], flash_bytes=rep["flash"]["model_total"])
        return result


if __name__ == "__main__":
    import sys
    print(json.dumps(compare_tflm(*(sys.argv[1:2] or [])), indent=2))
