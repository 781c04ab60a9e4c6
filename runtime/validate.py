"""Checks on what callers pass in, each failing with one actionable line (``UserError``)."""

from __future__ import annotations

import numpy as np

from runtime.errors import UserError


def features(x, ndim: tuple[int, ...], channels: int, what: str, layout: str) -> np.ndarray:
    """Validate raw float features and return them as a float32 array.

    ``ndim``: the accepted numbers of dimensions; ``layout``: how to describe them, e.g. "[N, T, C]".
    """
    if x is None:
        raise UserError(f"{what} is None: pass a numeric array {layout}")
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise UserError(f"{what} must be a numeric array {layout}, got {type(x).__name__} ({e})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) \
            or arr.dtype == np.bool_:
        raise UserError(f"{what} has dtype {arr.dtype}: pass float features, e.g. x.astype(np.float32)")
    if np.issubdtype(arr.dtype, np.integer):
        raise UserError(f"{what} has integer dtype {arr.dtype}: pass raw float features (x.astype(np.float32)); "
                        f"int8 quantization is done by the runtime")
    if arr.ndim not in ndim:
        raise UserError(f"{what} has shape {arr.shape}: expected {layout} with C={channels}")
    if arr.shape[-1] != channels:
        raise UserError(f"{what} has {arr.shape[-1]} channels (shape {arr.shape}): the model expects C={channels} in {layout}")
    if arr.size == 0:
        raise UserError(f"{what} is empty (shape {arr.shape}): pass at least one frame")
    with np.errstate(over="ignore"):  # a finite float64 beyond float32's range becomes inf: told apart below
        arr32 = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr32)):
        bad = np.argwhere(~np.isfinite(arr32))[0].tolist()
        if np.isfinite(arr[tuple(bad)]):
            raise UserError(f"{what} holds {arr[tuple(bad)]:.3g} (first at index {bad}), beyond float32's range "
                            f"(+-3.4e38) in which the model computes: clip or rescale the input")
        raise UserError(f"{what} contains NaN or infinity (first at index {bad}): clean or impute the input")
    return arr32
