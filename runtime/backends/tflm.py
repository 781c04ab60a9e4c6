"""TensorFlow Lite Micro backend: the microcontroller interpreter built for the host.

Uses the ``tflite-micro`` wheel (``from tflite_micro import runtime``). The graph lives in one
fixed tensor arena (``arena_size`` bytes, as on a microcontroller); batch and sequence length are
fixed by the model. Fused LSTMs keep state in variable tensors: ``reset()`` clears them.
TFLM runs int8 models (float fused LSTM too); it refuses float16 and dynamic-range models and
has no GRU kernel (GRUs must be unrolled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, Quant, TensorSpec
from runtime.errors import MissingDependency, UserError


def _spec(name: str, d: dict) -> TensorSpec:
    q = d.get("quantization_parameters") or {}
    scales, zps = list(q.get("scales", [])), list(q.get("zero_points", []))
    quant = Quant(float(scales[0]), int(zps[0])) if len(scales) == 1 and scales[0] else None
    return TensorSpec(name, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name, quant)


class TFLMBackend(Backend):
    name = "tflm"
    formats = ("tflite",)
    install = "pip install tflite-micro==0.dev20261023182759"
    what = "TFLite Micro (tflite-micro)"

    @classmethod
    def library(cls):
        try:
            from tflite_micro import runtime
        except ImportError:
            raise MissingDependency(cls.what, cls.install) from None
        return runtime

    def __init__(self, path: Path, *, entry: dict | None = None, threads: int = 1,
                 arena_size: int | None = None, **options):
        tflm = self.library()
        self.path = Path(path)
        data = self.read_model(self.path, entry)
        if len(data) < 8 or data[4:8] != b"TFL3":  # the flatbuffer file identifier
            raise UserError(f"model file {self.path} is not a TFLite flatbuffer (no TFL3 identifier): "
                            f"it is corrupted or truncated; re-export or restore it")
        if arena_size is None:  # the export's measured minimum plus a margin, else a generous guess
            measured = (entry or {}).get("arena_bytes")
            arena_size = int(measured) + 4096 if measured else max(1 << 20, 8 * len(data))
        try:
            graph = tflm.convert_bytearray_to_object(data).subgraphs[0]  # Python flatbuffer reader
            self.interpreter = tflm.Interpreter.from_bytes(data, arena_size=arena_size)
        except Exception as e:  # a truncated/garbled flatbuffer, or AllocateTensors failing
            raise self.load_error(self.path, self.what, e) from None
        it = self.interpreter
        n_in, n_out = len(graph.inputs), len(graph.outputs)
        file_in = [graph.tensors[i].name.decode(errors="replace") for i in graph.inputs]
        file_out = [graph.tensors[i].name.decode(errors="replace") for i in graph.outputs]
        names_in = [t["name"] for t in (entry or {}).get("inputs", [])] or file_in
        names_out = [t["name"] for t in (entry or {}).get("outputs", [])] or file_out
        self.inputs = [_spec(names_in[i] if i < len(names_in) else f"input_{i}", it.get_input_details(i))
                       for i in range(n_in)]
        self.outputs = [_spec(names_out[i] if i < len(names_out) else f"output_{i}", it.get_output_details(i))
                        for i in range(n_out)]
        self.has_variables = True

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        it = self.interpreter
        for i, x in enumerate(feeds):
            it.set_input(np.ascontiguousarray(x), i)
        try:
            it.invoke()
        except RuntimeError as e:
            raise UserError(f"TFLite Micro could not run {self.path}: {str(e).strip()[:200]}") from None
        return [np.array(it.get_output(i)) for i in range(len(self.outputs))]

    def reset_variables(self) -> None:
        self.interpreter.reset()


BACKEND = TFLMBackend
