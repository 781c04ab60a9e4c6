"""Domain-adversarial training against the subject (Ganin et al., "Domain-adversarial training of
neural networks", JMLR 2016), a training-only option (``subject_adversary``).

A small classifier guesses, from the recurrent stack's last hidden state, which training subject
recorded the window. Its loss flows back into the stack through a gradient reversal: the classifier
learns to tell the subjects apart while the stack learns features it cannot tell them apart by.
Held-out people are the watch task's problem (docs/training.md), so features that do not encode
the person are what this asks for. Nothing of it is exported: the model keeps its own head, and
the adversary's weights live only in the training state.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight: float):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by ``-weight`` on the way back."""
    return _Reverse.apply(x, float(weight))


def reversal_weight(progress: float, scale: float) -> float:
    """Ganin et al.'s ramp: ``scale * (2 / (1 + exp(-10 p)) - 1)`` for training progress p in [0, 1]:
    0 at the start, when the features are still noise, ``scale`` by the end."""
    p = min(max(progress, 0.0), 1.0)
    return scale * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


class SubjectAdversary(nn.Module):
    """hidden state -> 32 ReLU units -> one score per training subject."""

    def __init__(self, hidden: int, subjects: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, 32), nn.ReLU(), nn.Linear(32, subjects))

    def forward(self, features: torch.Tensor, weight: float) -> torch.Tensor:
        return self.net(reverse_gradient(features, weight))


def subject_indices(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Training subjects renumbered 0..S-1 (the ids are arbitrary integers), and S."""
    ids, index = np.unique(np.asarray(groups), return_inverse=True)
    return index.astype(np.int64), len(ids)
