"""Inference backends, one module each; each imports its library only when it is used.

``REGISTRY`` maps a backend name (the manifest's ``runtime`` field) to its module. Every module
exposes ``BACKEND``, a ``runtime.backends.base.Backend`` subclass. To add a backend: write the
module, add one line here.
"""

from __future__ import annotations

import importlib

from runtime.backends.base import Backend, Quant, TensorSpec
from runtime.errors import MissingDependency, UserError

REGISTRY: dict[str, str] = {
    "onnxruntime": "runtime.backends.onnxruntime",
    "litert": "runtime.backends.litert",
    "tflm": "runtime.backends.tflm",
    "c": "runtime.backends.c",
    "torch": "runtime.backends.torch",
}

# Tried in this order when the caller names no backend (the reference, torch, only on request).
DEFAULT_ORDER = ("onnxruntime", "litert", "tflm", "c")

# Which backend opens a bare file, by suffix.
BY_SUFFIX = {".onnx": "onnxruntime", ".tflite": "litert", ".safetensors": "torch", ".so": "c"}


def backend_class(name: str) -> type[Backend]:
    """The ``Backend`` subclass registered as ``name`` (imports its module, not its library)."""
    if name not in REGISTRY:
        raise UserError(f"unknown backend {name!r}: choose one of {', '.join(REGISTRY)}")
    try:
        module = importlib.import_module(REGISTRY[name])
    except ModuleNotFoundError as e:
        if e.name == REGISTRY[name]:
            raise MissingDependency(f"the {name!r} backend (module {e.name})",
                                    "git pull  # this checkout predates it") from None
        raise
    return module.BACKEND


__all__ = ["Backend", "Quant", "TensorSpec", "REGISTRY", "DEFAULT_ORDER", "BY_SUFFIX", "backend_class"]
