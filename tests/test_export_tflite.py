"""TFLite export: exact Keras rebuild, fused LSTM, GRU forms, int8 in LiteRT and TFLite Micro,
streaming == whole sequence, state reset, and a converter that crashes.

Conversions are slow (seconds each), so each architecture is exported once per session with the
artifacts the default tests need; the whole matrix runs under ``-m slow``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export import tflite_export
from export.keras_rebuild import (keras_gru_to_torch, keras_lstm_to_torch, keras_to_torch_weights,
                                  torch_gru_to_keras, torch_lstm_to_keras, torch_to_keras_weights)
from runtime.errors import MissingDependency, UserError
from training.models import ModelSpec, SequenceModel

torch.set_num_threads(1)

DEFAULT_ONLY = {
    "lstm": ["tflite-float32", "tflite-int8", "tflite-float32-step"],
    # float16 is there to be crashed on purpose (fault injection), the others must survive it
    "gru": ["tflite-float32", "tflite-float16", "tflite-int8", "tflite-float32-step"],
}
CRASH = {"lstm": (), "gru": ("tflite-float16",)}


def _load(run):
    from training.checkpoint import load_model
    from training.data import load_task
    model, meta = load_model(run)
    return model, meta, load_task("fixture")


@pytest.fixture(scope="session")
def tflite_export_of(fixture_run, tmp_path_factory):
    """``tflite_export_of(arch)`` -> (records by name, out folder, model, meta, data, stderr text)."""
    cache: dict = {}

    def get(arch: str):
        if arch not in cache:
            import contextlib
            import io
            model, meta, data = _load(fixture_run(arch))
            out = tmp_path_factory.mktemp(f"tflite-{arch}")
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                recs = tflite_export.export_tflite(model, meta, data, out, progress=False, only=DEFAULT_ONLY[arch],
                                                   inject_crash=CRASH[arch])
            cache[arch] = ({r["name"]: r for r in recs}, out, model, meta, data, err.getvalue())
        return cache[arch]
    return get


def _normalized_test(meta, data, n=None):
    mean, std = np.asarray(meta["input_mean"], np.float32), np.asarray(meta["input_std"], np.float32)
    x = ((data.X_test - mean) / std).astype(np.float32)
    return x[:n] if n else x


# -- pure weight mapping (no TensorFlow) -----------------------------------------------------
@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_weight_mapping_roundtrip_with_uneven_layers(arch):
    torch.manual_seed(1)
    spec = ModelSpec(arch, 5, (12, 7), 4)
    m = SequenceModel(spec)
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    w = torch_to_keras_weights(arch, sd)
    g = 4 if arch == "lstm" else 3
    assert [a.shape for a in w["rnn"][1][:2]] == [(12, g * 7), (7, g * 7)]
    back = keras_to_torch_weights(arch, w)
    m2 = SequenceModel(spec)
    m2.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()})
    x = torch.randn(2, 9, 5)
    with torch.no_grad():
        assert torch.allclose(m(x), m2(x), atol=1e-6)
    if arch == "lstm":  # one Keras bias = b_ih + b_hh; importing puts it all in b_ih
        assert np.allclose(back["layers.0.bias_ih_l0"], sd["layers.0.bias_ih_l0"] + sd["layers.0.bias_hh_l0"])
        assert not back["layers.0.bias_hh_l0"].any()
    else:  # Keras z,r,h: its first block is PyTorch's second (z)
        H = 12
        assert np.array_equal(w["rnn"][0][0][:, :H], sd["layers.0.weight_ih_l0"][H:2 * H].T)
        assert np.array_equal(w["rnn"][0][2][1, :H], sd["layers.0.bias_hh_l0"][H:2 * H])
        for k in sd:
            assert np.array_equal(back[k], sd[k]), k


def test_single_layer_mappings_invert():
    rng = np.random.default_rng(0)
    w = [rng.standard_normal(s).astype(np.float32) for s in ((12, 5), (12, 3), (12,), (12,))]
    for fwd, inv in ((torch_lstm_to_keras, keras_lstm_to_torch), (torch_gru_to_keras, keras_gru_to_torch)):
        if fwd is torch_gru_to_keras:
            w = [rng.standard_normal(s).astype(np.float32) for s in ((9, 5), (9, 3), (9,), (9,))]
        back = inv(*fwd(*w))
        assert np.array_equal(back[0], w[0]) and np.array_equal(back[1], w[1])
        assert np.allclose(back[2] + back[3], w[2] + w[3])
    with pytest.raises(UserError, match="reset_after=True"):
        keras_gru_to_torch(np.zeros((5, 9)), np.zeros((3, 9)), np.zeros(9))


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_keras_rebuild_matches_torch(arch):
    """The tf_keras graphs (whole-sequence and step) give PyTorch's scores to float precision."""
    from export.keras_rebuild import build_keras_model
    torch.manual_seed(2)
    spec = ModelSpec(arch, 4, (10, 6), 3)
    m = SequenceModel(spec).eval()
    w = torch_to_keras_weights(arch, {k: v.detach().numpy() for k, v in m.state_dict().items()})
    x = torch.randn(3, 15, 4)
    with torch.no_grad():
        ref, ref_stream = m(x).numpy(), m.stream(x[:1]).numpy()[0]
    km = build_keras_model(arch, w, seq_len=15, input_size=4, batch_size=None)
    assert np.max(np.abs(km(x.numpy()).numpy() - ref)) < 1e-5
    step = build_keras_model(arch, w, seq_len=None, input_size=4, kind="step")
    if arch == "gru":  # explicit state round trip through Keras
        state = [np.zeros((1, h), np.float32) for h in spec.hidden_sizes]
        outs = []
        for t in range(15):
            r = step([x[:1, t].numpy(), *state])
            outs.append(r[0].numpy()[0])
            state = [a.numpy() for a in r[1:]]
        assert np.max(np.abs(np.stack(outs) - ref_stream)) < 1e-5
    else:  # Keras forgets between calls; one frame from a zero state is the stream's first step
        assert np.max(np.abs(step(x[:1, 0].numpy()).numpy()[0] - ref_stream[0])) < 1e-5


# -- converted artifacts ---------------------------------------------------------------------
def test_lstm_every_artifact_is_fused_and_float_matches_torch(tflite_export_of):
    recs, out, model, *_ = tflite_export_of("lstm")
    layers = model.spec.num_layers
    for name in DEFAULT_ONLY["lstm"]:
        r = recs[name]
        assert r["status"] == "ok", (name, r["error"])
        assert (out / r["file"]).is_file() and r["size_bytes"] == (out / r["file"]).stat().st_size
        assert r["ops"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == layers, r["ops"]
        assert "WHILE" not in r["ops"]
        assert r["state"]["mode"] == "variables"
    from export.tflite_inspect import lstm_cell_clips, op_counts
    assert op_counts(out / "model_int8.tflite")[0]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == layers  # read back independently
    assert lstm_cell_clips(out / "model_float32.tflite") == [0.0] * layers  # the converter's clip of 10 is cleared
    assert recs["tflite-float32"]["metrics"]["max_abs_err"] < 1e-4
    assert recs["tflite-float32"]["accuracy"] == pytest.approx(recs["tflite-float32"]["metrics"]["reference_accuracy"])


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_int8_io_quant_and_tflite_micro(tflite_export_of, arch):
    recs, out, *_ = tflite_export_of(arch)
    r = recs["tflite-int8"]
    assert r["status"] == "ok", r["error"]
    for t in (r["inputs"][0], r["outputs"][0]):
        assert t["dtype"] == "int8" and t["quant"]["scale"] > 0 and -128 <= t["quant"]["zero_point"] <= 127
    assert r["metrics"]["top1_agreement"] >= 0.95
    m = recs["tflm-int8"]
    assert m["runtime"] == "tflm" and m["file"] == r["file"] and m["status"] == "ok", m["error"]
    assert 0 < m["arena_bytes"] < 4 << 20 and m["arena_bytes"] >= m["arena_recorded_bytes"]
    assert 0 <= m["metrics"]["max_lsb_vs_litert"] <= 8  # TFLM's integer kernels are not LiteRT's: a few LSB
    # the arena found really runs the model in TFLite Micro, and a quarter of it does not
    from export.tflite_run import tflm_arena_fits
    assert tflm_arena_fits(out / r["file"], m["arena_bytes"])
    assert not tflm_arena_fits(out / r["file"], m["arena_bytes"] // 4)


def test_gru_forms(tflite_export_of):
    recs, *_ = tflite_export_of("gru")
    f32, i8, step = recs["tflite-float32"], recs["tflite-int8"], recs["tflite-float32-step"]
    assert f32["status"] == "ok" and f32["ops"].get("WHILE") == 2 and f32["form"] == "WHILE loop over time"
    assert f32["metrics"]["max_abs_err"] < 1e-4
    assert "WHILE" not in i8["ops"] and i8["op_count"] > 10 * f32["op_count"] and i8["form"] == "unrolled over the window"
    assert step["state"]["mode"] == "explicit" and step["state"]["inputs"] == ["state_in_0", "state_in_1"]
    assert {t["name"] for t in step["inputs"]} == {"x", "state_in_0", "state_in_1"}
    assert "WHILE" not in step["ops"]


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_streaming_equals_whole_sequence(tflite_export_of, arch):
    """Recomputed here: the step graph fed frame by frame ends where the whole-sequence graph does."""
    from export.tflite_run import LiteRTModel
    recs, out, model, meta, data, _ = tflite_export_of(arch)
    x = _normalized_test(meta, data, 16)
    whole = LiteRTModel(out / recs["tflite-float32"]["file"]).run_sequences(x)
    streamed = LiteRTModel(out / recs["tflite-float32-step"]["file"]).stream(x)
    assert np.max(np.abs(streamed[:, -1] - whole)) <= 1e-5
    with torch.no_grad():
        ref = model.stream(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(streamed - ref)) < 1e-4  # every step, against PyTorch's own streaming
    m = recs["tflite-float32-step"]["metrics"]
    assert m["stream_vs_sequence_max_abs"] <= 1e-5 and m["stream_vs_tflite_sequence_max_abs"] <= 1e-5


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_state_reset(tflite_export_of, arch):
    """State carries across invoke() until reset: the reset gives a fresh sequence its fresh scores."""
    from export.tflite_run import LiteRTModel
    recs, out, _, meta, data, _ = tflite_export_of(arch)
    r = recs["tflite-float32-step"]
    assert r["reset_check"] == {"carry_over_changes_scores": True, "reset_restores_fresh_state": True}
    m = LiteRTModel(out / r["file"])
    a, b = _normalized_test(meta, data, 2)
    fresh = m.stream(b[None])[0, -1]
    ins, outs = m.state_names()
    state = m.reset_state()
    for frame in np.concatenate([a, b]):  # a then b with no reset in between
        m.set("x", frame[None])
        for n in ins:
            m.set(n, state[n])
        m.it.invoke()
        state = {i: m.get(o) for i, o in zip(ins, outs)}
    assert np.max(np.abs(m.get("scores")[0] - fresh)) > 1e-4
    m.reset_state()
    assert np.array_equal(m.stream(b[None])[0, -1], fresh)
    if arch == "lstm":  # the whole-sequence graph keeps its variables too: without a reset it drifts
        s = LiteRTModel(out / recs["tflite-float32"]["file"])
        first = s.run_sequences(b[None])[0]
        s.set("x", b[None])
        s.it.invoke()  # second run, no reset
        assert np.max(np.abs(s.get("scores")[0] - first)) > 1e-4


def test_converter_crash_is_one_line_and_others_survive(tflite_export_of):
    recs, out, *_, err = tflite_export_of("gru")
    r = recs["tflite-float16"]
    assert r["status"] == "failed" and r["file"] is None and not (out / "model_float16.tflite").exists()
    assert "crashed (SIGABRT)" in r["error"] and "tflite-float16" in r["error"] and "\n" not in r["error"]
    lines = [ln for ln in err.splitlines() if "tflite-float16" in ln]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for name in ("tflite-int8", "tflite-float32-step"):  # converted after the crash, by a fresh worker
        assert recs[name]["status"] == "ok" and (out / recs[name]["file"]).is_file()


# -- bad input -----------------------------------------------------------------------------
def _tiny():
    model = SequenceModel(ModelSpec("gru", 3, (4,), 2)).eval()
    return model, {"input_mean": [0.0] * 3, "input_std": [1.0] * 3}


def test_missing_tensorflow_names_the_install(monkeypatch, tmp_path):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    model, meta = _tiny()
    with pytest.raises(MissingDependency, match=r"pip install tensorflow==2\.21\.0"):
        tflite_export.export_tflite(model, meta, None, tmp_path, progress=False)


def test_unwritable_output_and_unknown_artifact(tmp_path):
    from training.data import load_task
    model, meta = _tiny()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create output folder"):
        tflite_export.export_tflite(model, meta, None, blocker / "out", progress=False)
    with pytest.raises(UserError, match="unknown TFLite artifact"):
        tflite_export.export_tflite(model, meta, load_task("fixture"), tmp_path / "o", progress=False, only=["tflite-int4"])


# -- the whole matrix ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_full_matrix(fixture_run, tmp_path, arch):
    model, meta, data = _load(fixture_run(arch))
    recs = {r["name"]: r for r in tflite_export.export_tflite(model, meta, data, tmp_path, progress=False)}
    assert set(recs) >= {j.name for j in tflite_export.plan(arch)}
    for name, r in recs.items():
        if name == "tflite-int16x8" and arch == "lstm":  # the converter has no 16x8 fused LSTM
            assert r["status"] == "unsupported" and "16x8" in r["error"] and "UNIDIRECTIONAL_SEQUENCE_LSTM" in r["error"]
            continue
        assert r["status"] == "ok", (name, r["error"])
        if arch == "lstm":
            assert r["ops"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == model.spec.num_layers
    if arch == "lstm":
        assert recs["tflm-int8-step"]["arena_bytes"] > 0
    assert recs["tflite-float16"]["metrics"]["max_abs_err"] < 5e-2


def test_float_outputs_of_the_int8_step_graph_record_their_int8_step(fixture_artifacts):
    """The GRU's int8 step graph has float scores (a DEQUANTIZE at the edge); the manifest records
    the int8 tensor behind them (``dequantized_from``), which parity counts LSBs in. Checked against
    what the graph computes: every score LiteRT returns is (q - zero_point) * scale for an int8 q."""
    from ai_edge_litert.interpreter import Interpreter

    from runtime.manifest import Manifest
    folder = fixture_artifacts("gru")
    man = Manifest.read(folder)
    step = man.by_name("tflite-int8-step")
    scores = next(o for o in step["outputs"] if o["name"] == "scores")
    d = scores["dequantized_from"]
    assert scores["quant"] is None and d["dtype"] == "int8" and d["scale"] > 0 and -128 <= d["zero_point"] <= 127
    assert all(o["dequantized_from"]["scale"] > 0 for o in step["outputs"])  # the state outputs too
    assert not any("dequantized_from" in o for o in man.by_name("tflite-float32-step")["outputs"])
    it = Interpreter(model_path=str(man.verified(step)), num_threads=1)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(20):
        for det in it.get_input_details():
            it.set_tensor(det["index"], rng.normal(0, 1, det["shape"]).astype(np.float32))
        it.invoke()
        out = next(o for o in it.get_output_details() if o["name"] == scores["tensor"])
        seen.append(it.get_tensor(out["index"]).ravel())
    q = np.concatenate(seen) / d["scale"] + d["zero_point"]
    assert np.allclose(q, np.rint(q), atol=1e-3) and q.min() >= -128.5 and q.max() <= 127.5
    levels = np.unique(np.rint(q))
    assert len(levels) > 5  # not a constant output that any scale would fit
    assert 1 in np.diff(levels)  # a step of one: not a multiple of the real scale (half of it fits the rest)
