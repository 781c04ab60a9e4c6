"""Int8 ONNX models with onnxruntime.quantization, and an exact account of what got quantized.

- ``quantize_dynamic_onnx``: 8-bit weights, activations quantized at run time. ONNX Runtime turns
  ``LSTM`` into ``com.microsoft::DynamicQuantizeLSTM`` and ``MatMul`` into ``MatMulInteger``; it
  has no rule for ``GRU`` or ``Gemm``, so a GRU model comes out unchanged. ``describe`` says so.
- ``quantize_static_onnx``: QDQ 8-bit (activations, and weights per output channel), calibrated
  with MinMax ranges over normalized training windows. It does not touch ``LSTM``/
  ``GRU``: on the fused graph only the head is quantized; on the unrolled graph
  (export/onnx_unrolled.py) every MatMul, Add, Mul, Sigmoid and Split is.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from pathlib import Path

import numpy as np

# Static (QDQ) 8-bit files carry UNSIGNED weights (U8U8: uint8 activations, uint8 weights), not ONNX
# Runtime's default signed ones. With int8 weights, ONNX Runtime's x86 kernels multiply uint8
# activations by int8 weights with VPMADDUBSW on CPUs without VNNI (AVX2, AVX-512 without VNNI),
# whose int16 sum of two products saturates (255 * 127 * 2 > 32767): the same file then gives other
# results than on a VNNI or ARM CPU. Measured on an AVX2-only box (docs/export.md "Unsigned 8-bit"):
# the watch GRU's decomposed int8 step agreed with float on 93.0% of top-1 decisions with int8
# weights, 98.1% with uint8; the LSTM's 88.7% and 99.3%; and the uint8 files give bit-identical
# scores on that box and on the emulated Raspberry Pi (aarch64).
ACTIVATION_TYPE = "QUInt8"
WEIGHT_TYPE = "QUInt8"
# Dynamic files keep int8 weights but in 7 bits (``reduce_range``), which cannot saturate either:
# with uint8 weights ONNX Runtime's DynamicQuantizeLSTM scored differently on x86 and on aarch64
# (0.02 on the median row of the watch LSTM, no row equal), with 7-bit int8 weights they agree to
# float rounding (2e-6), at a small cost in accuracy (docs/export.md).
DYNAMIC_WEIGHT_TYPE = "QInt8"
DYNAMIC_REDUCE_RANGE = True

# Ops that hold no arithmetic of their own (shape plumbing) - left out of "what is float".
_PLUMBING = {"Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Transpose", "Reshape", "Split",
             "Slice", "ConstantOfShape", "Identity", "Flatten", "QuantizeLinear", "DequantizeLinear",
             "DynamicQuantizeLinear", "Cast"}
_INTEGER_OPS = {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QLinearAdd",
                "QLinearMul", "QLinearSigmoid", "QGemm", "ConvInteger", "QLinearConv"}


def _ort_quantization():
    try:
        from onnxruntime import quantization
    except ImportError:
        from runtime.errors import MissingDependency
        raise MissingDependency("onnxruntime (needed to quantize ONNX models)", "pip install -e '.[export]'") from None
    return quantization


@contextlib.contextmanager
def _quiet():
    """Silence the quantizer's root-logger advice ("consider pre-processing") for this call."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_dynamic_onnx(src, dst) -> None:
    """Dynamic 8-bit: weights (7-bit int8, see ``DYNAMIC_REDUCE_RANGE``) quantized once, activations
    per call."""
    q = _ort_quantization()
    with _quiet():
        q.quantize_dynamic(str(src), str(dst), weight_type=getattr(q.QuantType, DYNAMIC_WEIGHT_TYPE),
                           reduce_range=DYNAMIC_REDUCE_RANGE)


class FeedReader:
    """``CalibrationDataReader`` over prepared feeds (dicts input name -> batch)."""

    def __init__(self, feeds: list[dict]):
        self.feeds, self.i = list(feeds), 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self):
        self.i = 0


def window_feeds(windows: np.ndarray, batch: int = 32, input_name: str = "x") -> list[dict]:
    """Feeds for a whole-sequence graph: normalized windows ``[N, T, C]`` in batches."""
    w = np.ascontiguousarray(windows, dtype=np.float32)
    return [{input_name: w[i:i + batch]} for i in range(0, len(w), batch)]


def calibration_windows(x_train_norm: np.ndarray, n: int = 256, seed: int = 0) -> np.ndarray:
    """A fixed random subset of normalized training windows (the same every export)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x_train_norm))[:n]
    return x_train_norm[np.sort(idx)]


def quantize_static_onnx(src, dst, feeds, per_channel: bool = True, int16_tensors=()) -> None:
    """QDQ 8-bit (``ACTIVATION_TYPE``, ``WEIGHT_TYPE``) calibrated on ``feeds`` (normalized training
    data: windows ``[N, T, C]`` for a sequence graph, or a list of input dicts), MinMax ranges.

    ``int16_tensors``: activations to quantize to int16 instead (ONNX Runtime's contrib Q/DQ), e.g.
    an LSTM's cell state, which int8 cannot carry over a long window.
    """
    q = _ort_quantization()
    reader = FeedReader(window_feeds(feeds) if isinstance(feeds, np.ndarray) else feeds)
    extra = {}
    if int16_tensors:
        extra = {"UseQDQContribOps": True,
                 "TensorQuantOverrides": {t: [{"quant_type": q.QuantType.QInt16}] for t in int16_tensors}}
    with _quiet():
        q.quantize_static(
            str(src), str(dst), reader, quant_format=q.QuantFormat.QDQ,
            activation_type=getattr(q.QuantType, ACTIVATION_TYPE), weight_type=getattr(q.QuantType, WEIGHT_TYPE),
            per_channel=per_channel,
            calibrate_method=q.CalibrationMethod.MinMax, extra_options=extra)
    # Not ``CalibMaxIntermediateOutputs``: in onnxruntime 1.32 it drops the collected batches
    # without folding their ranges in (calibrate.py collect_data), so the windows are kept small.


def _nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g.node:
                yield from _nodes(attr.g)
            for g in attr.graphs:
                yield from _nodes(g)


def op_counts(model) -> dict:
    """Op type -> count over the graph and its subgraphs (domain-qualified when not ONNX's)."""
    c = collections.Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                            for n in _nodes(model.graph))
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def describe(model) -> dict:
    """Which compute ops run in int8 and which stay float, with a one-line summary in words.

    An op counts as int8 when it is an integer kernel (DynamicQuantizeLSTM, MatMulInteger, ...)
    or, in a QDQ graph, when the QDQ quantizer has a rule for its type and every non-constant
    input comes from a DequantizeLinear (ONNX Runtime then runs it as its QLinear kernel). Ops
    without a rule (Tanh, Sub, GRU, LSTM) count as float even between Q/DQ pairs: they compute in
    float on dequantized values. Plain plumbing (Split, Gather, ...) is left out.
    """
    _ort_quantization()
    from onnxruntime.quantization import registry
    quantizable = set(registry.QLinearOpsRegistry) | set(registry.QDQRegistry)
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    inits = {i.name for i in graph.initializer}
    int8, flt = collections.Counter(), collections.Counter()
    for n in graph.node:
        name = n.op_type
        if name in _PLUMBING:
            continue
        if name in _INTEGER_OPS:
            int8[name] += 1
            continue
        data_inputs = [i for i in n.input if i and i not in inits
                       and not (i in producer and producer[i].op_type == "Constant")]
        if name in quantizable and data_inputs and all(
                i in producer and producer[i].op_type == "DequantizeLinear" for i in data_inputs):
            int8[name] += 1
        else:
            flt[name] += 1
    words_int8 = ", ".join(f"{k} x{v}" for k, v in sorted(int8.items())) or "nothing"
    words_float = ", ".join(f"{k} x{v}" for k, v in sorted(flt.items())) or "nothing"
    return {"int8_ops": dict(int8), "float_ops": dict(flt),
            "summary": f"int8: {words_int8}; float: {words_float}"}


def describe_file(path) -> dict:
    import onnx
    return describe(onnx.load(str(Path(path))))
