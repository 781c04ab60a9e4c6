"""ONNX Runtime sessions for export-time checks: batch prediction, streaming, latency.

One thread per session (the build box is shared); ONNX Runtime keeps no state between calls, so
streaming feeds the step graph's ``state_out_*`` back as ``state_in_*``.
"""

from __future__ import annotations

import time

import numpy as np


def session(path):
    """A CPU ``InferenceSession`` with one intra-op and one inter-op thread."""
    try:
        import onnxruntime as ort
    except ImportError:
        from runtime.errors import MissingDependency
        raise MissingDependency("onnxruntime", "pip install -e '.[export]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def sequence_predictor(sess, batch: int = 256):
    """``predict(x [N, T, C]) -> scores [N, K]`` for a whole-sequence graph with input ``x``."""
    def predict(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        return np.concatenate([sess.run(["scores"], {"x": x[i:i + batch]})[0] for i in range(0, len(x), batch)])
    return predict


def stream_predictor(sess, state: dict):
    """``stream(x [N, T, C]) -> per-step scores [N, T, K]`` through an explicit-state step graph."""
    shapes = dict(zip(state["inputs"], state["shapes"]))

    def stream(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = len(x)
        feed = {name: np.zeros((n, shape[1]), np.float32) for name, shape in shapes.items()}
        outs = []
        for t in range(x.shape[1]):
            res = sess.run(["scores", *state["outputs"]], {"frame": x[:, t], **feed})
            outs.append(res[0])
            feed = dict(zip(state["inputs"], res[1:]))
        return np.stack(outs, 1)
    return stream


def latency_ms(fn, repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)
