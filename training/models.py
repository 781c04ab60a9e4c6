"""LSTM and GRU sequence models: one set of weights, two ways to run them.

``forward(x)`` classifies a whole sequence ``[batch, time, features]`` from its last step;
``step(frame, state)`` consumes one frame ``[batch, features]`` and returns the same scores the
whole-sequence run would give after that many frames, so a device can stream.

Layers are separate single-layer ``nn.LSTM``/``nn.GRU`` modules so each may have its own hidden
size (128 then 64, as in the classic Keras stack). Their weight names and gate orders are
PyTorch's (LSTM i,f,g,o; GRU r,z,n): every exporter maps from those.
"""

from __future__ import annotations

import dataclasses
import json

import torch
from torch import nn

from runtime.errors import UserError

ARCHS = ("lstm", "gru")
HEADS = ("classify", "forecast", "frames")  # forecast: the next frames (docs/forecasting.md); frames: scores at
# every step, a sequence labelling (docs/frames.md)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model without its training code."""

    arch: str  # "lstm" | "gru"
    input_size: int
    hidden_sizes: tuple[int, ...]
    num_classes: int  # width of the head: classes, or horizon * channels for a forecast
    head: str = "classify"  # "classify" (scores per class) | "forecast" (next frames, regression) | "frames"
    # (class scores at every step: whole-sequence output [batch, time, classes])

    def __post_init__(self):
        if self.head not in HEADS:
            raise UserError(f"unsupported head {self.head!r}: choose one of {', '.join(HEADS)}")
        if self.arch not in ARCHS:
            raise UserError(f"unsupported architecture {self.arch!r}: choose one of {', '.join(ARCHS)}")
        if self.input_size < 1 or self.num_classes < 1 or not self.hidden_sizes:
            raise UserError(f"invalid model size {self}: input, hidden and class counts must be positive")
        if any(h < 1 for h in self.hidden_sizes):
            raise UserError(f"invalid hidden sizes {self.hidden_sizes}: each must be positive")
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        if d["head"] == "classify":  # the default stays out: classifier checkpoints read as before
            del d["head"]
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        d = json.loads(text)
        d["hidden_sizes"] = tuple(d["hidden_sizes"])
        return cls(**d)

    def macs_per_step(self) -> int:
        """Multiply-accumulates per time step, recurrent layers only (the head runs once)."""
        gates = 4 if self.arch == "lstm" else 3
        macs, n_in = 0, self.input_size
        for h in self.hidden_sizes:
            macs += gates * h * (n_in + h)
            n_in = h
        return macs


# A state is one entry per layer: (h, c) for LSTM, h for GRU; each [batch, hidden].
State = list


class SequenceModel(nn.Module):
    """Stacked unidirectional LSTM or GRU with a linear head on the last step.

    The head is the same ``nn.Linear`` for both ``spec.head`` kinds: class scores, or (forecast) the
    next ``horizon`` frames of every input channel, flattened time-major ``[t+1 ch0..chC-1, t+2 ...]``.
    ``head="frames"`` applies the same linear head at every step: ``forward`` returns ``[batch, time,
    classes]``, and ``stream(x)`` equals ``forward(x)`` (each step's scores are the sequence output there).
    """

    def __init__(self, spec: ModelSpec, dropout: float = 0.0):
        super().__init__()
        self.spec = spec
        self.drop = nn.Dropout(dropout)  # identity in eval mode, so exports never see it
        rnn = nn.LSTM if spec.arch == "lstm" else nn.GRU
        layers, n_in = [], spec.input_size
        for h in spec.hidden_sizes:
            layers.append(rnn(n_in, h, num_layers=1, batch_first=True))
            n_in = h
        self.layers = nn.ModuleList(layers)
        self.head = nn.Linear(n_in, spec.num_classes)

    def flatten_parameters(self) -> None:
        """Put each layer's weights back into one cuDNN buffer (a no-op off CUDA). Needed after a
        ``copy.deepcopy`` of a model on the GPU (``AveragedModel`` makes one): the copy's weights are
        separate tensors, and cuDNN would warn and copy them on every call."""
        for layer in self.layers:
            layer.flatten_parameters()

    # -- whole sequence ----------------------------------------------------------------
    def forward(self, x: torch.Tensor, every_step: bool = False) -> torch.Tensor:
        """Scores ``[batch, classes]`` for sequences ``x`` of shape ``[batch, time, features]``
        (``head="frames"``, or ``every_step`` in training: ``[batch, time, classes]``, the head at every
        step; target replication reads it so, through the DDP wrapper when there is one)."""
        x = self.features(x)
        return self.head(self.drop(x if every_step or self.spec.head == "frames" else x[:, -1]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's hidden state at every step, ``[batch, time, hidden]``: what the head reads."""
        for i, layer in enumerate(self.layers):
            x, _ = layer(x if i == 0 else self.drop(x))
        return x

    # -- streaming -----------------------------------------------------------------------
    def init_state(self, batch: int = 1, device=None) -> State:
        """A zero state: what the whole-sequence run starts from."""
        def z(h):
            return torch.zeros(1, batch, h, device=device)
        if self.spec.arch == "lstm":
            return [(z(h), z(h)) for h in self.spec.hidden_sizes]
        return [z(h) for h in self.spec.hidden_sizes]

    def step(self, frame: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One frame ``[batch, features]`` in; scores after it and the new state out."""
        x = frame.unsqueeze(1)
        new_state = []
        for layer, s in zip(self.layers, state):
            x, s = layer(x, s)
            new_state.append(s)
        return self.head(x[:, -1]), new_state

    def stream(self, x: torch.Tensor) -> torch.Tensor:
        """Run ``x`` frame by frame through ``step``; returns scores ``[batch, time, classes]``."""
        state = self.init_state(x.shape[0], x.device)
        outs = []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            outs.append(y)
        return torch.stack(outs, 1)
