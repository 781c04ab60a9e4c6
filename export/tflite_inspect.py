"""Read a ``.tflite`` flatbuffer without running it: its operator list and tensor interfaces.

Uses the ``tflite`` package (the schema's generated Python reader); no TensorFlow.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from runtime.errors import MissingDependency


def _builtin_names() -> dict[int, str]:
    try:
        from tflite.BuiltinOperator import BuiltinOperator
    except ImportError:
        raise MissingDependency("the tflite flatbuffer reader", "pip install tflite==2.18.0") from None
    return {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def _op_name(model, op, names: dict[int, str]) -> str:
    """An operator's builtin name (``CUSTOM:<name>`` for custom ops)."""
    oc = model.OperatorCodes(op.OpcodeIndex())
    # Codes < 127 live in the deprecated int8 field, newer ones in the int32 field.
    code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
    name = names.get(code, f"BUILTIN_{code}")
    return f"CUSTOM:{oc.CustomCode().decode()}" if name == "CUSTOM" else name


def read_model(path_or_bytes):
    import tflite
    buf = Path(path_or_bytes).read_bytes() if not isinstance(path_or_bytes, (bytes, bytearray)) else bytes(path_or_bytes)
    return tflite.Model.GetRootAsModel(buf, 0)


def op_counts(path_or_bytes) -> tuple[dict[str, int], int]:
    """Operator counts over all subgraphs (WHILE bodies included) and the number of subgraphs.

    Custom ops are listed as ``CUSTOM:<name>``.
    """
    names = _builtin_names()
    model = read_model(path_or_bytes)
    counts: Counter = Counter()
    for g in range(model.SubgraphsLength()):
        sg = model.Subgraphs(g)
        for i in range(sg.OperatorsLength()):
            counts[_op_name(model, sg.Operators(i), names)] += 1
    return dict(counts.most_common()), model.SubgraphsLength()


def variable_tensor_count(path_or_bytes) -> int:
    """How many tensors of the main subgraph are variables (state the interpreter keeps)."""
    model = read_model(path_or_bytes)
    sg = model.Subgraphs(0)
    return sum(1 for i in range(sg.TensorsLength()) if sg.Tensors(i).IsVariable())


def _lstm_options(model):
    """(operator options table) for every UNIDIRECTIONAL_SEQUENCE_LSTM in the model."""
    import tflite
    from tflite.UnidirectionalSequenceLSTMOptions import UnidirectionalSequenceLSTMOptions
    found = []
    for g in range(model.SubgraphsLength()):
        sg = model.Subgraphs(g)
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            if op.BuiltinOptionsType() == tflite.BuiltinOptions.UnidirectionalSequenceLSTMOptions:
                table = op.BuiltinOptions()
                opts = UnidirectionalSequenceLSTMOptions()
                opts.Init(table.Bytes, table.Pos)
                found.append(opts)
    return found


def lstm_cell_clips(path_or_bytes) -> list[float]:
    """The ``cell_clip`` of each fused LSTM (0 = no clipping)."""
    return [o.CellClip() for o in _lstm_options(read_model(path_or_bytes))]


def clear_lstm_cell_clip(buf: bytes) -> bytes:
    """``buf`` with every fused LSTM's ``cell_clip`` set to 0 (no clipping).

    TensorFlow's converter fuses a Keras LSTM with ``cell_clip = 10``: the cell state is clipped
    to [-10, 10], which PyTorch never does, and a model whose cell state grows past 10 then
    gives other scores. The field is a float32 stored in the options table, so it is overwritten
    in place (same size, nothing else moves); an option left at its default is not stored and
    means 0 already.
    """
    import struct
    data = bytearray(buf)
    model = read_model(bytes(data))
    for opts in _lstm_options(model):
        off = opts._tab.Offset(6)  # vtable slot of field 1, cell_clip
        if off:
            struct.pack_into("<f", data, opts._tab.Pos + off, 0.0)
    out = bytes(data)
    if any(c != 0.0 for c in lstm_cell_clips(out)):
        raise RuntimeError("could not clear the fused LSTM cell_clip")
    return out


def dequantized_outputs(path_or_bytes) -> dict[str, dict]:
    """For float outputs computed by a DEQUANTIZE of an integer tensor: that tensor's type and scale.

    An int8 graph with float inputs and outputs (the GRU's int8 step graph) ends each output in a
    DEQUANTIZE: two runtimes that run the same file can then differ only by whole steps of that
    tensor's scale, which makes their outputs comparable in LSBs although the output is float.
    Keys are the output tensors' names (``StatefulPartitionedCall:0``, as in the manifest's ``tensor``).
    """
    from tflite.TensorType import TensorType
    type_names = {v: k.lower() for k, v in vars(TensorType).items() if not k.startswith("_") and isinstance(v, int)}
    names = _builtin_names()
    model = read_model(path_or_bytes)
    sg = model.Subgraphs(0)
    producer = {}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        for j in range(op.OutputsLength()):
            producer[op.Outputs(j)] = op
    found = {}
    for k in range(sg.OutputsLength()):
        t = sg.Outputs(k)
        op = producer.get(t)
        if op is None:
            continue
        if _op_name(model, op, names) != "DEQUANTIZE":
            continue
        src = sg.Tensors(op.Inputs(0))
        q = src.Quantization()
        if q is None or q.ScaleLength() != 1:
            continue  # per-channel or unquantized: no single step to count in
        found[sg.Tensors(t).Name().decode()] = {"dtype": type_names.get(src.Type(), str(src.Type())),
                                                "scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0))}
    return found
