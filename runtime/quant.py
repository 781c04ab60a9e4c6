"""Affine (de)quantization of model inputs and outputs: pure numpy functions.

real = (q - zero_point) * scale;  q = clip(round(real / scale) + zero_point, dtype range).
Rounding is half away from zero, as TFLite's reference quantizer does.
"""

from __future__ import annotations

import numpy as np

from runtime.backends.base import Quant


def quantize(x: np.ndarray, quant: Quant, dtype: str) -> np.ndarray:
    """Float ``x`` to integers of ``dtype`` (int8, uint8, int16...)."""
    info = np.iinfo(dtype)
    scaled = np.asarray(x, np.float64) / quant.scale
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + quant.zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, quant: Quant) -> np.ndarray:
    """Integers back to float32."""
    return ((np.asarray(q, np.float64) - quant.zero_point) * quant.scale).astype(np.float32)


def to_tensor(x: np.ndarray, dtype: str, quant: Quant | None) -> np.ndarray:
    """Float ``x`` in the dtype a graph input wants: quantized if it has quant params, else cast."""
    if quant is not None and np.issubdtype(np.dtype(dtype), np.integer):
        return quantize(x, quant, dtype)
    return np.asarray(x, dtype=dtype)


def from_tensor(y: np.ndarray, quant: Quant | None) -> np.ndarray:
    """A graph output as float32: dequantized if it is an integer tensor with quant params."""
    y = np.asarray(y)
    if quant is not None and np.issubdtype(y.dtype, np.integer):
        return dequantize(y, quant)
    return y.astype(np.float32, copy=False)
