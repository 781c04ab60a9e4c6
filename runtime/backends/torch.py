"""PyTorch backend: the float host reference, run straight from the training checkpoint.

``kind="sequence"`` runs ``SequenceModel.forward`` on ``x [N, T, C]``; ``kind="step"`` runs
``SequenceModel.step`` on one frame with the recurrent state as explicit inputs/outputs
(``state_in_i``/``state_out_i``, each ``[batch, H]``: per layer h, plus c for an LSTM), so it
streams exactly like an explicit-state ONNX step graph. Needs torch and this repository's
``training`` package; both are imported only when this backend is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, TensorSpec
from runtime.errors import MissingDependency


class TorchBackend(Backend):
    name = "torch"
    formats = ("safetensors",)
    install = "pip install -e '.[train]'"
    what = "PyTorch"

    @classmethod
    def library(cls):
        try:
            import torch
        except ImportError:
            raise MissingDependency(cls.what, cls.install) from None
        return torch

    def __init__(self, path: Path, *, entry: dict | None = None, threads: int = 1, kind: str = "sequence", **options):
        torch = self.torch = self.library()
        try:
            from training.checkpoint import load_model
        except ImportError:
            raise MissingDependency("the rnn-edge training package (for the PyTorch reference)", self.install) from None
        self.path = Path(path)
        if threads:
            torch.set_num_threads(max(1, int(threads)))
        self.model, self.meta = load_model(self.path)  # raises UserError naming a corrupt file
        spec = self.model.spec
        self.kind = kind
        parts = ("h", "c") if spec.arch == "lstm" else ("h",)
        self.state_shapes = [[1, h] for h in spec.hidden_sizes for _ in parts]
        n = len(self.state_shapes)
        if kind == "sequence":
            self.inputs = [TensorSpec("x", (None, None, spec.input_size), "float32")]
            self.outputs = [TensorSpec("scores", (None, spec.num_classes), "float32")]
            self.state = None
        else:
            self.inputs = [TensorSpec("x", (None, spec.input_size), "float32")] + [
                TensorSpec(f"state_in_{i}", (None, s[1]), "float32") for i, s in enumerate(self.state_shapes)]
            self.outputs = [TensorSpec("scores", (None, spec.num_classes), "float32")] + [
                TensorSpec(f"state_out_{i}", (None, s[1]), "float32") for i, s in enumerate(self.state_shapes)]
            self.state = {"mode": "explicit", "inputs": [f"state_in_{i}" for i in range(n)],
                          "outputs": [f"state_out_{i}" for i in range(n)], "shapes": self.state_shapes}

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(feeds[0], dtype=np.float32))
            if self.kind == "sequence":
                return [self.model(x).numpy()]
            flat = [torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32)).unsqueeze(0) for s in feeds[1:]]
            if self.model.spec.arch == "lstm":
                state = [(flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)]
            else:
                state = flat
            y, new = self.model.step(x, state)
            out = [y.numpy()]
            for s in new:
                out += [t.squeeze(0).numpy() for t in (s if isinstance(s, tuple) else (s,))]
            return out


BACKEND = TorchBackend
