"""ONNX Runtime backend (CPU).

ONNX Runtime keeps no state between calls, so streaming graphs carry their recurrent state as
explicit inputs/outputs; ``runtime.model`` feeds zeros first, then the previous outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, TensorSpec
from runtime.errors import MissingDependency, UserError

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
              "tensor(int32)": "int32", "tensor(int64)": "int64"}


def _spec(node) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in node.shape)
    return TensorSpec(node.name, shape, _ORT_TYPES.get(node.type, node.type))


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)
    install = "pip install onnxruntime==1.32.0"
    what = "ONNX Runtime"

    @classmethod
    def library(cls):
        try:
            import onnxruntime
        except ImportError:
            raise MissingDependency(cls.what, cls.install) from None
        return onnxruntime

    def __init__(self, path: Path, *, entry: dict | None = None, threads: int = 1, **options):
        ort = self.library()
        self.path = Path(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        model = self.read_model(self.path, entry)
        try:
            self.session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/... types
            raise self.load_error(self.path, self.what, e) from None
        self.inputs = [_spec(i) for i in self.session.get_inputs()]
        self.outputs = [_spec(o) for o in self.session.get_outputs()]
        self._in_names = [i.name for i in self.inputs]
        self._out_names = [o.name for o in self.outputs]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(self._out_names, dict(zip(self._in_names, feeds)))
        except Exception as e:  # ORT's own error types: a graph that loads but cannot run (damaged file)
            if "onnxruntime" not in type(e).__module__:
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"ONNX Runtime could not run {self.path} ({type(e).__name__}: {first}): the model "
                            f"file is damaged or does not fit these inputs; re-export or restore it") from None


BACKEND = OnnxRuntimeBackend
