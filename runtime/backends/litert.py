"""LiteRT backend: the TFLite interpreter.

Tried in order: ``ai_edge_litert`` (LiteRT, the maintained package), ``tflite_runtime`` (the
classic Raspberry Pi package; its wheels need numpy < 2) and ``tensorflow.lite``.

Fused TFLite LSTMs keep their state in *variable tensors* inside the interpreter between
``invoke()`` calls. ``reset_variables`` (``reset_all_variables``) clears them; ``runtime.model``
calls it before every independent sequence and at ``Stepper.reset()``, and never within a stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, Quant, TensorSpec
from runtime.errors import MissingDependency, UserError


def _interpreter_class():
    """The first importable TFLite interpreter class, and where it came from."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    if int(np.__version__.split(".")[0]) < 2:  # tflite_runtime wheels are built against numpy 1.x
        try:
            from tflite_runtime.interpreter import Interpreter
            return Interpreter, "tflite_runtime"
        except ImportError:
            pass
    try:
        from tensorflow import lite
        return lite.Interpreter, "tensorflow.lite"
    except ImportError:
        pass
    raise MissingDependency("LiteRT (ai-edge-litert, or tflite-runtime with numpy<2, or tensorflow)",
                            LiteRTBackend.install)


REFERENCE_SUFFIX = ":ref"


def artifact_and_options(name: str) -> tuple[str, dict]:
    """``"tflite-int8:ref"`` -> (``"tflite-int8"``, LiteRT on its reference kernels); a plain name ->
    (name, no options). How the parity tools name an artifact run on reference kernels."""
    if name.endswith(REFERENCE_SUFFIX):
        return name[:-len(REFERENCE_SUFFIX)], {"backend": "litert", "reference_kernels": True}
    return name, {}


def _reference_resolver(source: str):
    """``OpResolverType.BUILTIN_REF`` of the interpreter package in use."""
    if source == "ai_edge_litert":
        from ai_edge_litert.interpreter import OpResolverType
    elif source == "tflite_runtime":
        from tflite_runtime.interpreter import OpResolverType
    else:
        from tensorflow.lite.experimental import OpResolverType
    return OpResolverType.BUILTIN_REF


def tensor_spec(detail: dict) -> TensorSpec:
    """A TensorSpec from a TFLite interpreter's tensor details."""
    sig = detail.get("shape_signature")
    shape = sig if sig is not None and len(sig) else detail["shape"]
    scale, zp = detail.get("quantization", (0.0, 0))
    quant = Quant(float(scale), int(zp)) if scale else None
    return TensorSpec(detail["name"], tuple(int(s) if s >= 0 else None for s in shape),
                      np.dtype(detail["dtype"]).name, quant)


class LiteRTBackend(Backend):
    name = "litert"
    formats = ("tflite",)
    install = "pip install ai-edge-litert==2.3.0"
    what = "LiteRT"

    @classmethod
    def library(cls):
        return _interpreter_class()[0]

    def __init__(self, path: Path, *, entry: dict | None = None, threads: int = 1,
                 reference_kernels: bool = False, **options):
        """``reference_kernels``: run TFLite's reference kernels (``OpResolverType.BUILTIN_REF``)
        instead of the optimized ones, e.g. to tell a kernel's rounding from a model's."""
        Interpreter, self.source = _interpreter_class()
        self.path = Path(path)
        kwargs = {"num_threads": max(1, int(threads))}
        if reference_kernels:
            kwargs["experimental_op_resolver_type"] = _reference_resolver(self.source)
        self._model = self.read_model(self.path, entry)  # kept alive: the interpreter reads from it
        try:
            self.interpreter = Interpreter(model_content=self._model, **kwargs)
            self.interpreter.allocate_tensors()
        except Exception as e:  # ValueError / RuntimeError from the flatbuffer verifier
            raise self.load_error(self.path, f"LiteRT ({self.source})", e) from None
        self._in = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()
        self.inputs = [tensor_spec(d) for d in self._in]
        self.outputs = [tensor_spec(d) for d in self._out]
        # Stateful fused RNN ops keep variable tensors; resetting a stateless graph is harmless.
        self.has_variables = True

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        try:
            return self._run(feeds)
        except RuntimeError as e:  # a graph that loads but cannot be planned or run (damaged file)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"LiteRT could not run {self.path} ({first}): the model file is damaged; "
                            f"re-export or restore it") from None

    def _run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        it = self.interpreter
        for d, x in zip(self._in, feeds):
            if tuple(d["shape"]) != x.shape:  # dynamic dimensions: resize, then re-plan
                it.resize_tensor_input(d["index"], list(x.shape))
                it.allocate_tensors()
                self._in = it.get_input_details()
                self._out = it.get_output_details()
                d = next(n for n in self._in if n["index"] == d["index"])
            it.set_tensor(d["index"], np.ascontiguousarray(x))
        it.invoke()
        return [it.get_tensor(d["index"]).copy() for d in self._out]

    def reset_variables(self) -> None:
        self.interpreter.reset_all_variables()

    def describe(self) -> str:
        return f"litert ({self.source})"


BACKEND = LiteRTBackend
