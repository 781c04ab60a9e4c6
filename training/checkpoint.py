"""Checkpoints: safetensors weights with their model spec, and a resumable training state.

- ``model.safetensors``: the trained weights plus metadata (model spec, task, class names,
  input normalization, metrics). This is what export reads; it holds no pickle.
- ``train_state.pt``: weights, optimizer and progress for resuming; loaded with
  ``weights_only=True`` so it cannot run code.
Both are written to a temporary name and renamed, so a kill never leaves half a file.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from runtime.atomic import write_bytes
from runtime.errors import UserError
from training.models import ModelSpec, SequenceModel

FORMAT = "rnn-edge/1"


def save_model(path, model: SequenceModel, meta: dict) -> None:
    """Write weights + spec + metadata (JSON-able dict) atomically."""
    from safetensors.torch import save
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "spec": model.spec.to_json(), "meta": json.dumps(meta)}
    _write(path, save(tensors, metadata=header))


def _write(path, data: bytes) -> None:
    """``data`` to ``path`` atomically (serialized first: safetensors and torch report a full disk as
    errors of their own); a failed write leaves the previous file and is one ``UserError`` line."""
    try:
        write_bytes(path, data)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}; free space or choose another --out "
                        f"(the run folder keeps the files of the epoch before)") from None


def read_checkpoint(path, tensors: bool = True) -> tuple[Path, dict, dict | list]:
    """``(file, header, weights)`` of a ``model.safetensors`` (or a run folder holding one): the
    tensors by name, or with ``tensors=False`` only their names. One ``UserError`` line when the
    file is missing, truncated or not safetensors at all; the header is not checked here."""
    from safetensors import safe_open
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: train one with `invoke train`, or give the path of a run folder or model.safetensors that exists")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()} if tensors else list(f.keys())
    except Exception as e:  # safetensors raises its own error types for truncation/garbage
        raise UserError(f"checkpoint {path} is corrupted or truncated ({type(e).__name__}): retrain or restore it") from None
    return path, header, weights


def _check_meta(meta, channels: int) -> None:
    """The header fields every reader uses: a JSON object whose input_mean / input_std (the
    normalization the model was trained with) are numbers, one per input channel."""
    if not isinstance(meta, dict):
        raise TypeError(f"meta is a {type(meta).__name__}, not an object")
    for key in ("input_mean", "input_std"):
        v = meta.get(key)
        if not (isinstance(v, list) and len(v) == channels and all(isinstance(a, (int, float)) for a in v)):
            raise ValueError(f"meta.{key} must list {channels} numbers")


def load_model(path) -> tuple[SequenceModel, dict]:
    """Rebuild the model from a ``model.safetensors`` (or a run folder holding one)."""
    path, header, tensors = read_checkpoint(path)
    if header.get("format") != FORMAT:
        raise UserError(f"{path} is not an rnn-edge checkpoint (format {header.get('format')!r}): pass the "
                        f"model.safetensors that invoke train wrote (a Keras model goes through --keras)")
    try:  # a damaged header can still be valid safetensors: its spec/meta JSON must parse too
        spec = ModelSpec.from_json(header["spec"])
        meta = json.loads(header["meta"])
        model = SequenceModel(spec)
        _check_meta(meta, spec.input_size)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"checkpoint {path} has a damaged header ({type(e).__name__}: {str(e)[:120]}): "
                        f"retrain or restore it") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise UserError(f"checkpoint {path} does not match its own spec {spec}: {str(e).splitlines()[0]}") from None
    model.eval()
    return model, meta


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_train_state(path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _write(path, buffer.getvalue())


def load_train_state(path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"training state {path} is corrupted or truncated ({type(e).__name__}): delete it to start over") from None
