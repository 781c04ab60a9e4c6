"""Keras models in (training/keras_import.py, `python -m export --keras`).

Acceptance: the classic Keras example ``LSTM(128, return_sequences) -> LSTM(64) -> Dense(10,
softmax)`` with random weights, saved by Keras, is imported, matches Keras' own predictions,
exports, passes `python -m parity` (int8 C on Cortex-M4 under QEMU included) and gets a Cortex-M4
flash/RAM/instruction report. Plus the refusals, one line naming the layer and the option.

Keras runs only in child processes (TensorFlow never loads into pytest's process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
                CUDA_VISIBLE_DEVICES="")


def _python(code: str, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run([PY, "-c", textwrap.dedent(code)], env=_env(), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# Builds the models with Keras in a child, saves them, and stores Keras' own outputs on fixed
# inputs next to them (an independent check of the import's own comparison).
BUILD = r'''
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
out = sys.argv[1] if len(sys.argv) > 1 else "."
x = np.random.default_rng(123).standard_normal((64, 10, 10)).astype("float32")
np.save(f"{out}/x.npy", x)
import tf_keras as k
k.utils.set_random_seed(0)
L = k.layers
m = k.Sequential([L.LSTM(128, return_sequences=True, input_shape=(10, 10)), L.LSTM(64), L.Dense(10, activation="softmax")])
m.save(f"{out}/classic.keras")
np.save(f"{out}/classic_probs.npy", m.predict(x, verbose=0))
g = k.Sequential([L.GRU(16, return_sequences=True, use_bias=False, input_shape=(10, 10)), L.Dropout(0.2), L.GRU(8),
                  L.Dense(5), L.Activation("softmax")])
g.save(f"{out}/gru.h5")
np.save(f"{out}/gru_probs.npy", g.predict(x, verbose=0))
# stateful, batch size 1 (audit: the import ran Keras on a batch of 512 and crashed): Keras' own
# outputs window by window, each from a reset state
s = k.Sequential([L.GRU(6, stateful=True, return_sequences=True, batch_input_shape=(1, 10, 10)), L.GRU(4, stateful=True),
                  L.Dense(3, activation="softmax")])
s.save(f"{out}/stateful.keras")
probs = []
for w in x:
    s.reset_states()
    probs.append(s.predict(w[None], verbose=0))
np.save(f"{out}/stateful_probs.npy", np.concatenate(probs))
import keras as k3  # Keras 3, its own .keras format
k3.utils.set_random_seed(1)
m3 = k3.Sequential([k3.Input((10, 10)), k3.layers.LSTM(12, return_sequences=True), k3.layers.LSTM(6), k3.layers.Dense(3)])
m3.save(f"{out}/k3.keras")
np.save(f"{out}/k3_probs.npy", np.asarray(m3(x)))
'''


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras-models")
    proc = subprocess.run([PY, "-c", BUILD, str(d)], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return d


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("name,softmax,hidden,arch", [
    ("classic.keras", True, (128, 64), "lstm"),
    ("gru.h5", True, (16, 8), "gru"),        # tf_keras .h5, use_bias=False, Dropout, softmax as a layer
    ("k3.keras", False, (12, 6), "lstm"),    # Keras 3 file, linear head
    ("stateful.keras", True, (6, 4), "gru"),  # stateful=True, batch size 1: each window from a zero state
])
def test_import_matches_keras(keras_models, tmp_path, name, softmax, hidden, arch):
    import torch
    from training.checkpoint import load_model
    from training.keras_import import import_keras
    meta = import_keras(keras_models / name, tmp_path / "model.safetensors")
    model, meta2 = load_model(tmp_path / "model.safetensors")
    assert meta2 == json.loads(json.dumps(meta))
    assert model.spec.arch == arch and model.spec.hidden_sizes == hidden
    assert meta["task"] == "keras" and meta["class_names"][0] == "c0" and meta["seq_len"] == 10
    assert meta["input_mean"] == [0.0] * 10 and meta["input_std"] == [1.0] * 10
    assert meta["keras"]["final_activation"] == ("softmax" if softmax else "linear")
    assert meta["keras"]["check"]["logits_max_abs_vs_keras"] < 1e-5
    x = np.load(keras_models / "x.npy")
    keras_out = np.load(keras_models / name.replace(".keras", "_probs.npy").replace(".h5", "_probs.npy"))
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    ours = _softmax(logits) if softmax else logits
    assert np.max(np.abs(ours - keras_out)) < 1e-5
    assert np.array_equal(logits.argmax(-1), keras_out.argmax(-1))


def test_classic_export_parity_and_cortex_m4(keras_models, tmp_path):
    """`python -m export --keras` (ONNX + C) -> `python -m parity` -> Cortex-M4 int8 report."""
    work = tmp_path
    proc = subprocess.run([PY, "-m", "export", "--keras", str(keras_models / "classic.keras"), "--kinds", "onnx,c",
                           "--out", "art", "--no-progress"], cwd=work, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert "imported" in proc.stdout and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    man = json.loads((work / "art" / "manifest.json").read_text())
    assert man["task"] == "keras" and man["model"]["hidden_sizes"] == [128, 64]
    assert man["data"]["synthetic"] is True and "argmax" in man["data"]["labels"]
    recs = {r["name"]: r for r in man["artifacts"]}
    for name in ("onnx-float32", "c-float32", "c-int8"):
        assert recs[name]["status"] == "ok", recs[name]
    # The int8 C model agrees with the float model on the synthetic windows' decisions.
    assert recs["c-int8"]["metrics"]["top1_agreement"] >= 0.95

    par = subprocess.run([PY, "-m", "parity", "art", "--quiet", "--no-plots", "--out", "par"], cwd=work, env=_env(),
                         capture_output=True, text=True, timeout=600)
    print(par.stdout[-6000:])
    assert par.returncode == 0, par.stdout[-3000:] + par.stderr[-3000:]
    cells = {c["id"]: c for m in json.loads((work / "par" / "parity.json").read_text())["matrices"] for c in m["cells"]}
    for cid in ("lstm-float32-onnxruntime", "lstm-float32-c", "lstm-int8-c", "lstm-int8-cortex-m4"):
        assert cells[cid]["status"] == "pass", cells[cid]

    fw = subprocess.run([PY, "-c", "from devices.cortex_m.report import firmware; import json; "
                         "print(firmware(target='cortex-m4', artifacts='art', precision='int8', as_json=True))"],
                        cwd=work, env=_env(), capture_output=True, text=True, timeout=300)
    assert fw.returncode == 0, fw.stderr[-3000:]
    r = json.loads(fw.stdout)
    print(json.dumps({k: r[k] for k in ("model", "target", "flash", "ram", "instructions")}, indent=1))
    assert r["flash"]["model_total"] > r["flash"]["weight_bytes"] >= 120448  # at least the int8 weights of 10->128->64->10
    assert 0 < r["ram"]["total"] < 64 * 1024
    assert r["instructions"]["per_inference"] > 1198080  # more than one instruction per MAC
    assert r["host_identical"] is True


@pytest.mark.slow
def test_classic_full_matrix(keras_models, tmp_path):
    """Every family (TFLite too) and every runtime of the parity matrix."""
    proc = subprocess.run([PY, "-m", "export", "--keras", str(keras_models / "classic.keras"), "--out", "art",
                           "--no-progress"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    par = subprocess.run([PY, "-m", "parity", "art", "--quiet", "--no-plots"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=900)
    print(par.stdout[-8000:])
    assert par.returncode == 0, par.stdout[-3000:] + par.stderr[-3000:]


# -- refusals --------------------------------------------------------------------------------------
REFUSALS = r'''
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
from training.keras_import import _Refused, _describe, _load_any
import tf_keras as k
L = k.layers
out = sys.argv[1]
cases = {
  "bidirectional": lambda: k.Sequential([L.Bidirectional(L.LSTM(4), input_shape=(10, 3)), L.Dense(2)]),
  "go_backwards": lambda: k.Sequential([L.LSTM(4, go_backwards=True, input_shape=(10, 3)), L.Dense(2)]),
  "stateful": lambda: k.Sequential([L.LSTM(4, stateful=True, batch_input_shape=(4, 10, 3)), L.Dense(2)]),
  "activation": lambda: k.Sequential([L.GRU(4, activation="relu", input_shape=(10, 3)), L.Dense(2)]),
  "recurrent_activation": lambda: k.Sequential([L.LSTM(4, recurrent_activation="hard_sigmoid", input_shape=(10, 3)), L.Dense(2)]),
  "reset_after": lambda: k.Sequential([L.GRU(4, reset_after=False, input_shape=(10, 3)), L.Dense(2)]),
  "return_sequences": lambda: k.Sequential([L.LSTM(4, return_sequences=True, input_shape=(10, 3)), L.Dense(2)]),
  "dense_not_final": lambda: k.Sequential([L.LSTM(4, input_shape=(10, 3)), L.Dense(8), L.Dense(2)]),
  "dense_activation": lambda: k.Sequential([L.LSTM(4, input_shape=(10, 3)), L.Dense(2, activation="relu")]),
  "rnn_wrapper": lambda: k.Sequential([L.RNN(L.LSTMCell(4), input_shape=(10, 3)), L.Dense(2)]),
  "conv": lambda: k.Sequential([L.Conv1D(4, 3, input_shape=(10, 3)), L.LSTM(4), L.Dense(2)]),
  "mixed": lambda: k.Sequential([L.LSTM(4, return_sequences=True, input_shape=(10, 3)), L.GRU(4), L.Dense(2)]),
  "one_output": lambda: k.Sequential([L.LSTM(4, input_shape=(10, 3)), L.Dense(1)]),
  "softmax_layer": lambda: k.Sequential([L.LSTM(4, input_shape=(10, 3)), L.Dense(3), L.Softmax()]),
}
res = {}
for name, build in cases.items():
    path = f"{out}/{name}.keras"
    build().save(path)
    try:
        _describe(_load_any(path)[0])
        res[name] = None
    except _Refused as e:
        res[name] = str(e)
# stateful with batch 1 is fine
k.Sequential([L.LSTM(4, stateful=True, batch_input_shape=(1, 10, 3)), L.Dense(2)]).save(f"{out}/stateful1.keras")
res["stateful_batch1"] = _describe(_load_any(f"{out}/stateful1.keras")[0])["arch"]
print("RESULT" + json.dumps(res))
'''

EXPECTED = {  # case -> (layer class named, option named)
    "bidirectional": ("Bidirectional", "Bidirectional"),
    "go_backwards": ("LSTM", "go_backwards"),
    "stateful": ("LSTM", "stateful=True with batch size 4"),
    "activation": ("GRU", "activation='relu'"),
    "recurrent_activation": ("LSTM", "recurrent_activation='hard_sigmoid'"),
    "reset_after": ("GRU", "reset_after=False"),
    "return_sequences": ("LSTM", "return_sequences=True"),
    "dense_not_final": ("Dense", "Dense layers other than the final one"),
    "dense_activation": ("Dense", "activation='relu'"),
    "rnn_wrapper": ("RNN", "LSTMCell"),
    "conv": ("Conv1D", "Conv1D is not supported"),
    "mixed": ("GRU", "mixes GRU with LSTM"),
    "one_output": ("Dense", "at least 2 classes"),  # audit: imported as a 1-class classifier, every check trivial
    "softmax_layer": ("Softmax", "activation='softmax'"),  # audit: said the final Dense was not final
}


def test_refusals_name_layer_and_option(tmp_path):
    proc = _python(REFUSALS.replace("sys.argv[1]", repr(str(tmp_path))))
    res = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert res.pop("stateful_batch1") == "lstm"
    for case, (layer, option) in EXPECTED.items():
        msg = res[case]
        assert msg is not None, f"{case} was not refused"
        assert "\n" not in msg and f"({layer})" in msg and option in msg, (case, msg)
        assert msg.startswith("Keras layer '"), msg


def test_a_file_with_code_is_refused_before_keras_loads_it(tmp_path):
    """Security audit: tf_keras rebuilt a Lambda layer's Python code from an .h5 (or an .h5 renamed
    .keras) and ran it while loading, before the layer checks refused the layer. The config is now
    read as JSON first and anything but the supported Keras classes is refused unloaded."""
    from training.keras_import import import_keras
    marker = tmp_path / "PWNED"
    _python(f"""
        import os, shutil; os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as k
        L = k.layers
        m = k.Sequential([L.GRU(4, input_shape=(10, 3)),
                          L.Lambda(lambda t: (__import__("pathlib").Path({str(marker)!r}).write_text("ran"), t)[1]),
                          L.Dense(2)])
        m.save("evil.h5")
        shutil.copy("evil.h5", "evil-h5-named.keras")
        k.Sequential([L.GRU(4, input_shape=(10, 3)), L.Dense(2)]).save("good.h5")
    """, cwd=tmp_path)
    marker.unlink(missing_ok=True)  # building the model in the child ran it once; loading must not
    for name, match in (("evil.h5", "names 'Lambda': refused before loading"),
                        ("evil-h5-named.keras", "not a Keras 3 / tf_keras .keras archive")):
        with pytest.raises(UserError, match=match) as e:
            import_keras(tmp_path / name, tmp_path / "ck" / "model.safetensors")
        assert "\n" not in str(e.value)
        assert not marker.exists(), f"{name}: the Lambda's code ran"
    # a plain model still imports
    meta = import_keras(tmp_path / "good.h5", tmp_path / "ck" / "model.safetensors")
    assert meta["keras"]["check"]["logits_max_abs_vs_keras"] < 1e-5


def test_weights_stored_outside_the_file_are_refused(tmp_path):
    """Security re-audit: an HDF5 dataset with external storage (an absolute path) made Keras read a
    host file into the weights, and the import carried it into the checkpoint and every export."""
    import h5py
    import zipfile
    from training.keras_import import import_keras
    _python("""
        import os; os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as k
        m = k.Sequential([k.layers.GRU(3, input_shape=(4, 2)), k.layers.Dense(2)])
        m.save("plain.h5"); m.save("plain.keras")
    """, cwd=tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"SECRET" * 100)

    def externalize(h5_file: Path) -> None:
        with h5py.File(h5_file, "r+") as f:
            names = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            shape, dtype = f[names[0]].shape, f[names[0]].dtype
            del f[names[0]]
            f.create_dataset(names[0], shape=shape, dtype=dtype, external=[(str(secret), 0, int(np.prod(shape)) * dtype.itemsize)])

    evil_h5 = tmp_path / "evil.h5"
    evil_h5.write_bytes((tmp_path / "plain.h5").read_bytes())
    externalize(evil_h5)
    weights = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(tmp_path / "plain.keras") as z:
        weights.write_bytes(z.read("model.weights.h5"))
        members = {n: z.read(n) for n in z.namelist()}
    externalize(weights)
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as z:
        for n, data in members.items():
            z.writestr(n, weights.read_bytes() if n == "model.weights.h5" else data)
    for name in ("evil.h5", "evil.keras"):
        with pytest.raises(UserError, match="takes its bytes from outside the file") as e:
            import_keras(tmp_path / name, tmp_path / "ck" / "model.safetensors")
        assert "\n" not in str(e.value)
    assert not (tmp_path / "ck" / "model.safetensors").exists()
    import_keras(tmp_path / "plain.keras", tmp_path / "ck" / "model.safetensors")  # the untouched model imports


def test_cli_refusal_is_one_error_line(tmp_path):
    """The whole path: child process -> UserError -> `error:` line, exit 2, no traceback, nothing written."""
    _python("""
        import os; os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as k
        k.Sequential([k.layers.Bidirectional(k.layers.GRU(4), input_shape=(10, 3)), k.layers.Dense(2)]).save("bi.keras")
    """, cwd=tmp_path)
    proc = subprocess.run([PY, "-m", "export", "--keras", "bi.keras", "--out", "art"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Bidirectional" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "art").exists() and not (tmp_path / "runs").exists()


def test_bad_files(tmp_path):
    from training.keras_import import import_keras
    with pytest.raises(UserError, match="no Keras model"):
        import_keras(tmp_path / "missing.keras", tmp_path / "m.safetensors")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(UserError, match="not a .keras or .h5"):
        import_keras(tmp_path / "w.txt", tmp_path / "m.safetensors")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    for name, match in (("junk.keras", "not a Keras 3 / tf_keras .keras archive"), ("junk.h5", "not a readable HDF5")):
        with pytest.raises(UserError, match=match) as e:
            import_keras(tmp_path / name, tmp_path / "m.safetensors")
        assert "\n" not in str(e.value)
    assert not (tmp_path / "m.safetensors").exists()


def test_a_second_file_with_the_same_stem_does_not_replace_the_first_import(keras_models, tmp_path):
    """Audit: a/lstm.keras then b/lstm.h5 both wrote runs/keras-lstm, under the first export's manifest."""
    import shutil

    from export.cli import _check_keras_run
    from training.keras_import import import_keras
    ckpt = tmp_path / "runs" / "keras-k3" / "model.safetensors"
    import_keras(keras_models / "k3.keras", ckpt)
    _check_keras_run(ckpt, keras_models / "k3.keras")  # the same file again: fine
    other = tmp_path / "b" / "k3.keras"
    other.parent.mkdir()
    shutil.copy(keras_models / "gru.h5", other)
    with pytest.raises(UserError, match="holds the import of another Keras file .*rename k3.keras"):
        _check_keras_run(ckpt, other)
