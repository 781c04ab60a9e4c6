"""ONNX artifacts of the tiny fixture models, run in the real ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export import onnx_decomposed, onnx_float, onnx_quant, onnx_session
from export.verify import judge, reference_for, verify_predict


@pytest.fixture(scope="module")
def loaded(fixture_run):
    from training.checkpoint import load_model
    from training.data import load_task
    cache = {}

    def get(arch):
        if arch not in cache:
            model, meta = load_model(fixture_run(arch) / "model.safetensors")
            cache[arch] = (model, meta, load_task("fixture"))
        return cache[arch]
    return get


def _x(meta, data, n=5, t=None):
    from export.verify import normalize
    x = normalize(data.X_test[:n], meta)
    return x if t is None else np.ascontiguousarray(x[:, :t])


def test_sequence_graph_native_op_dynamic_batch_and_time(tmp_path, loaded, arch):
    model, meta, data = loaded(arch)
    path = tmp_path / "model.onnx"
    onnx_float.export_sequence(model, path)
    import onnx
    m = onnx.load(str(path))
    ops = onnx_quant.op_counts(m)
    assert ops[arch.upper()] == model.spec.num_layers  # one native op per layer
    assert "Loop" not in ops and "Scan" not in ops
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no external .data file
    sess = onnx_session.session(path)
    for n, t in ((1, 24), (5, 24), (3, 7)):
        x = _x(meta, data, n, t)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = sess.run(["scores"], {"x": x})[0]
        assert got.shape == (n, model.spec.num_classes)
        assert np.max(np.abs(got - want)) < 1e-5


def test_step_graph_streams_equal_whole_sequence(tmp_path, loaded, arch):
    model, meta, data = loaded(arch)
    onnx_float.export_sequence(model, tmp_path / "model.onnx")
    info = onnx_float.export_step(model, tmp_path / "model_step.onnx")
    state = info["state"]
    assert state["mode"] == "explicit"
    per_layer = 2 if arch == "lstm" else 1
    assert len(state["inputs"]) == len(state["outputs"]) == per_layer * model.spec.num_layers
    step = onnx_session.session(tmp_path / "model_step.onnx")
    assert [i.name for i in step.get_inputs()] == ["frame", *state["inputs"]]
    assert [o.name for o in step.get_outputs()] == ["scores", *state["outputs"]]
    whole = onnx_session.session(tmp_path / "model.onnx")
    x = _x(meta, data, 4)
    per_step = onnx_session.stream_predictor(step, state)(x)
    for t in (1, 5, 13, x.shape[1]):  # every prefix is a whole sequence of its own
        prefix = whole.run(["scores"], {"x": np.ascontiguousarray(x[:, :t])})[0]
        assert np.max(np.abs(per_step[:, t - 1] - prefix)) <= 1e-5


def test_dynamic_quantization_reports_what_it_quantized(tmp_path, loaded, arch):
    model, meta, data = loaded(arch)
    onnx_float.export_sequence(model, tmp_path / "model.onnx")
    onnx_quant.quantize_dynamic_onnx(tmp_path / "model.onnx", tmp_path / "dyn.onnx")
    d = onnx_quant.describe_file(tmp_path / "dyn.onnx")
    if arch == "lstm":
        assert d["int8_ops"].get("com.microsoft::DynamicQuantizeLSTM", d["int8_ops"].get("DynamicQuantizeLSTM")) == 2
        assert "LSTM" not in d["float_ops"]
    else:  # onnxruntime has no dynamic GRU: it stays float, and the summary says so
        assert d["float_ops"]["GRU"] == 2
        assert "GRU x2" in d["summary"].split("float:")[1]
    x = _x(meta, data, 16)
    got = onnx_session.session(tmp_path / "dyn.onnx").run(["scores"], {"x": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9


def test_static_qdq_leaves_fused_rnn_float_but_quantizes_decomposed_step(tmp_path, loaded, arch):
    model, meta, data = loaded(arch)
    from export.verify import normalize
    x_train = normalize(data.X_train, meta)
    onnx_float.export_sequence(model, tmp_path / "model.onnx")
    onnx_quant.quantize_static_onnx(tmp_path / "model.onnx", tmp_path / "qdq.onnx", x_train[:64])
    fused = onnx_quant.describe_file(tmp_path / "qdq.onnx")
    assert fused["float_ops"][arch.upper()] == 2 and fused["int8_ops"] == {"Gemm": 1}

    onnx_decomposed.export_decomposed_step(model, tmp_path / "step.onnx")
    feeds = onnx_decomposed.step_calibration_feeds(model, x_train[:32])
    assert sum(len(f["frame"]) for f in feeds) == 32 * x_train.shape[1]
    onnx_quant.quantize_static_onnx(tmp_path / "step.onnx", tmp_path / "step_q.onnx", feeds)
    dec = onnx_quant.describe_file(tmp_path / "step_q.onnx")
    assert dec["int8_ops"]["MatMul"] == 2 * model.spec.num_layers
    assert dec["int8_ops"]["Sigmoid"] == (3 if arch == "lstm" else 3) * model.spec.num_layers
    assert set(dec["float_ops"]) == {"Tanh"}  # the only op without a QDQ rule
    assert "LSTM" not in onnx_quant.op_counts(__import__("onnx").load(str(tmp_path / "step_q.onnx")))
    if arch == "lstm":  # the cell-state path can be carried in int16 (what the pipeline does)
        c_path = onnx_decomposed.cell_state_tensors(tmp_path / "step.onnx")
        assert len(c_path) == 4 * model.spec.num_layers and "state_out_1" in c_path and "state_in_3" in c_path
        onnx_quant.quantize_static_onnx(tmp_path / "step.onnx", tmp_path / "step_q16.onnx", feeds, int16_tensors=c_path)
        import onnx
        from onnx import numpy_helper
        g = onnx.load(str(tmp_path / "step_q16.onnx")).graph
        zp = {i.name: numpy_helper.to_array(i).dtype for i in g.initializer}
        q_dtype = {n.input[0]: zp[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear"}
        inner = [t for t in c_path if not t.startswith("state_out_")]  # graph outputs keep their name
        assert inner and all(q_dtype[t] == np.int16 for t in inner)
        assert q_dtype["frame"] == np.uint8  # 8-bit activations are unsigned (onnx_quant.ACTIVATION_TYPE)


def test_decomposed_graphs_equal_pytorch(tmp_path, loaded, arch):
    model, meta, data = loaded(arch)
    x = _x(meta, data, 6)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    onnx_decomposed.export_decomposed_step(model, tmp_path / "step.onnx")
    state = onnx_float.state_description(model.spec)
    got = onnx_session.stream_predictor(onnx_session.session(tmp_path / "step.onnx"), state)(x)[:, -1]
    assert np.max(np.abs(got - want)) <= 1e-5
    onnx_decomposed.export_unrolled(model, tmp_path / "unrolled.onnx", x.shape[1])
    got = onnx_session.session(tmp_path / "unrolled.onnx").run(["scores"], {"x": x})[0]
    assert np.max(np.abs(got - want)) <= 1e-5


def test_verify_judges_by_precision(loaded):
    model, meta, data = loaded("gru")
    ref = reference_for(model, meta, data)
    exact = verify_predict(lambda x: ref.scores.copy(), "float32", ref)
    assert exact["status"] == "ok" and exact["accuracy"] == pytest.approx(ref.accuracy)
    noisy = verify_predict(lambda x: ref.scores + 1e-3, "float32", ref)
    assert noisy["status"] == "out-of-tolerance" and "max |error|" in noisy["error"]
    # int8 is judged on decisions and on the scores' relative size: the same small offset is fine,
    # shuffled decisions are not, nor (audit) a shift or a rescale that keeps every decision
    assert verify_predict(lambda x: ref.scores + 1e-3, "int8", ref)["status"] == "ok"
    shuffled = verify_predict(lambda x: np.roll(ref.scores, 1, axis=0), "int8", ref)
    assert shuffled["status"] == "out-of-tolerance" and "top-1" in shuffled["error"]
    span = float(ref.scores.max() - ref.scores.min())
    for precision in ("int8", "int16x8", "dynamic-range"):
        for name, wrong in (("shift", ref.scores + 0.1 * span), ("scale", 3 * ref.scores), ("shrink", 0.05 * ref.scores)):
            r = verify_predict(lambda x, wrong=wrong: wrong, precision, ref)
            assert r["status"] == "out-of-tolerance" and "score error" in r["error"], (precision, name, r["error"])
            assert r["metrics"]["top1_agreement"] == 1.0  # decisions alone would have passed it
    status, error = judge({"max_abs_err": 0.0, "top1_agreement": 1.0, "stream_vs_own_sequence_max_abs": 2e-5}, "float32")
    assert status == "out-of-tolerance" and "whole-sequence graph" in error
    status, error = judge({"max_abs_err": 0.0, "top1_agreement": 1.0, "stream_vs_sequence_max_abs": 2e-4}, "float32")
    assert status == "out-of-tolerance" and "PyTorch" in error


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_8bit_files_run_without_saturation_on_this_cpu(tmp_path, kind):
    """ONNX Runtime must compute our 8-bit files exactly on THIS CPU: a MatMul whose inputs and weights
    sit at the top of their ranges equals onnx.reference's evaluation of the same quantized file (QDQ:
    within one output LSB; dynamic, whose output is float: to float rounding). With ONNX Runtime's
    default full-range int8 weights an x86 CPU without VNNI sums pairs of uint8 x int8 products in
    int16 (VPMADDUBSW), which saturates: on an AVX2 box the static file was 91 LSBs off."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    k, n = 64, 8
    w = rng.uniform(0.5, 1.0, (k, n)).astype(np.float32)  # same-sign weights: products pile up
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(w, "w")])
    src, dst = tmp_path / "mm.onnx", tmp_path / "mm_q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(src))
    if kind == "static":
        calib = np.concatenate([rng.uniform(0, 1, (31, k)), np.ones((1, k))]).astype(np.float32)
        onnx_quant.quantize_static_onnx(src, dst, [{"x": calib}])
    else:
        onnx_quant.quantize_dynamic_onnx(src, dst)
    q = onnx.load(str(dst))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    w_q = next(a for a in inits.values() if a.shape == (k, n))
    if kind == "static":
        assert w_q.dtype == np.uint8 and inits["x_zero_point"].dtype == np.uint8  # U8U8
        tol = float(inits["y_scale"]) * 1.01  # one output LSB
    else:
        assert w_q.dtype == np.int8 and np.abs(w_q.astype(int)).max() <= 64  # 7-bit weights (reduce_range)
        tol = 1e-5 * float(np.abs(w).sum(0).max())  # float rounding of the dequantized result
    x = np.ones((4, k), np.float32)  # every activation at the top of its range
    got = onnx_session.session(dst).run(["y"], {"x": x})[0]
    want = ReferenceEvaluator(q).run(None, {"x": x})[0]
    assert np.max(np.abs(got - want)) <= tol, (np.max(np.abs(got - want)), tol)
