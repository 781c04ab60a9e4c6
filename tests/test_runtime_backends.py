"""Every runtime backend installable here against the PyTorch reference, on real exported artifacts.

For each backend and architecture: every artifact the manifest lists for that backend is loaded
through ``runtime.load`` and judged against the float PyTorch model (``backend="torch"``, run live
from the checkpoint) with the project's tolerance policy; streaming equals whole-sequence
prediction; state is reset between independent sequences and carried within a stream.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import runtime
from runtime.apps.check import judge
from runtime.backends import backend_class
from runtime.errors import MissingDependency
from runtime.metrics import compare

BACKENDS = ("onnxruntime", "litert", "tflm", "c")


def installed(name: str) -> bool:
    try:
        return backend_class(name).available()
    except MissingDependency:
        return False


@pytest.fixture(scope="module")
def reference(fixture_artifacts):
    """``reference(arch)`` -> (folder, golden dict, torch scores [N,K], torch stream scores [N,T,K])."""
    cache = {}

    def get(arch):
        if arch not in cache:
            folder = fixture_artifacts(arch)
            golden = dict(np.load(folder / "golden.npz"))
            ref = runtime.load(folder, backend="torch")
            cache[arch] = folder, golden, ref.predict(golden["x_raw"]), ref.stream().run(golden["x_raw"])
        return cache[arch]
    return get


def entries(folder, backend):
    man = runtime.model.Manifest.read(folder)
    return [a for a in man.artifacts if a.get("runtime") == backend and a.get("status", "ok") == "ok"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_pytorch_reference(backend, arch, reference):
    if not installed(backend):
        pytest.skip(f"{backend} not installed here")
    folder, golden, ref_scores, ref_stream = reference(arch)
    found = entries(folder, backend)
    if not found:
        pytest.skip(f"the exporter produced no {backend} artifact for {arch}")
    for entry in found:
        model = runtime.load(folder, artifact=entry["name"])
        assert model.backend == backend and model.precision == entry["precision"]
        if entry.get("kind") == "step":
            scores = model.stream().run(golden["x_raw"])[:, -1]
        else:
            scores = model.predict(golden["x_raw"])
        assert scores.dtype == np.float32 and scores.shape == ref_scores.shape
        metrics = compare(scores, ref_scores, golden["y"])
        assert not judge(metrics, entry["precision"], rows=len(scores)), (entry["name"], metrics)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_equals_predict_and_state_resets(backend, arch, reference):
    """Runtime behaviour, whatever the export's numeric verdict: out-of-tolerance artifacts included."""
    if not installed(backend):
        pytest.skip(f"{backend} not installed here")
    folder, golden, ref_scores, ref_stream = reference(arch)
    man = runtime.model.Manifest.read(folder)
    usable = [a for a in man.artifacts if a.get("runtime") == backend and a.get("status") in ("ok", "out-of-tolerance")]
    if not usable:
        pytest.skip(f"the exporter produced no {backend} artifact for {arch}")
    x = golden["x_raw"][:3]
    for entry in usable:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = runtime.load(folder, artifact=entry["name"])
        float_model = entry["precision"] == "float32" and entry.get("status") == "ok"
        integer_io = entry["inputs"][0]["dtype"] in ("int8", "uint8", "int16")
        tol = 0.0 if integer_io else 1e-5  # float GEMMs may round differently for batch 3 vs 1
        if entry.get("kind", "sequence") == "sequence":
            # independent sequences: predicting b after a equals predicting b alone (state reset)
            a, b = x[:1], x[1:2]
            alone = model.predict(b)
            model.predict(a)
            np.testing.assert_array_equal(model.predict(b), alone)
            np.testing.assert_allclose(model.predict(x)[1:2], alone, atol=tol, rtol=0)
            if model.can_stream and float_model and model.step_graph.entry.get("status") == "ok":
                np.testing.assert_allclose(model.stream().run(x)[:, -1], model.predict(x), atol=1e-5)  # stream == predict
            continue
        per_step = model.stream().run(x)  # [N, T, K], batch of 3 streamed together
        assert per_step.shape == (3, x.shape[1], model.classes)
        if float_model:
            np.testing.assert_allclose(per_step, ref_stream[:3], atol=1e-4)  # every step == torch.step
            np.testing.assert_allclose(model.predict(x), per_step[:, -1], atol=1e-6)  # predict by stepping
        # within a stream the state is carried; reset() starts over
        b = x[1]
        s = model.stream()
        fresh = np.stack([s.step(f) for f in b])
        carried = np.stack([s.step(f) for f in b])  # same frames again, state not reset
        assert not np.allclose(carried[0], fresh[0]), "state was not carried within the stream"
        s.reset()
        np.testing.assert_array_equal(np.stack([s.step(f) for f in b]), fresh)
        # two interleaved streams do not share state, and each equals its row of the batched stream
        s1, s2 = model.stream(), model.stream()
        for t in range(x.shape[1]):
            y1, y2 = s1.step(x[0, t]), s2.step(x[2, t])
        np.testing.assert_allclose(y1, per_step[0, -1], atol=tol, rtol=0)
        np.testing.assert_allclose(y2, per_step[2, -1], atol=tol, rtol=0)


@pytest.mark.slow
def test_litert_falls_back_to_tensorflow_lite(fixture_artifacts):
    """With ai_edge_litert unimportable, the LiteRT backend runs the same file through tensorflow.lite."""
    import json
    import subprocess
    import sys
    pytest.importorskip("tensorflow")
    for arch in ("lstm", "gru"):
        folder = fixture_artifacts(arch)
        names = [e["name"] for e in entries(folder, "litert") if e.get("kind") == "sequence"]
        if names:
            break
    else:
        pytest.skip("no litert sequence artifact exported")
    code = f"""
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'ai_edge_litert':
            raise ImportError(name)
sys.meta_path.insert(0, Block())
import numpy as np, runtime
m = runtime.load({str(folder)!r}, artifact={names[0]!r})
g = np.load({str(folder / 'golden.npz')!r})
print(json.dumps({{"source": m.sequence_graph.backend.describe(), "scores": m.predict(g['x_raw']).tolist()}}))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["source"] == "litert (tensorflow.lite)"
    direct = runtime.load(folder, artifact=names[0]).predict(np.load(folder / "golden.npz")["x_raw"])
    np.testing.assert_allclose(np.array(r["scores"], np.float32), direct, atol=1e-6)



def test_litert_reference_kernels_option(fixture_artifacts):
    """``reference_kernels=True`` runs TFLite's reference kernels, a second implementation of the same
    int8 file: on the unrolled GRU (fully-connected ops, which the default interpreter hands to XNNPACK)
    they round differently, by a few LSBs, and stay within the int8 tolerance of the PyTorch model.
    Used to tell whose rounding a TFLite Micro vs LiteRT difference is (runtime/tolerances.py)."""
    if not installed("litert"):
        pytest.skip("LiteRT is not installed")
    from runtime.metrics import lsb_per_row
    folder = fixture_artifacts("gru")
    golden = dict(np.load(folder / "golden.npz"))
    default = runtime.load(folder, backend="litert", artifact="tflite-int8").predict(golden["x"])
    ref = runtime.load(folder, backend="litert", artifact="tflite-int8", reference_kernels=True).predict(golden["x"])
    from runtime.manifest import Manifest
    scale = Manifest.read(folder).by_name("tflite-int8")["outputs"][0]["quant"]["scale"]
    lsb = lsb_per_row(default, ref, scale)
    assert 0 < lsb.max() <= 16, lsb  # really another kernel, and only rounding apart
    torch_scores = runtime.load(folder, backend="torch").predict(golden["x"])
    m = compare(ref, torch_scores)
    assert not judge(m, "int8", rows=len(ref)), judge(m, "int8", rows=len(ref))
