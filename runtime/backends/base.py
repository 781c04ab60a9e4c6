"""The one interface every inference backend fulfils.

A backend object is ONE loaded model file (a graph): it declares its input and output tensors and
runs them once per ``run()``. Everything else - normalization, int8 quantization, batching a
fixed-batch graph, carrying explicit state, resetting TFLite variable tensors between sequences,
streaming - is done once for all backends by ``runtime.model``. A new backend is one module under
``runtime/backends/`` with a ``Backend`` subclass named ``BACKEND``, plus one line in
``runtime.backends.REGISTRY``.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np

from runtime.errors import MissingDependency, UserError


@dataclasses.dataclass(frozen=True)
class Quant:
    """Affine quantization of one tensor: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int

    @classmethod
    def from_json(cls, d) -> "Quant | None":
        if not d:
            return None
        return cls(float(d["scale"]), int(d["zero_point"]))

    def to_json(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point}


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``None`` for a dynamic dimension), numpy dtype name and quantization."""

    name: str
    shape: tuple
    dtype: str
    quant: Quant | None = None

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        shape = tuple(None if (s is None or (isinstance(s, int) and s < 0)) else int(s) for s in d.get("shape") or ())
        return cls(str(d["name"]), shape, str(d.get("dtype", "float32")), Quant.from_json(d.get("quant")))

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "quant": self.quant.to_json() if self.quant else None}


class Backend(abc.ABC):
    """One model file loaded by one inference library.

    Subclasses set the class attributes, implement ``library``, ``__init__`` (load the file,
    fill ``inputs``/``outputs``; a file the library rejects raises ``UserError`` naming it) and
    ``run``. Graphs that keep recurrent state inside themselves between ``run`` calls (TFLite
    variable tensors) set ``has_variables`` and implement ``reset_variables``.
    """

    name: ClassVar[str]  # registry key; equals the manifest's "runtime" field
    formats: ClassVar[tuple[str, ...]]  # manifest "format" values (file kinds) it can run
    install: ClassVar[str]  # the command that installs its library
    what: ClassVar[str]  # the library's name, for messages

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    has_variables: bool = False

    @abc.abstractmethod
    def __init__(self, path: Path, *, entry: dict | None = None, threads: int = 1, **options):
        """Load ``path``; ``entry`` is its manifest entry (None for a bare file)."""

    @classmethod
    @abc.abstractmethod
    def library(cls):
        """Import and return the backing library, or raise ``MissingDependency``."""

    @classmethod
    def library_for(cls, entry: dict | None):
        """``library()`` as needed to run this manifest entry (a backend may need less for some)."""
        return cls.library()

    @classmethod
    def available(cls) -> bool:
        try:
            cls.library()
        except MissingDependency:
            return False
        return True

    @abc.abstractmethod
    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Run the graph once: arrays in ``inputs`` order (already in the file's dtype) -> outputs."""

    def reset_variables(self) -> None:
        """Forget state kept inside the graph (no-op for stateless graphs)."""

    def describe(self) -> str:
        return self.name

    # -- helpers for subclasses ------------------------------------------------------
    @staticmethod
    def read_model(path: Path, entry: dict | None) -> bytes:
        """The model file's bytes, checked against the manifest entry's sha256 (when there is one) on
        the very bytes the library then parses: nothing can swap the file between the check and the
        load (security audit: the libraries reopened a verified file by its path)."""
        from runtime.manifest import checked_bytes
        return checked_bytes(path, (entry or {}).get("sha256") or None)

    @staticmethod
    def load_error(path, library: str, exc: BaseException) -> UserError:
        """The one-line error for a file the library could not load."""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return UserError(f"model file {path} could not be loaded by {library}: it is corrupted, truncated "
                         f"or not a model for it ({type(exc).__name__}: {first}); re-export or restore it")
