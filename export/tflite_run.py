"""Run ``.tflite`` artifacts in LiteRT and TFLite Micro, the way a device would.

Pure helpers around the two interpreters: quantize inputs with the model's own parameters,
dequantize outputs, reset state between independent sequences, stream frame by frame with
either variable-tensor state (fused LSTM) or explicit state tensors (GRU step graphs).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from runtime.errors import MissingDependency

_INT_RANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.int16): (-32768, 32767), np.dtype(np.uint8): (0, 255)}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """q = clip(round(x / scale) + zero_point) in ``dtype`` (the manifest's convention)."""
    lo, hi = _INT_RANGE[np.dtype(dtype)]
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zero_point, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q, np.float64) - zero_point) * scale).astype(np.float32)


def _quant(detail: dict) -> dict | None:
    scale, zp = detail["quantization"]
    if np.dtype(detail["dtype"]) == np.float32 or scale == 0.0:
        return None
    return {"scale": float(scale), "zero_point": int(zp)}


class LiteRTModel:
    """A ``.tflite`` file loaded in LiteRT (``ai_edge_litert``) with named inputs and outputs.

    Names are the signature names (``x``, ``scores``, ``state_in_0`` ...); ``index`` is the
    position in the model's input/output list, which TFLite Micro's ``set_input(index)`` uses.
    """

    def __init__(self, path):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise MissingDependency("LiteRT (ai-edge-litert)", "pip install ai-edge-litert==2.3.0") from None
        self.path = str(path)
        self.it = Interpreter(model_path=self.path, num_threads=1)
        self.it.allocate_tensors()
        sig = next(iter(self.it._get_full_signature_list().values()))
        by_tensor_in = {t: n for n, t in sig["inputs"].items()}
        by_tensor_out = {t: n for n, t in sig["outputs"].items()}
        self.inputs = {by_tensor_in[d["index"]]: dict(d, position=i) for i, d in enumerate(self.it.get_input_details())}
        self.outputs = {by_tensor_out[d["index"]]: dict(d, position=i) for i, d in enumerate(self.it.get_output_details())}

    # -- interface description -----------------------------------------------------------
    def io_records(self) -> tuple[list[dict], list[dict]]:
        """Manifest ``inputs`` / ``outputs`` entries, in the model's own order."""
        def rec(name, d):
            return {"name": name, "index": d["position"], "tensor": d["name"], "shape": [int(s) for s in d["shape"]],
                    "dtype": np.dtype(d["dtype"]).name, "quant": _quant(d)}
        ins = sorted((rec(n, d) for n, d in self.inputs.items()), key=lambda r: r["index"])
        outs = sorted((rec(n, d) for n, d in self.outputs.items()), key=lambda r: r["index"])
        return ins, outs

    def set(self, name: str, value: np.ndarray) -> None:
        """Set a float input, quantizing it when the tensor is integer."""
        d = self.inputs[name]
        q = _quant(d)
        value = np.asarray(value, np.float32).reshape(d["shape"])
        if q is not None:
            value = quantize(value, q["scale"], q["zero_point"], d["dtype"])
        self.it.set_tensor(d["index"], value)

    def get(self, name: str, raw: bool = False) -> np.ndarray:
        """An output as float (dequantized), or its raw integers with ``raw=True``."""
        d = self.outputs[name]
        v = self.it.get_tensor(d["index"])
        q = _quant(d)
        return v.copy() if raw or q is None else dequantize(v, q["scale"], q["zero_point"])

    # -- running -------------------------------------------------------------------------
    def run_sequences(self, X: np.ndarray, raw: bool = False) -> np.ndarray:
        """Scores ``[N, K]`` for normalized windows ``X [N, T, C]``, one independent sequence per invoke.

        Variables (the fused LSTM's h and c) are reset before each sequence.
        """
        out = []
        for x in X:
            self.it.reset_all_variables()
            self.set("x", x[None])
            self.it.invoke()
            out.append(self.get("scores", raw)[0])
        return np.stack(out)

    def state_names(self) -> tuple[list[str], list[str]]:
        ins = sorted((n for n in self.inputs if n.startswith("state_in_")), key=lambda n: int(n.rsplit("_", 1)[1]))
        return ins, [n.replace("state_in_", "state_out_") for n in ins]

    def reset_state(self) -> dict[str, np.ndarray]:
        """Start a new sequence: reset variables; zero explicit states (returned as the first feed)."""
        self.it.reset_all_variables()
        ins, _ = self.state_names()
        return {n: np.zeros(self.inputs[n]["shape"], np.float32) for n in ins}

    def stream(self, X: np.ndarray) -> np.ndarray:
        """Per-frame scores ``[N, T, K]``: each window fed one frame per invoke through a step graph.

        The state is reset (variables) or zeroed (explicit) at the start of every window.
        """
        ins, outs = self.state_names()
        res = []
        for x in X:
            state = self.reset_state()
            steps = []
            for frame in x:
                self.set("x", frame[None])
                for n in ins:
                    self.set(n, state[n])
                self.it.invoke()
                steps.append(self.get("scores")[0])
                state = {i: self.get(o) for i, o in zip(ins, outs)}
            res.append(np.stack(steps))
        return np.stack(res)


# -- TFLite Micro --------------------------------------------------------------------------
def _tflm():
    try:
        from tflite_micro import runtime
    except ImportError:
        raise MissingDependency("TFLite Micro (tflite-micro)", "pip install --pre tflite-micro") from None
    return runtime


@contextlib.contextmanager
def _capture_fd2():
    """Capture C-level stderr (where TFLite Micro prints) into a string: ``with ... as out: ...; out[0]``."""
    saved = os.dup(2)
    captured = [""]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured[0] = sink.read().decode(errors="replace")


def tflm_arena_used(path) -> int:
    """Bytes of tensor arena TFLite Micro allocates for ``path`` (its RecordingMicroAllocator's total).

    Measured in a generous arena. Probing smaller arenas in-process is not safe: TFLM's LSTM
    kernel crashes the process, instead of failing cleanly, when its scratch buffers do not fit.
    """
    runtime = _tflm()
    size = max(1 << 20, 8 * Path(path).stat().st_size)
    it = runtime.Interpreter.from_file(str(path), arena_size=size)
    with _capture_fd2() as out:
        it.print_allocations()
    m = re.search(r"Arena allocation total (\d+) bytes", out[0])
    if not m:
        raise RuntimeError(f"TFLite Micro printed no arena total for {path}")
    return int(m.group(1))


def tflm_min_arena(path, granularity: int = 64) -> tuple[int, int]:
    """(smallest arena that loads and runs ``path``, rounded up to ``granularity``; the allocator's total).

    The allocator's recorded total leaves out the scratch memory kernels take while preparing,
    so the real minimum is found by bisection above it, each try in a child process.
    """
    used = tflm_arena_used(path)
    lo, hi = used - 1, 2 * used
    while not tflm_arena_fits(path, hi):
        lo, hi = hi, 2 * hi
        if hi > 1 << 26:
            raise RuntimeError(f"TFLite Micro cannot run {path} even in {hi} bytes of arena")
    while hi - lo > granularity:
        mid = (lo + hi) // 2
        if tflm_arena_fits(path, mid):
            hi = mid
        else:
            lo = mid
    return hi, used


def tflm_arena_fits(path, size: int) -> bool:
    """Whether ``path`` loads and runs in exactly ``size`` bytes of arena (checked in a child process)."""
    code = ("import sys, numpy as np; from tflite_micro import runtime; "
            "it = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2])); "
            "[it.set_input(np.zeros(it.get_input_details(i)['shape'], it.get_input_details(i)['dtype']), i) "
            "for i in range(int(sys.argv[3]))]; it.invoke()")
    n_inputs = _tflm().convert_bytearray_to_object(Path(path).read_bytes()).subgraphs[0].inputs.size
    r = subprocess.run([sys.executable, "-c", code, str(path), str(size), str(n_inputs)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return r.returncode == 0


class TFLMModel:
    """An int8 ``.tflite`` in the TFLite Micro interpreter (the MCU code, built for the host)."""

    def __init__(self, path, arena_size: int):
        self.it = _tflm().Interpreter.from_file(str(path), arena_size=arena_size)

    def run_sequences_raw(self, Xq: np.ndarray) -> np.ndarray:
        """Raw integer scores for already-quantized windows ``Xq [N, T, C]``; reset between sequences."""
        out = []
        for x in Xq:
            self.it.reset()
            self.it.set_input(x[None], 0)
            self.it.invoke()
            out.append(np.array(self.it.get_output(0))[0])
        return np.stack(out)

    def stream_raw(self, Xq: np.ndarray) -> np.ndarray:
        """Raw integer per-frame scores ``[N, T, K]`` of a variable-state step graph."""
        res = []
        for x in Xq:
            self.it.reset()
            steps = []
            for frame in x:
                self.it.set_input(frame[None], 0)
                self.it.invoke()
                steps.append(np.array(self.it.get_output(0))[0])
            res.append(np.stack(steps))
        return np.stack(res)

    def stream_explicit(self, X: np.ndarray, x_pos: int, scores_pos: int, state_in_pos: list[int],
                        state_out_pos: list[int]) -> np.ndarray:
        """Float per-frame scores ``[N, T, K]`` of a float-interface step graph with explicit state.

        Positions are the model's input/output indices (the manifest's ``index`` fields); the
        state starts at zero for each window and each ``state_out`` is fed back as ``state_in``.
        """
        res = []
        for x in X:
            state = [np.zeros(self.it.get_input_details(p)["shape"], np.float32) for p in state_in_pos]
            steps = []
            for frame in x:
                self.it.set_input(np.ascontiguousarray(frame[None], np.float32), x_pos)
                for p, v in zip(state_in_pos, state):
                    self.it.set_input(v, p)
                self.it.invoke()
                steps.append(np.array(self.it.get_output(scores_pos))[0])
                state = [np.array(self.it.get_output(p)) for p in state_out_pos]
            res.append(np.stack(steps))
        return np.stack(res)
