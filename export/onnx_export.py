"""The ONNX family: write each ONNX artifact and check it right after it is written.

``export_onnx(model, meta, data, out_dir, progress) -> list[record]``, same shape as the TFLite
and C exporters. Artifacts (file names as in docs/contracts.md):

=========================  ============================  =============  ==========================
name                       file                          precision      what
=========================  ============================  =============  ==========================
onnx-float32               model.onnx                    float32        native LSTM/GRU, dynamic
                                                                        batch and time
onnx-float32-step          model_step.onnx               float32        one frame + explicit state
onnx-dynamic-int8          model_dynamic_int8.onnx       dynamic-range  quantize_dynamic
onnx-qdq-int8              model_qdq_int8.onnx           int8           quantize_static on the fused
                                                                        graph (head only)
onnx-decomposed-step       model_step_decomposed.onnx    float32        one step from plain ops
                                                                        (export/onnx_decomposed.py)
onnx-decomposed-step-int8  model_step_decomposed_qdq_    int8           quantize_static on that
                           int8.onnx                                    (all but Tanh; LSTM cell
                                                                        state in int16)
onnx-unrolled-float32      model_unrolled.onnx           float32        plain ops unrolled over
                                                                        seq_len (opt-in: slow)
onnx-unrolled-qdq-int8     model_unrolled_qdq_int8.onnx  int8           quantize_static on that
                                                                        (opt-in: minutes)
=========================  ============================  =============  ==========================

The unrolled pair is made only with ``unrolled=True`` (CLI ``--unrolled``): ONNX Runtime's
quantizer is quadratic in the node count and took 5-9 minutes for a 100-step window here.

One artifact failing (exception) becomes a ``failed`` record with one line naming it; the others
are still made. Every record carries ``metrics.latency_ms`` (median, batch 1, one window, one
thread, ONNX Runtime CPU) so the fused and unrolled forms can be compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export import manifest as M
from export import onnx_decomposed, onnx_float, onnx_quant, onnx_session
from export.verify import check_onnx_file, judge, normalize, reference_for, sequence_from_stream, verify_predict

ARTIFACTS = ("onnx-float32", "onnx-float32-step", "onnx-dynamic-int8", "onnx-qdq-int8",
             "onnx-decomposed-step", "onnx-decomposed-step-int8")
UNROLLED = ("onnx-unrolled-float32", "onnx-unrolled-qdq-int8")
CALIBRATION_WINDOWS = 256  # whole-sequence graphs
STEP_CALIBRATION_WINDOWS = 128  # step graphs: x seq_len (frame, state) samples each


def _describe_onnx(rec: dict, path: Path) -> None:
    """io, op counts and (for quantized graphs) the quantization account, from the saved file."""
    import onnx
    model = onnx.load(str(path))
    rec["inputs"], rec["outputs"] = M.onnx_io(model)
    rec["ops"] = onnx_quant.op_counts(model)
    rec["opset"] = int(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))
    q = onnx_quant.describe(model)
    rec["quantized"] = q["summary"] if rec["precision"] != "float32" else "nothing (float32)"
    rec["quantized_ops"] = {"int8": q["int8_ops"], "float": q["float_ops"]}
    qdq = _input_quant(model)
    if qdq:
        rec["internal_quant"] = qdq


def _input_quant(model) -> dict:
    """Scale/zero point of the QuantizeLinear applied to each graph input (QDQ graphs)."""
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    out = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in inputs and n.input[1] in inits:
            zp = inits.get(n.input[2]) if len(n.input) > 2 else None
            out[n.input[0]] = {"scale": float(inits[n.input[1]]), "zero_point": int(zp) if zp is not None else 0,
                               "dtype": str(zp.dtype) if zp is not None else "uint8"}
    return out


def _finish(rec: dict, path: Path, reference, *, stream_state=None) -> dict:
    """checker -> session -> io/ops -> compare with PyTorch -> latency."""
    check_onnx_file(path)
    sess = onnx_session.session(path)
    _describe_onnx(rec, path)
    if stream_state is not None:
        stream = onnx_session.stream_predictor(sess, stream_state)
        result = verify_predict(lambda x: sequence_from_stream(stream(x), reference.head), rec["precision"], reference,
                                stream=stream)
        frame = reference.x[:1, 0]
        feed = {n: np.zeros((1, s[1]), np.float32) for n, s in zip(stream_state["inputs"], stream_state["shapes"])}
        result["metrics"]["latency_ms_per_step"] = onnx_session.latency_ms(lambda: sess.run(None, {"frame": frame, **feed}))
        result["metrics"]["latency_ms"] = result["metrics"]["latency_ms_per_step"] * reference.x.shape[1]
    else:
        predict = onnx_session.sequence_predictor(sess)
        result = verify_predict(predict, rec["precision"], reference)
        one = reference.x[:1]
        result["metrics"]["latency_ms"] = onnx_session.latency_ms(lambda: sess.run(None, {"x": one}))
    rec.update(result)
    rec["size_bytes"] = path.stat().st_size
    return rec


def _make(name: str, file: str, precision: str, kind: str) -> dict:
    return M.new_record(name, file, format="onnx", runtime="onnxruntime", precision=precision, kind=kind)


def export_onnx(model, meta: dict, data, out_dir, progress: bool = True, *, only=None,
                unrolled: bool = False) -> list[dict]:
    """Write and verify the ONNX artifacts under ``out_dir``; one record each (see module doc)."""
    out_dir = Path(out_dir)
    reference = reference_for(model, meta, data)
    seq_len = int(reference.x.shape[1])
    x_train = normalize(data.X_train, meta)
    calib = onnx_quant.calibration_windows(x_train, CALIBRATION_WINDOWS)
    wanted = [a for a in ARTIFACTS + (UNROLLED if unrolled else ()) if only is None or a in only]
    calib_info = {"source": "training split, normalized", "method": "MinMax",
                  "weights": "uint8 per output channel, symmetric (zero point 128): no int16 saturation "
                             "on x86 CPUs without VNNI (export/onnx_quant.py)",
                  "activations": "uint8 per tensor, asymmetric"}

    def float_seq(rec):
        path = out_dir / rec["file"]
        onnx_float.export_sequence(model, path)
        _finish(rec, path, reference)
        # Dynamic time: also run a window of another length against PyTorch.
        import torch
        sess = onnx_session.session(path)
        half = reference.x[:16, : max(1, seq_len // 2 + 1)]
        with torch.no_grad():
            want = model(torch.from_numpy(half)).numpy()
        got = sess.run(["scores"], {"x": half})[0]
        rec["metrics"]["max_abs_err_other_length"] = float(np.max(np.abs(got - want)))
        rec["metrics"]["other_length"] = int(half.shape[1])
        if rec["metrics"]["max_abs_err_other_length"] > 1e-4 and rec["status"] == "ok":
            rec["status"] = "out-of-tolerance"
            rec["error"] = f"{rec['name']}: at length {half.shape[1]} scores differ from PyTorch by {rec['metrics']['max_abs_err_other_length']:.3g}"

    def stream_vs_onnx_sequence(rec, path, key):
        """Streaming (last step) vs the whole-sequence ONNX graph model.onnx, whole test split.

        ``stream_vs_own_sequence_max_abs`` (the fused step graph: same kernels as model.onnx) is
        judged at STREAM_TOLERANCE; the decomposed graph sums in another order, so its figure is
        informational and it is judged against PyTorch by the float32 policy like any artifact.
        """
        whole = out_dir / "model.onnx"
        if not whole.is_file():
            return
        last = sequence_from_stream(onnx_session.stream_predictor(onnx_session.session(path), rec["state"])(reference.x),
                                    reference.head)
        seq = onnx_session.sequence_predictor(onnx_session.session(whole))(reference.x)
        rec["metrics"][key] = float(np.max(np.abs(last - seq)))
        if key == "stream_vs_own_sequence_max_abs" and rec["status"] == "ok":
            rec["status"], rec["error"] = judge(rec["metrics"], rec["precision"])

    def step_graph(rec, write, check_key):
        """A float32 step graph written by ``write(model, path)``, streamed and checked against a sequence graph."""
        path = out_dir / rec["file"]
        rec["state"] = write(model, path)["state"]
        _finish(rec, path, reference, stream_state=rec["state"])
        stream_vs_onnx_sequence(rec, path, check_key)

    def float_step(rec):
        step_graph(rec, onnx_float.export_step, "stream_vs_own_sequence_max_abs")

    def needs(file):
        src = out_dir / file
        if not src.is_file():
            raise RuntimeError(f"needs {file}, which was not written")
        return src

    def dynamic(rec):
        path = out_dir / rec["file"]
        onnx_quant.quantize_dynamic_onnx(needs("model.onnx"), path)
        _finish(rec, path, reference)

    def qdq(rec):
        path = out_dir / rec["file"]
        onnx_quant.quantize_static_onnx(needs("model.onnx"), path, calib)
        _finish(rec, path, reference)
        rec["calibration"] = {"windows": int(len(calib)), **calib_info}

    def step_decomposed(rec):
        step_graph(rec, onnx_decomposed.export_decomposed_step, "vs_onnx_sequence_max_abs")

    def step_decomposed_int8(rec):
        path = out_dir / rec["file"]
        windows = onnx_quant.calibration_windows(x_train, STEP_CALIBRATION_WINDOWS)
        feeds = onnx_decomposed.step_calibration_feeds(model, windows)
        src = needs("model_step_decomposed.onnx")
        int16 = onnx_decomposed.cell_state_tensors(src) if model.spec.arch == "lstm" else []
        onnx_quant.quantize_static_onnx(src, path, feeds, int16_tensors=int16)
        rec["state"] = onnx_float.state_description(model.spec)
        _finish(rec, path, reference, stream_state=rec["state"])
        if int16:
            rec["quantized"] += "; int16 activations: the LSTM cell-state path (c, f*c, i*g)"
            rec["int16_tensors"] = int16
        rec["calibration"] = {"windows": int(len(windows)), "samples": int(sum(len(f["frame"]) for f in feeds)),
                              **calib_info, "samples_are": "every (frame, state) pair met streaming the windows"}

    def unrolled_float(rec):
        path = out_dir / rec["file"]
        onnx_decomposed.export_unrolled(model, path, seq_len)
        _finish(rec, path, reference)
        rec["seq_len"] = seq_len

    def unrolled_qdq(rec):
        path = out_dir / rec["file"]
        onnx_quant.quantize_static_onnx(needs("model_unrolled.onnx"), path, calib)
        _finish(rec, path, reference)
        rec["seq_len"] = seq_len
        rec["calibration"] = {"windows": int(len(calib)), **calib_info}

    plan = {
        "onnx-float32": ("model.onnx", "float32", "sequence", float_seq),
        "onnx-float32-step": ("model_step.onnx", "float32", "step", float_step),
        "onnx-dynamic-int8": ("model_dynamic_int8.onnx", "dynamic-range", "sequence", dynamic),
        "onnx-qdq-int8": ("model_qdq_int8.onnx", "int8", "sequence", qdq),
        "onnx-decomposed-step": ("model_step_decomposed.onnx", "float32", "step", step_decomposed),
        "onnx-decomposed-step-int8": ("model_step_decomposed_qdq_int8.onnx", "int8", "step", step_decomposed_int8),
        "onnx-unrolled-float32": ("model_unrolled.onnx", "float32", "sequence", unrolled_float),
        "onnx-unrolled-qdq-int8": ("model_unrolled_qdq_int8.onnx", "int8", "sequence", unrolled_qdq),
    }
    records = []
    bar = _bar(wanted, progress)
    for name in bar:
        file, precision, kind, build = plan[name]
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(name)
        rec = _make(name, file, precision, kind)
        try:
            build(rec)
        except Exception as e:  # one artifact failing must not stop the others
            if M.out_of_room(e):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            rec = M.failed_record(name, f"{name}: {type(e).__name__}: {msg}"[:400], file=file, format="onnx",
                                  runtime="onnxruntime", precision=precision, kind=kind)
        records.append(rec)
    return records


def _bar(items, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="onnx", unit="artifact", dynamic_ncols=True, leave=False)
