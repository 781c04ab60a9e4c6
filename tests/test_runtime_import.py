"""``import runtime`` needs numpy only: torch and tensorflow blocked, then a real model runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BLOCKER = """
import sys
BLOCKED = {"torch", "tensorflow", "tf_keras", "keras", "ai_edge_litert", "tflite_runtime", "tflite_micro"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> dict:
    p = subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_import_without_torch_and_tensorflow():
    r = run("""
import json, resource, time
import numpy
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
import runtime, runtime.apps.check, runtime.detect, runtime.features
dt = time.perf_counter() - t0
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "rss_numpy_kb": rss0, "rss_kb": rss1,
                  "heavy": sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)}))
""")
    assert r["heavy"] == []
    assert r["seconds"] < 2.0, r  # ~0.02 s measured on an idle box
    assert r["rss_kb"] - r["rss_numpy_kb"] < 20_000, r  # the runtime itself adds ~1 MB


def test_onnx_model_runs_without_torch_and_tensorflow(fixture_artifacts):
    folder = fixture_artifacts("gru")
    r = run(f"""
import json, numpy as np, runtime
m = runtime.load({str(folder)!r})
g = np.load({str(folder / 'golden.npz')!r})
err = float(np.abs(m.predict(g['x_raw']) - g['scores']).max())
s = float(np.abs(m.stream().run(g['x_raw']) - g['stream_scores']).max())
try:
    runtime.load({str(folder)!r}, backend='torch')
    ref = 'loaded'
except runtime.MissingDependency as e:
    ref = str(e)
print(json.dumps({{"backend": m.backend, "err": err, "stream_err": s, "ref": ref,
                  "heavy": sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)}}))
""")
    assert r["backend"] == "onnxruntime" and r["err"] < 1e-4 and r["stream_err"] < 1e-4
    assert r["heavy"] == []
    assert "PyTorch is not installed: run `pip install -e '.[train]'`" in r["ref"]
