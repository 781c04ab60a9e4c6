"""TFLite artifacts: float32, float16, dynamic-range, int8, 16x8 and streaming step graphs.

``export_tflite(model, meta, data, out_dir)`` rebuilds the PyTorch model in tf_keras with the exact
weights (``export.keras_rebuild``), converts it with TensorFlow's converter in a child process
(``export.tflite_convert_child``: the converter can segfault), writes each ``.tflite`` atomically
and verifies it at once: LiteRT against PyTorch on the test split, TFLite Micro for int8 graphs.
It returns one manifest record per artifact (docs/contracts.md), failures included.

Graph forms (docs/export.md, "TFLite"):

- LSTM: the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op for every precision (checked in the op
  list). Its h and c live in variable tensors that persist across ``invoke()``: every sequence
  starts with ``reset_all_variables()`` (LiteRT) / ``reset()`` (TFLite Micro). The step graph is
  the same fused op over a one-frame window: state stays in the variables, so streaming is one
  ``invoke()`` per frame and a reset between sequences.
- GRU: TFLite has no fused GRU. Float graphs keep the Keras ``WHILE`` loop (small, any length);
  int8 / 16x8 graphs are unrolled over the window (the int8 calibration of the WHILE form
  segfaults). The step graph is one GRU cell with explicit ``state_in_i`` / ``state_out_i``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from export.verify import check_data_fits
from runtime.atomic import write_bytes
from runtime.errors import MissingDependency, UserError
from runtime.metrics import compare, lsb_diff

REPO_ROOT = Path(__file__).resolve().parent.parent
JOB_TIMEOUT_S = 900.0  # one conversion; a hung converter is killed and reported
STREAM_EXAMPLES = 1200  # test windows (at most) streamed frame by frame for the streaming checks
STREAM_FLOAT_TOL = 1e-5  # streaming vs whole-sequence, float32 (the acceptance criterion)
REP_WINDOWS = 200  # normalized training windows used to calibrate int8 / 16x8
REP_WINDOWS_STEP = 24  # windows whose frames, in order, calibrate the int8 step graph


# Precisions whose fused LSTM computes the cell in float: their converter-set cell_clip of 10 is
# cleared (PyTorch does not clip). Integer LSTMs keep it: their int16 cell state saturates anyway.
FLOAT_KERNELS = ("float32", "float16", "dynamic-range")


@dataclasses.dataclass(frozen=True)
class Job:
    """One artifact to convert."""

    name: str
    file: str
    precision: str
    kind: str = "sequence"  # sequence | step
    unroll: bool = False
    tflm: bool = False  # also verify in TFLite Micro
    float_io: bool = False  # int8 inside, float32 inputs/outputs (QUANTIZE/DEQUANTIZE at the edges)

    def form(self, arch: str) -> str:
        if arch == "lstm":
            return "fused UNIDIRECTIONAL_SEQUENCE_LSTM" + (" over a one-frame window" if self.kind == "step" else "")
        if self.kind == "step":
            return "one GRU cell per invoke (explicit state tensors)"
        return "unrolled over the window" if self.unroll else "WHILE loop over time"


def plan(arch: str) -> list[Job]:
    """The artifacts made for ``arch``, in conversion order."""
    gru_int = arch == "gru"  # GRU integer graphs must be unrolled (see module docstring)
    jobs = [
        Job("tflite-float32", "model_float32.tflite", "float32"),
        Job("tflite-float16", "model_float16.tflite", "float16"),
        Job("tflite-dynamic-range", "model_dynamic_range.tflite", "dynamic-range"),
        Job("tflite-int8", "model_int8.tflite", "int8", unroll=gru_int, tflm=True),
        Job("tflite-int16x8", "model_int16x8.tflite", "int16x8", unroll=gru_int),
        Job("tflite-float32-step", "model_step_float32.tflite", "float32", kind="step"),
    ]
    if arch == "lstm":  # variable-state int8 streaming (the MCU case)
        jobs.append(Job("tflite-int8-step", "model_step_int8.tflite", "int8", kind="step", tflm=True))
    else:  # one int8 GRU cell per frame: tiny next to the unrolled window. Its state tensors stay float32 so
        # state_out can be fed straight back as state_in (int8 state would have two different scales).
        jobs.append(Job("tflite-int8-step", "model_step_int8.tflite", "int8", kind="step", tflm=True, float_io=True))
    return jobs


QUANTIZED = {
    "float32": "nothing: float32 weights and activations",
    "float16": "weights stored as float16 (dequantized to float32 at load); activations float32",
    "dynamic-range": "weights int8; activations float32, quantized on the fly inside the LSTM/fully-connected kernels",
    "int8": "everything: int8 weights and activations, int8 input and output (int32 biases{lstm})",
    "int16x8": "int16 activations, int8 weights, int16 input and output",
}


def _quantized_text(job: Job, arch: str) -> str:
    if job.float_io:
        return ("int8 weights and activations inside; the input, scores and state tensors stay float32 "
                "(QUANTIZE/DEQUANTIZE at the edges)")
    return QUANTIZED[job.precision].replace("{lstm}", "; LSTM cell state int16" if arch == "lstm" else "")


# -- the child process ----------------------------------------------------------------------
class ConverterCrashed(Exception):
    pass


class ConverterWorker:
    """A ``tflite_convert_child`` process: jobs in on stdin, results out on stdout.

    TensorFlow is imported once per worker. If the worker dies (segfault, abort) or hangs, the
    job it was on fails with one line and the next job gets a fresh worker.
    """

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0

    def _start(self) -> None:
        self.starts += 1
        self.log_path = self.workdir / f"worker-{self.starts}.log"
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1",
                   TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", CUDA_VISIBLE_DEVICES="",
                   PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "export.tflite_convert_child", str(self.workdir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     cwd=REPO_ROOT, env=env, text=True, bufsize=1)

    def run(self, job: dict, timeout: float = JOB_TIMEOUT_S) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died before reading; reported below
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = ""
        ready = bool(sel.select(timeout))
        if ready:
            line = self.proc.stdout.readline()  # "" = end of file: the worker died
        sel.close()
        if line:
            return json.loads(line)
        hung = not ready
        if hung:
            self.proc.kill()
        code = self.proc.wait()
        self._log.close()
        self.proc = None
        raise ConverterCrashed(self._why(code, hung, timeout))

    def _why(self, code: int, hung: bool, timeout: float) -> str:
        if hung:
            return f"timed out after {timeout:.0f} s"
        what = f"exit code {code}"
        if code < 0:
            try:
                what = signal.Signals(-code).name
            except ValueError:
                what = f"signal {-code}"
        tail = ""
        if self.log_path and self.log_path.exists():
            lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
            keys = ("Fatal Python error", "Check failed", "Segmentation fault", "Aborted", "F0000")
            hits = [ln for ln in lines if any(k in ln for k in keys)]
            tail = (hits or [""])[-1][:200]
        return f"crashed ({what})" + (f": {tail}" if tail else "")

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            self._log.close()
            self.proc = None


# -- verification ---------------------------------------------------------------------------
@dataclasses.dataclass
class Reference:
    """PyTorch float scores on the test split: whole sequences and a streamed subset."""

    x_test: np.ndarray  # normalized [N, T, C]
    y_test: np.ndarray
    scores: np.ndarray  # [N, K]
    stream_scores: np.ndarray  # [S, T, K] for the first S windows


def torch_reference(model, x_test: np.ndarray, y_test: np.ndarray, n_stream: int = STREAM_EXAMPLES) -> Reference:
    import torch
    with torch.no_grad():
        xt = torch.from_numpy(x_test)
        scores = np.concatenate([model(xt[i:i + 256]).numpy() for i in range(0, len(xt), 256)])
        stream = model.stream(xt[:n_stream]).numpy()
    return Reference(x_test, y_test, scores, stream)


def _head(ref: Reference) -> str:
    """forecast (float targets [N, K]), frames (scores [N, T, K]) or classify."""
    if np.ndim(ref.y_test) == 2 and np.asarray(ref.y_test).dtype.kind == "f":
        return "forecast"
    return "frames" if np.ndim(ref.scores) == 3 else "classify"


def _seq(streamed: np.ndarray, ref: Reference) -> np.ndarray:
    """The whole-sequence output from a stream: the last step, or (frames) every step."""
    return streamed if _head(ref) == "frames" else streamed[:, -1]


def _judge(metrics: dict, precision: str) -> tuple[str, str | None]:
    """The pipeline's tolerance judgement (export.verify.judge), so every family is judged alike."""
    from export.verify import judge
    return judge(metrics, precision)


def _rounded(d: dict) -> dict:
    return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in d.items()}


def verify_litert(path: Path, job: Job, ref: Reference, sequence_scores: dict[str, np.ndarray]) -> dict:
    """Run ``path`` in LiteRT on the test split; metrics, interface and status for its record."""
    from export.tflite_run import LiteRTModel
    m = LiteRTModel(path)
    ins, outs = m.io_records()
    out: dict = {"inputs": ins, "outputs": outs}
    if job.kind == "sequence":
        scores = m.run_sequences(ref.x_test)
        sequence_scores[job.precision] = scores
        metrics = compare(scores, ref.scores, ref.y_test)
    else:
        n = len(ref.stream_scores)
        streamed = m.stream(ref.x_test[:n])  # [S, T, K]
        head = _head(ref)
        per_step = compare(streamed.reshape(-1, streamed.shape[-1]), ref.stream_scores.reshape(-1, streamed.shape[-1]),
                           head=head)
        last = compare(_seq(streamed, ref), ref.scores[:n], ref.y_test[:n])
        metrics = dict(last, stream_max_abs_err=per_step["max_abs_err"], stream_examples=n,
                       **({"stream_rel_err": per_step["rel_err"]} if head == "forecast"
                          else {"stream_top1_agreement": per_step["top1_agreement"]}))
        # the acceptance check (judged for float32): streamed last step == whole-sequence scores
        metrics["stream_vs_sequence_max_abs"] = float(np.max(np.abs(_seq(streamed, ref) - ref.scores[:n])))
        whole = sequence_scores.get(job.precision)
        if whole is not None:  # and against this precision's own whole-sequence TFLite graph
            metrics["stream_vs_tflite_sequence_max_abs"] = float(np.max(np.abs(_seq(streamed, ref) - whole[:n])))
            if head != "forecast":  # a forecast has no decisions to agree on
                metrics["stream_vs_tflite_sequence_top1_agreement"] = float(np.mean(_seq(streamed, ref).argmax(-1) == whole[:n].argmax(-1)))
        out["reset_check"] = reset_check(m, ref.x_test[:2])
    status, error = _judge(metrics, job.precision)
    svs = metrics.get("stream_vs_tflite_sequence_max_abs")
    if job.precision == "float32" and svs is not None and svs > STREAM_FLOAT_TOL:
        status, error = "out-of-tolerance", f"streaming differs from the whole-sequence TFLite graph by {svs:.3g} > {STREAM_FLOAT_TOL:g}"
    if job.kind == "step" and not out["reset_check"]["reset_restores_fresh_state"]:
        status, error = "out-of-tolerance", "resetting the step graph does not restore a fresh state"
    out.update(accuracy=metrics.get("accuracy"), metrics=_rounded(metrics), status=status, error=error)
    return out


def reset_check(m, x2: np.ndarray) -> dict:
    """Stream window A, then window B without and with a reset: the reset must give B's fresh-start scores.

    Explicit-state graphs carry state in their inputs, so "no reset" means feeding A's final state.
    """
    fresh_b = m.stream(x2[1:2])[0, -1]
    ins, outs = m.state_names()
    state = m.reset_state()
    for seq in (x2[0], x2[1]):  # A then B, never resetting in between
        for frame in seq:
            m.set("x", frame[None])
            for n in ins:
                m.set(n, state[n])
            m.it.invoke()
            state = {i: m.get(o) for i, o in zip(ins, outs)}
    carried = m.get("scores")[0]
    again = m.stream(x2[1:2])[0, -1]
    return {"carry_over_changes_scores": bool(np.max(np.abs(carried - fresh_b)) > 1e-6),
            "reset_restores_fresh_state": bool(np.array_equal(again, fresh_b))}


def verify_tflm(path: Path, job: Job, ref: Reference, litert_record: dict) -> dict:
    """The int8 graph in TFLite Micro: smallest arena, accuracy, LSB difference from LiteRT int8."""
    from export.tflite_run import LiteRTModel, TFLMModel, dequantize, quantize, tflm_min_arena
    arena, recorded = tflm_min_arena(path)
    tm = TFLMModel(path, arena)
    lm = LiteRTModel(path)
    x_rec = next(r for r in litert_record["inputs"] if r["name"] == "x")
    y_rec = next(r for r in litert_record["outputs"] if r["name"] == "scores")
    xq, yq = x_rec["quant"], y_rec["quant"]
    if job.float_io:  # explicit float32 state around an int8 cell: compare floats, not LSBs
        n = len(ref.stream_scores)
        pos = {r["name"]: r["index"] for r in litert_record["inputs"]}
        opos = {r["name"]: r["index"] for r in litert_record["outputs"]}
        state = litert_record["state"]
        streamed = tm.stream_explicit(ref.x_test[:n], pos["x"], opos["scores"], [pos[k] for k in state["inputs"]],
                                      [opos[k] for k in state["outputs"]])
        litert = lm.stream(ref.x_test[:n])
        metrics = compare(_seq(streamed, ref), ref.scores[:n], ref.y_test[:n])
        metrics.update(stream_examples=n, max_abs_vs_litert=float(np.max(np.abs(streamed - litert))),
                       stream_max_abs_err=float(np.max(np.abs(streamed - ref.stream_scores))))
        status, error = _judge(metrics, job.precision)
        return {"arena_bytes": arena, "arena_recorded_bytes": recorded, "accuracy": metrics.get("accuracy"),
                "metrics": _rounded(metrics), "status": status, "error": error}
    if job.kind == "sequence":
        x = ref.x_test
        q = quantize(x, xq["scale"], xq["zero_point"], np.int8)
        raw = tm.run_sequences_raw(q)
        raw_litert = lm.run_sequences(x, raw=True)
        metrics = compare(dequantize(raw, yq["scale"], yq["zero_point"]), ref.scores, ref.y_test)
    else:
        n = len(ref.stream_scores)
        x = ref.x_test[:n]
        q = quantize(x, xq["scale"], xq["zero_point"], np.int8)
        raw_steps = tm.stream_raw(q)
        raw = _seq(raw_steps, ref)
        raw_litert = _seq(np.stack([_litert_stream_raw(lm, s) for s in x]), ref)
        metrics = compare(dequantize(raw, yq["scale"], yq["zero_point"]), ref.scores[:n], ref.y_test[:n])
        metrics["stream_examples"] = n
    metrics["max_lsb_vs_litert"] = lsb_diff(raw, raw_litert)
    metrics["fraction_equal_to_litert"] = float(np.mean(raw == raw_litert))
    status, error = _judge(metrics, job.precision)
    return {"arena_bytes": arena, "arena_recorded_bytes": recorded, "accuracy": metrics.get("accuracy"), "metrics": _rounded(metrics),
            "status": status, "error": error}


def _litert_stream_raw(m, seq: np.ndarray) -> np.ndarray:
    m.reset_state()
    out = []
    for frame in seq:
        m.set("x", frame[None])
        m.it.invoke()
        out.append(m.get("scores", raw=True)[0])
    return np.stack(out)


# -- records -------------------------------------------------------------------------------
def _state_field(arch: str, job: Job, hidden: tuple[int, ...]) -> dict | None:
    if arch == "lstm":  # the fused op's h and c are variable tensors, whatever the kind
        return {"mode": "variables", "reset": "reset_all_variables",
                "note": "fused LSTM h/c persist across invoke(): reset before every independent sequence "
                        "(LiteRT reset_all_variables(), TFLite Micro reset())"}
    if job.kind == "step":
        n = len(hidden)
        return {"mode": "explicit", "inputs": [f"state_in_{i}" for i in range(n)],
                "outputs": [f"state_out_{i}" for i in range(n)], "shapes": [[1, h] for h in hidden]}
    return None


def _base_record(job: Job, arch: str, hidden) -> dict:
    return {"name": job.name, "file": job.file, "sha256": None, "size_bytes": None, "format": "tflite",
            "runtime": "litert", "precision": job.precision, "kind": job.kind, "inputs": [], "outputs": [],
            "state": _state_field(arch, job, hidden), "ops": None, "form": job.form(arch),
            "quantized": _quantized_text(job, arch), "accuracy": None, "metrics": {},
            "status": "failed", "error": None}


def _finish_record(rec: dict, path: Path, arch: str) -> None:
    from export.tflite_inspect import op_counts, variable_tensor_count
    from training.checkpoint import file_sha256
    ops, subgraphs = op_counts(path)
    rec.update(sha256=file_sha256(path), size_bytes=path.stat().st_size, ops=ops, op_count=sum(ops.values()),
               subgraphs=subgraphs, variable_tensors=variable_tensor_count(path), status="ok", error=None)
    if arch == "lstm":
        from export.tflite_inspect import lstm_cell_clips
        rec["lstm_cell_clip"] = lstm_cell_clips(path)
    if arch == "lstm" and ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0) == 0:
        rec["status"], rec["error"] = "failed", f"the LSTM did not convert to the fused UNIDIRECTIONAL_SEQUENCE_LSTM op (ops: {ops})"


def _mark_dequantized(rec: dict, path: Path) -> None:
    """Float outputs that an integer graph computes with a DEQUANTIZE (the GRU's int8 step graph) get
    ``dequantized_from``: the integer tensor's type and scale, so that parity can count the distance
    between two runtimes of the file in its LSBs."""
    from export.tflite_inspect import dequantized_outputs
    found = dequantized_outputs(path)
    for o in rec["outputs"]:
        if o.get("quant") is None and o.get("tensor") in found:
            o["dequantized_from"] = found[o["tensor"]]


def _tflm_record(litert: dict, extra: dict) -> dict:
    rec = {k: v for k, v in litert.items() if k not in ("metrics", "accuracy", "status", "error", "reset_check")}
    rec.update(name=litert["name"].replace("tflite-", "tflm-"), runtime="tflm", **extra)
    return rec


def _prepare(model, meta, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = np.asarray(meta["input_mean"], np.float32)
    std = np.asarray(meta["input_std"], np.float32)
    check_data_fits(model, data)
    norm = lambda X: ((X - mean) / std).astype(np.float32)  # noqa: E731
    y = data.y_test
    if model.spec.head == "forecast":  # targets in the model's normalized space (training/forecast.py)
        from training.forecast import target_space
        y = target_space(y, mean, std)
    return norm(data.X_train), norm(data.X_test), y


def _check_dependencies() -> None:
    import importlib.util
    for mod, what, install in (("tensorflow", "TensorFlow (TFLite export)", "pip install tensorflow==2.21.0 tf-keras==2.21.0"),
                               ("tf_keras", "tf-keras (TFLite export)", "pip install tf-keras==2.21.0"),
                               ("ai_edge_litert", "LiteRT (ai-edge-litert)", "pip install ai-edge-litert==2.3.0"),
                               ("tflite", "the tflite flatbuffer reader", "pip install tflite==2.18.0")):
        if importlib.util.find_spec(mod) is None:
            raise MissingDependency(what, install)


def export_tflite(model, meta: dict, data, out_dir, progress: bool = True, *, only: list[str] | None = None,
                  inject_crash: tuple[str, ...] = (), rep_windows: int = REP_WINDOWS) -> list[dict]:
    """Convert ``model`` (a SequenceModel) to every TFLite artifact, write them to ``out_dir``, verify each.

    ``data`` is the task's ``SequenceData`` (training windows calibrate int8; the test split
    verifies); ``meta`` the checkpoint metadata (input normalization). ``only`` restricts to the
    named artifacts. ``rep_windows``: how many random training windows calibrate int8 / 16x8
    (``bench.calibration`` measures the choice). ``inject_crash`` names artifacts whose conversion aborts the child process
    (fault injection for tests). Returns manifest records (docs/contracts.md); a failed
    conversion is a record with ``status: "failed"`` and the converter's one-line message.
    """
    _check_dependencies()
    spec = model.spec
    arch, hidden = spec.arch, spec.hidden_sizes
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {out_dir}: {e.strerror}; choose a writable --out") from None
    jobs = plan(arch)
    if only is not None:
        unknown = sorted(set(only) - {j.name for j in jobs})
        if unknown:
            raise UserError(f"unknown TFLite artifact(s) {', '.join(unknown)}: choose from {', '.join(j.name for j in jobs)}")
        jobs = [j for j in jobs if j.name in only]
    x_train, x_test, y_test = _prepare(model, meta, data)
    ref = torch_reference(model, x_test, y_test)
    rng = np.random.default_rng(0)
    rep = x_train[rng.permutation(len(x_train))[:rep_windows]]

    records: list[dict] = []
    sequence_scores: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="rnn-edge-tflite-") as tmp:
        workdir = Path(tmp)
        state_dict = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        np.savez(workdir / "model.npz", spec=np.array(spec.to_json()), rep_sequences=rep, **state_dict)
        step_rep = rep[:REP_WINDOWS_STEP]
        np.savez(workdir / "model_step.npz", spec=np.array(spec.to_json()), rep_sequences=step_rep, **state_dict)
        worker = ConverterWorker(workdir)
        bar = _progress(jobs, progress)
        try:
            for job in bar:
                if hasattr(bar, "set_description"):
                    bar.set_description(job.name)
                records.extend(_make_one(worker, job, arch, hidden, workdir, out_dir, ref, sequence_scores,
                                         crash=job.name in inject_crash))
        finally:
            worker.close()
    return records


def _make_one(worker, job, arch, hidden, workdir, out_dir, ref, sequence_scores, crash=False) -> list[dict]:
    rec = _base_record(job, arch, hidden)
    tmp_out = workdir / job.file
    request = {"name": job.name, "kind": job.kind, "precision": job.precision, "unroll": job.unroll, "float_io": job.float_io,
               "out": str(tmp_out), "crash": crash,
               "model": "model_step.npz" if job.kind == "step" else "model.npz"}
    t0 = time.perf_counter()
    try:
        result = worker.run(request)
    except ConverterCrashed as e:
        result = {"ok": False, "error": f"TFLite converter {e} while making {job.name} ({job.file}); "
                                        f"the other artifacts are still written"}
        print(f"error: {result['error']}", file=sys.stderr)
    rec["convert_seconds"] = round(time.perf_counter() - t0, 2)
    if not result["ok"]:
        rec["file"], rec["error"] = None, result["error"]
        if "not yet supported" in str(result["error"]):
            # A documented converter limitation (e.g. 16x8 for the fused LSTM), not a crash:
            # recorded with the converter's message, reported as a warning, not a failed export.
            rec["status"] = "unsupported"
        return [rec]
    path = out_dir / job.file
    data = tmp_out.read_bytes()
    if arch == "lstm" and job.precision in FLOAT_KERNELS:
        from export.tflite_inspect import clear_lstm_cell_clip
        data = clear_lstm_cell_clip(data)  # the converter's cell_clip=10 is not PyTorch's LSTM
    write_bytes(path, data)
    _finish_record(rec, path, arch)
    if rec["status"] == "failed":
        return [rec]
    rec.update(verify_litert(path, job, ref, sequence_scores))
    _mark_dequantized(rec, path)
    out = [rec]
    if job.tflm:
        try:
            tflm = _tflm_record(rec, verify_tflm(path, job, ref, rec))
        except Exception as e:  # TFLM refusing or failing on a graph is a finding, not a crash of the export
            tflm = _tflm_record(rec, {"status": "failed", "error": f"TFLite Micro: {str(e).strip().splitlines()[0][:200]}",
                                      "accuracy": None, "metrics": {}})
        out.append(tflm)
    return out


def _progress(items, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="tflite", unit="artifact")
