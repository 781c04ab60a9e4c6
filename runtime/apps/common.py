"""Argument and input helpers shared by the device apps."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np

from runtime.errors import UserError
from runtime.npz import NpzUnreadable, read_npy, read_npz


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None, help="onnxruntime | litert | tflm | c | torch (default: first installed)")
    p.add_argument("--artifact", default=None, help="manifest entry name, e.g. onnx-float32 or tflm-int8")
    p.add_argument("--precision", default=None, help="float32 | float16 | dynamic-range | int8 | int16x8")
    p.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")


def load_model(path, args):
    from runtime.manifest import Manifest
    from runtime.model import load
    folder = Path(path).parent if Path(path).name == "manifest.json" else Path(path)
    if args.artifact and args.backend and folder.is_dir():
        # runtime.load runs a named entry on any backend that opens its format (the parity suite
        # compares runtimes that way); a user naming both gets only what the export made for it
        man = Manifest.read(folder)
        man.require_runtime(man.by_name(args.artifact), args.backend)
    return load(path, backend=args.backend, artifact=args.artifact, precision=args.precision, threads=args.threads)


def window_of(model, default: int | None = None) -> int | None:
    """The training window length in frames (manifest ``model.seq_len``, or the checkpoint's)."""
    if model.manifest is not None and model.manifest.model.get("seq_len"):
        return int(model.manifest.model["seq_len"])
    meta = getattr(getattr(model.sequence_graph, "backend", None), "meta", None) or {}
    if meta.get("seq_len"):
        return int(meta["seq_len"])
    if model.input_spec.shape[1]:
        return int(model.input_spec.shape[1])
    return default


def _numeric_rows(lines, path) -> list[list[float]]:
    rows: list[list[float]] = []
    for n, row in enumerate(csv.reader(lines), 1):
        if not row or row[0].lstrip().startswith("#"):
            continue
        try:
            rows.append([float(v) for v in row])
        except ValueError:
            if rows:  # only a first, header row may be non-numeric
                raise UserError(f"{path} line {n} is not numeric ({','.join(row)[:60]!r}): "
                                f"one row per time step, one column per channel") from None
    return rows


def read_csv_sequence(path) -> np.ndarray:
    """A CSV of one sequence: one row per time step, one column per channel (a header row is skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a spreadsheet's byte order mark is not a header
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    rows = _numeric_rows(io.StringIO(text), path)
    if not rows:
        raise UserError(f"{path} has no numeric rows: one row per time step, one column per channel")
    if len({len(r) for r in rows}) != 1:
        raise UserError(f"{path} has rows of different lengths: every row needs the same number of channels")
    return np.asarray(rows, np.float32)[None]


def read_input(path) -> np.ndarray:
    """Sequences ``[N, T, C]`` from .npz (``x_raw``, ``x`` or its only array; never pickles) or .csv."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} not found")
    if path.suffix.lower() == ".csv":
        return read_csv_sequence(path)
    if path.suffix.lower() in (".npz", ".npy"):
        try:
            data = read_npy(path) if path.suffix.lower() == ".npy" else read_npz(path)
        except NpzUnreadable as e:
            raise UserError(f"{path} is not a readable numpy file: it {e}; save plain float arrays with "
                            f"numpy.savez (x_raw [N, T, C]) or numpy.save (pickled data is refused)") from None
        if isinstance(data, np.ndarray):
            x = data
        else:
            keys = list(data)
            # x_raw / x: golden.npz; X: the training .npz format (X [N, T, C], y [N])
            key = next((k for k in ("x_raw", "x", "X") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise UserError(f"{path} holds {keys}: name the raw features array 'x_raw', 'x' or 'X'")
            x = data[key]
        return x[None] if x.ndim == 2 else x
    raise UserError(f"unsupported input {path}: use .npz (array x_raw [N, T, C]) or .csv (rows = time steps)")


def print_json(obj) -> None:
    print(json.dumps(obj), flush=True)
