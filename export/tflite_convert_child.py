"""The TFLite conversion worker: runs TensorFlow's converter in a child process.

TensorFlow's converter can segfault (GRU int8 calibration of a WHILE loop, Keras 3 LSTMs, ...)
and takes the whole process with it. The parent (``export.tflite_export``) therefore never
imports TensorFlow: it starts this worker, sends one job per line on stdin and reads one JSON
result per line back. When the worker dies mid-job, the parent records that artifact as failed
and starts a fresh worker for the remaining jobs.

    python -m export.tflite_convert_child WORKDIR

``WORKDIR/model.npz`` holds the model (``spec`` JSON, PyTorch weights under their names) and
``rep_sequences`` (normalized training windows for int8 calibration). A job is
``{"name", "kind": "sequence"|"step", "precision", "unroll": bool, "float_io": bool, "out": path}``; the worker
writes the ``.tflite`` bytes to ``out`` and answers ``{"name", "ok": true, "seconds"}`` or
``{"name", "ok": false, "error": "<one line>"}``. ``"crash": true`` makes the worker abort, so
tests can check the parent's handling of a real dying converter.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

PRECISIONS = ("float32", "float16", "dynamic-range", "int8", "int16x8")


def converter_error_line(exc: BaseException) -> str:
    """The converter's own message, reduced to one line (its exceptions span many lines)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:  # MLIR diagnostics look like "<loc>: error: <message>"
        if "error:" in ln:
            return ln.split("error:", 1)[1].strip()
    return lines[0] if lines else type(exc).__name__


def representative_dataset(sequences: np.ndarray, kind: str, input_size: int, step_model=None):
    """Calibration inputs: whole normalized windows, or (step graphs) their frames in order.

    Frames are fed in time order so that the fused LSTM's state variables, which persist between
    calibration invocations, see the states they meet in real streaming. Explicit-state step
    graphs (GRU) get, with each frame, the state the float model has reached at that frame.
    """
    def gen():
        for seq in sequences:
            if kind == "sequence":
                yield [seq[None].astype(np.float32)]
            elif step_model is None:
                for frame in seq:
                    yield [frame.reshape(1, input_size).astype(np.float32)]
            else:
                names = [t.name.split(":")[0] for t in step_model.inputs]
                state = [np.zeros(t.shape, np.float32) for t in step_model.inputs[1:]]
                for frame in seq:
                    feed = [frame.reshape(1, input_size).astype(np.float32), *state]
                    yield dict(zip(names, feed))
                    state = [a.numpy() for a in step_model(feed)[1:]]
    return gen


def configure(converter, precision: str, rep, float_io: bool = False):
    """Set the converter options that make each precision."""
    import tensorflow as tf
    if precision == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic-range":
        pass  # weights int8, activations float: no calibration data
    elif precision == "int8":
        converter.representative_dataset = rep
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not float_io:  # float_io: int8 inside, QUANTIZE/DEQUANTIZE at the float32 inputs/outputs
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif precision == "int16x8":
        converter.representative_dataset = rep
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = tf.int16
        converter.inference_output_type = tf.int16
    else:
        raise ValueError(f"unknown precision {precision!r}")


def convert(job: dict, model_file: Path) -> bytes:
    """Build the tf_keras model for ``job`` and convert it; returns the flatbuffer."""
    from export.keras_rebuild import build_keras_model, import_tf_keras, torch_to_keras_weights
    keras = import_tf_keras()
    import tensorflow as tf
    from training.models import ModelSpec
    with np.load(model_file, allow_pickle=False) as z:
        spec = ModelSpec.from_json(str(z["spec"]))
        state_dict = {k: z[k] for k in z.files if k not in ("spec", "rep_sequences")}
        rep_sequences = z["rep_sequences"]
    keras.backend.clear_session()
    weights = torch_to_keras_weights(spec.arch, state_dict)
    kind = job["kind"]
    model = build_keras_model(spec.arch, weights, seq_len=rep_sequences.shape[1], input_size=spec.input_size,
                              kind=kind, unroll=bool(job.get("unroll")), batch_size=1,
                              frames=getattr(spec, "head", "classify") == "frames")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    explicit = kind == "step" and spec.arch == "gru"
    rep = representative_dataset(rep_sequences, kind, spec.input_size, model if explicit else None)
    configure(converter, job["precision"], rep, float_io=bool(job.get("float_io")))
    return converter.convert()


def serve(workdir: Path) -> int:
    # Keep stdout for the protocol alone: TensorFlow and the converter print freely.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        print(f"[tflite-worker] job {job['name']}", file=sys.stderr, flush=True)
        if job.get("crash"):
            os.abort()  # fault injection: a converter dying as it does on a segfault
        t0 = time.perf_counter()
        try:
            data = convert(job, workdir / job.get("model", "model.npz"))
            Path(job["out"]).write_bytes(data)
            result = {"name": job["name"], "ok": True, "seconds": time.perf_counter() - t0}
        except Exception as e:  # the converter's errors are reported, never raised across the pipe
            result = {"name": job["name"], "ok": False, "error": converter_error_line(e),
                      "error_type": type(e).__name__, "seconds": time.perf_counter() - t0}
        proto.write(json.dumps(result) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
