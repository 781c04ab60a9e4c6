"""Keras models in: a ``.keras`` / ``.h5`` LSTM or GRU classifier becomes an rnn-edge checkpoint.

``import_keras(path, checkpoint)`` loads the Keras model in a CHILD process (TensorFlow is imported
there only; a crash or hang in Keras' loader cannot take the caller down), checks that it is a
chain the pipeline can represent, maps its weights onto a ``SequenceModel`` with the inverse
mappings of ``export/keras_rebuild.py`` and writes a normal ``model.safetensors``. The rest of the
pipeline (export, parity, firmware) then treats it like a trained model.

Supported: ``Input -> (LSTM|GRU)+ -> Dense`` (all recurrent layers of one kind, any hidden size
per layer), optional ``Dropout`` (a no-op at inference) and a final ``softmax`` either on the
Dense layer or as an ``Activation`` layer. Loaded with tf_keras (Keras 2) first, Keras 3 when
tf_keras cannot read the file.

Softmax: rnn-edge heads output LOGITS. A Keras model ending in softmax is imported without the
softmax (the Dense layer's pre-activation becomes the head), so every runtime is compared on
logits and argmax; softmax is monotonic, so decisions are unchanged. The import checks the
mapped PyTorch model against Keras itself: logits (Keras run with the final softmax switched off)
within ``MAX_ABS_VS_KERAS``, the argmax of Keras' own softmax outputs identical, and
``softmax(PyTorch logits)`` against Keras' probabilities. The figures go into ``meta["keras"]``.

Refused, one line naming the layer and the option: any other layer type (Bidirectional,
Conv1D, Masking, a Dense layer before the last, ...), peephole cells, ``go_backwards``,
``stateful`` with a batch size other than 1, ``time_major``, activations other than tanh /
recurrent_activation other than sigmoid, GRU ``reset_after=False``, ``return_sequences`` on the
last recurrent layer, an activation on the final Dense other than linear / softmax, LSTM and GRU
layers mixed, a model that is not a single-input single-output chain. ``use_bias=False`` is
supported (the bias is zero).

A Keras model comes without data, so the checkpoint's ``meta`` says so: task ``"keras"``, class
names ``c0..c{K-1}``, input mean 0 / std 1 (the model sees its inputs unchanged), and
``synthetic_data`` rebuilds a seeded random-normal data set of the model's input shape, labelled
with the float model's own argmax, for int8 calibration and verification.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from runtime.errors import UserError

TASK = "keras"
MAX_ABS_VS_KERAS = 1e-4  # float32 logits, PyTorch vs Keras: same math, different kernels
SYNTHETIC = {"seed": 0, "n_train": 256, "n_val": 32, "n_test": 256}
LOAD_TIMEOUT_S = 300

# What a model file's config may name before any Keras code deserializes it (security audit: tf_keras
# rebuilds a Lambda layer's Python code from an .h5 file, ignoring safe mode, and runs it while
# building the model, before the layer checks below could refuse it). Everything else is refused
# by name, without loading: only these classes, from Keras' own modules, are rebuilt.
SAFE_LAYERS = {"InputLayer", "LSTM", "GRU", "Dense", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
               "Activation", "Softmax"}
# Keras' own layers that hold no code: loaded, then refused with the specific reason of ``_describe``
KNOWN_LAYERS = {"Bidirectional", "TimeDistributed", "RNN", "LSTMCell", "GRUCell", "SimpleRNN", "SimpleRNNCell",
                "Conv1D", "Masking", "ConvLSTM1D", "BatchNormalization", "LayerNormalization", "Flatten", "Reshape"}
SAFE_OBJECTS = SAFE_LAYERS | KNOWN_LAYERS | {
    "Sequential", "Functional", "Model", "__keras_tensor__", "DTypePolicy", "Policy",
    # initializers, regularizers, constraints (plain numbers in their configs)
    "GlorotUniform", "GlorotNormal", "Orthogonal", "Zeros", "Ones", "Constant", "Identity", "RandomNormal",
    "RandomUniform", "TruncatedNormal", "VarianceScaling", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform",
    "L1", "L2", "L1L2", "OrthogonalRegularizer", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"}


# -- the child process: everything that touches TensorFlow --------------------------------------
def _refuse(layer, option: str) -> None:
    raise _Refused(f"Keras layer {layer.name!r} ({type(layer).__name__}): {option}")


class _Refused(Exception):
    """An unsupported layer or option (the message is the one line the user sees)."""


def _load_any(path: str):
    """(model, framework name) with tf_keras first, Keras 3 when tf_keras cannot read the file."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    errors = []
    try:
        import tf_keras
        return tf_keras.models.load_model(path, compile=False), f"tf_keras {tf_keras.__version__}"
    except ImportError as e:
        errors.append(f"tf_keras not installed ({e})")
    except Exception as e:  # noqa: BLE001 - the loaders raise anything; try the other one
        errors.append(f"tf_keras: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
    try:
        import keras
        return keras.models.load_model(path, compile=False, safe_mode=True), f"keras {keras.__version__}"
    except ImportError as e:
        errors.append(f"keras 3 not installed ({e})")
    except Exception as e:  # noqa: BLE001
        errors.append(f"keras 3: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
    raise _Refused(f"cannot load {path} as a Keras model ({'; '.join(errors)})")


def _describe(model) -> dict:
    """Walk the layers, refuse what the pipeline cannot represent, return the plan + weights."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise _Refused(f"Keras model {model.name!r}: has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                       f"only single-input single-output chains can be imported")
    in_shape = tuple(model.inputs[0].shape)
    if len(in_shape) != 3:
        raise _Refused(f"Keras model {model.name!r}: input shape {in_shape} is not (batch, time, features)")
    batch, seq_len, features = in_shape
    rnns, dense, final_activation, arch = [], None, "linear", None
    for layer in model.layers:
        kind = type(layer).__name__
        cfg = layer.get_config()
        if kind == "InputLayer":
            continue
        if kind in ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout"):
            continue  # identity at inference
        if dense is not None and kind == "Softmax":
            _refuse(layer, "a Softmax layer after the final Dense is not supported; save the model with "
                           "Dense(..., activation='softmax') or an Activation('softmax') layer instead")
        if dense is not None and kind != "Activation":
            _refuse(dense["layer"], f"is followed by {kind} layer {layer.name!r}: Dense layers other than the final one "
                                    f"are not supported (only one final Dense head, optionally with softmax)")
        if kind in ("LSTM", "GRU"):
            if arch is not None and kind.lower() != arch:
                _refuse(layer, f"mixes {kind} with {arch.upper()} layers; all recurrent layers must be of one kind")
            arch = kind.lower()
            if cfg.get("go_backwards"):
                _refuse(layer, "go_backwards=True is not supported (a streaming device only sees past frames)")
            if cfg.get("time_major"):
                _refuse(layer, "time_major=True is not supported; use batch-major (batch, time, features) inputs")
            if cfg.get("stateful") and batch not in (None, 1):
                _refuse(layer, f"stateful=True with batch size {batch} is not supported; use batch size 1 or stateful=False")
            if cfg.get("activation") != "tanh":
                _refuse(layer, f"activation={cfg.get('activation')!r} is not supported; only 'tanh'")
            if cfg.get("recurrent_activation") != "sigmoid":
                _refuse(layer, f"recurrent_activation={cfg.get('recurrent_activation')!r} is not supported; only 'sigmoid'")
            if kind == "GRU" and not cfg.get("reset_after", True):
                _refuse(layer, "reset_after=False is not supported; rebuild the GRU with reset_after=True (the Keras 2.x+ default)")
            units = int(cfg["units"])
            ws = layer.get_weights()
            gates = 4 if kind == "LSTM" else 3
            if not cfg.get("use_bias", True):  # an absent bias is a zero bias
                ws = [ws[0], ws[1], np.zeros((gates * units,) if kind == "LSTM" else (2, gates * units), np.float32)]
            if len(ws) != 3:
                _refuse(layer, f"has {len(ws)} weight arrays, expected kernel, recurrent_kernel, bias")
            rnns.append({"name": layer.name, "units": units, "return_sequences": bool(cfg.get("return_sequences")),
                         "stateful": bool(cfg.get("stateful")), "layer": layer,
                         "weights": [np.asarray(w, np.float32) for w in ws]})
        elif kind == "Dense":
            if not rnns:
                _refuse(layer, "a Dense layer before the recurrent layers is not supported; only one final Dense head")
            act = cfg.get("activation")
            if act not in ("linear", "softmax"):
                _refuse(layer, f"activation={act!r} on the final Dense layer is not supported; only linear or softmax")
            if int(cfg["units"]) < 2:  # argmax of one score is always 0: every check would pass trivially
                _refuse(layer, f"has {cfg['units']} unit(s): a classifier head needs at least 2 classes "
                               f"(a one-output regressor is not a supported head)")
            ws = layer.get_weights()
            if not cfg.get("use_bias", True):
                ws = [ws[0], np.zeros((int(cfg["units"]),), np.float32)]
            dense = {"name": layer.name, "layer": layer, "weights": [np.asarray(w, np.float32) for w in ws]}
            final_activation = act
        elif kind == "Activation":
            act = cfg.get("activation")
            if dense is None or act not in ("linear", "softmax") or final_activation != "linear":
                _refuse(layer, f"activation {act!r} here is not supported; only one softmax after the final Dense layer")
            final_activation = act
            dense["activation_layer"] = layer
        elif kind in ("RNN", "Bidirectional", "TimeDistributed", "Masking", "SimpleRNN", "ConvLSTM1D"):
            cell = getattr(getattr(layer, "cell", None), "__class__", type(None)).__name__
            what = {"Bidirectional": "Bidirectional wrapper is not supported (a streaming device only sees past frames)",
                    "Masking": "Masking is not supported; pad or crop inputs to a fixed length instead"}.get(
                kind, f"layer type {kind}{f' (cell {cell})' if cell != 'NoneType' else ''} is not supported"
                      f"{' (peephole connections)' if 'Peephole' in cell else ''}; only LSTM, GRU and a final Dense")
            _refuse(layer, what)
        else:
            _refuse(layer, f"layer type {kind} is not supported; only LSTM, GRU, Dropout and a final Dense")
    if not rnns:
        raise _Refused(f"Keras model {model.name!r}: has no LSTM or GRU layer")
    if dense is None:
        raise _Refused(f"Keras model {model.name!r}: has no final Dense layer after the last {arch.upper()} layer")
    for r in rnns[:-1]:
        if not r["return_sequences"]:
            raise _Refused(f"Keras layer {r['name']!r} ({arch.upper()}): return_sequences=False on a recurrent layer "
                           f"that feeds another one")
    if rnns[-1]["return_sequences"]:
        raise _Refused(f"Keras layer {rnns[-1]['name']!r} ({arch.upper()}): return_sequences=True on the last recurrent "
                       f"layer feeding Dense (per-step heads are not supported); set return_sequences=False")
    return {"arch": arch, "batch": batch, "seq_len": seq_len, "features": int(features), "rnns": rnns,
            "dense": dense, "final_activation": final_activation}


def _keras_outputs(model, x: np.ndarray, stateful_layers: list) -> np.ndarray:
    """Keras' own outputs for the windows ``x``, each window from a zero state.

    A stateful model is built for batch size 1 and carries its state from call to call, so it is
    run one window at a time with its recurrent layers reset before each (what Keras does after
    ``reset_states()``), and reset again afterwards.
    """
    if not stateful_layers:
        return np.asarray(model(x, training=False), np.float32)
    out = []
    for window in x:
        for layer in stateful_layers:
            layer.reset_states()
        out.append(np.asarray(model(window[None], training=False), np.float32))
    for layer in stateful_layers:
        layer.reset_states()
    return np.concatenate(out)


def _child_main(keras_path: str, work: str, seq_len: int = 0) -> int:
    """Load, describe, and run the Keras model on the synthetic windows (written to ``work/x.npy``);
    writes desc.json + weights.npz. ``seq_len``: the window length when the model leaves it open."""
    work_dir = Path(work)
    try:
        model, framework = _load_any(keras_path)
        d = _describe(model)
        T = d["seq_len"] or seq_len or None
        x = None
        if T is not None:
            parts = synthetic_inputs(int(T), d["features"])
            x = np.concatenate([parts["train"], parts["test"]])
            np.save(work_dir / "x.npy", x)
        arrays = {}
        for i, r in enumerate(d["rnns"]):
            for j, w in enumerate(r["weights"]):
                arrays[f"rnn{i}_{j}"] = w
        arrays["head_0"], arrays["head_1"] = d["dense"]["weights"]
        stateful = [r["layer"] for r in d["rnns"] if r["stateful"]]
        if x is not None:
            arrays["probs"] = _keras_outputs(model, x, stateful)
            # Logits: the same Keras model with its final softmax switched off (before any predict
            # traced it; eager __call__ reads the attribute each time).
            layer = d["dense"].get("activation_layer") or d["dense"]["layer"]
            saved = layer.activation
            layer.activation = lambda t: t
            try:
                arrays["logits"] = _keras_outputs(model, x, stateful)
            finally:
                layer.activation = saved
        np.savez(work_dir / "weights.npz", **arrays)
        desc = {"framework": framework, "arch": d["arch"], "batch": d["batch"], "seq_len": d["seq_len"],
                "features": d["features"], "hidden_sizes": [r["units"] for r in d["rnns"]],
                "layers": [r["name"] for r in d["rnns"]] + [d["dense"]["name"]],
                "num_classes": int(d["dense"]["weights"][1].shape[0]), "final_activation": d["final_activation"]}
        (work_dir / "desc.json").write_text(json.dumps(desc))
        return 0
    except _Refused as e:
        (work_dir / "desc.json").write_text(json.dumps({"error": str(e)}))
        return 3


# -- the parent: no TensorFlow here ----------------------------------------------------------------
def _run_child(keras_path: Path, work: Path, timeout: float, seq_len: int | None,
               shown: Path | None = None) -> tuple[dict, dict]:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "training.keras_import", "--child", str(keras_path), str(work), str(seq_len or 0)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"loading {shown or keras_path} with Keras took over {timeout:.0f} s and was stopped: "
                        f"check the file, or re-save it with tf_keras") from None
    desc_path = work / "desc.json"
    if not desc_path.is_file():
        tail = " ".join((proc.stderr or "").strip().splitlines()[-1:])[:300]
        raise UserError(f"Keras crashed loading {shown or keras_path} (exit {proc.returncode}: {tail or 'no message'}): "
                        f"re-save the model with tf_keras or Keras 3")
    desc = json.loads(desc_path.read_text())
    if "error" in desc:
        raise UserError(desc["error"].replace(str(keras_path), str(shown or keras_path)))
    with np.load(work / "weights.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if (work / "x.npy").is_file():
        arrays["x"] = np.load(work / "x.npy", allow_pickle=False)
    return desc, arrays


def model_config(path: Path, shown: Path | None = None) -> dict:
    """The model's config as stored in the file, read as JSON without any Keras code (``shown``: the
    name to use in messages)."""
    shown = shown or path
    if path.suffix.lower() == ".keras":
        if not zipfile.is_zipfile(path):
            raise UserError(f"{shown} is not a Keras 3 / tf_keras .keras archive (a zip): re-save it with "
                            f"model.save('model.keras')")
        try:
            with zipfile.ZipFile(path) as z:
                text = z.read("config.json")
        except (KeyError, zipfile.BadZipFile, OSError) as e:
            raise UserError(f"{shown} has no readable config.json ({e}): re-save it with model.save('model.keras')") from None
    else:
        import h5py
        try:
            with h5py.File(path, "r") as f:
                text = f.attrs.get("model_config")
        except OSError as e:
            raise UserError(f"{shown} is not a readable HDF5 Keras file ({e}): re-save it with model.save('model.keras')") from None
        if text is None:
            raise UserError(f"{shown} holds weights but no model config: save the whole model (model.save), "
                            f"not only its weights")
    try:
        config = json.loads(text.decode() if isinstance(text, bytes) else text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{shown}: the model config is not valid JSON ({e}): re-save the model") from None
    if not isinstance(config, dict):
        raise UserError(f"{shown}: the model config is not an object: re-save the model")
    return config


def refuse_unsafe_config(config, path: Path) -> None:
    """Refuse (one line) a config that names anything but the layers and Keras objects this import
    supports, or carries Python code (Lambda, custom objects, serialized functions), before Keras
    ever deserializes it."""
    def walk(node, where: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, where)
            return
        if not isinstance(node, dict):
            return
        for key in ("function", "function_type", "module_name", "output_shape_type"):
            if key in node and node.get(key) is not None:
                raise UserError(f"{path}: {where} carries serialized Python ({key!r}): a Keras file with code "
                                f"(Lambda or custom layers) is refused before loading; only {', '.join(sorted(SAFE_LAYERS))}")
        name = node.get("class_name")
        if name is not None:
            module = node.get("module")
            if name not in SAFE_OBJECTS or (module is not None and not str(module).split(".")[0] in ("keras", "tf_keras")) \
                    or (node.get("registered_name") not in (None, name)):
                raise UserError(f"{path}: {where} names {name!r}{f' from {module!r}' if module else ''}: refused before "
                                f"loading (it could carry code); only the layers {', '.join(sorted(SAFE_LAYERS))} "
                                f"and Keras' own initializers are imported")
            cfg = node.get("config")
            if isinstance(cfg, dict):
                for key in ("activation", "recurrent_activation"):
                    if key in cfg and not (isinstance(cfg[key], str) or cfg[key] is None):
                        raise UserError(f"{path}: {where}/{cfg.get('name', name)} has a non-standard {key} "
                                        f"({str(cfg[key])[:60]}): refused before loading")
                where = f"{where}/{cfg.get('name', name)}" if name not in ("Sequential", "Functional", "Model") else where
        for key, value in node.items():
            if key not in ("class_name", "module", "registered_name"):
                walk(value, where)
    walk(config, "the model")


def refuse_external_storage(path: Path, shown: Path, work: Path) -> None:
    """Refuse (one line) HDF5 weights that take their bytes from elsewhere: a dataset with external
    storage or a virtual one, an external or soft link (security re-audit: a dataset backed by an
    absolute path copied a host file into the imported weights, and from there into every export).
    ``path``: the private copy (an ``.h5``, or a ``.keras`` zip whose ``model.weights.h5`` is checked)."""
    import h5py
    h5 = path
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if "model.weights.h5" not in z.namelist():
                return  # weights in another form (Keras 3 .npz is read with allow_pickle=False)
            h5 = work / "weights-check.h5"
            h5.write_bytes(z.read("model.weights.h5"))

    def walk(group, where: str) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
                raise UserError(f"{shown}: the weights entry {where}/{name} is a {type(link).__name__}: refused (weights "
                                f"must be stored in the file itself); re-save the model")
            obj = group.get(name)
            if isinstance(obj, h5py.Group):
                walk(obj, f"{where}/{name}")
            elif isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
                raise UserError(f"{shown}: the weights entry {where}/{name} takes its bytes from outside the file "
                                f"({'external storage' if obj.external else 'a virtual dataset'}): refused; re-save the model")
    try:
        with h5py.File(h5, "r") as f:
            walk(f, "")
    except OSError as e:
        raise UserError(f"{shown}: the weights are not readable HDF5 ({e}): re-save the model") from None


def synthetic_inputs(seq_len: int, features: int, seed: int = SYNTHETIC["seed"]) -> dict[str, np.ndarray]:
    """Seeded N(0, 1) windows ``{train, val, test}`` of the model's input shape."""
    rng = np.random.default_rng(seed)
    return {s: rng.standard_normal((SYNTHETIC[f"n_{s}"], seq_len, features)).astype(np.float32)
            for s in ("train", "val", "test")}


def synthetic_data(model, meta: dict):
    """The data set a Keras import is calibrated and verified on (no real data comes with it).

    Seeded random-normal windows of the model's input shape; labels are the float model's own
    argmax, so "accuracy" on it means agreement with the imported model's decisions.
    """
    import torch
    from training.data import SequenceData
    ds = meta.get("dataset") or {}
    x = synthetic_inputs(int(meta["seq_len"]), model.spec.input_size, int(ds.get("seed", SYNTHETIC["seed"])))
    with torch.no_grad():
        y = {s: model(torch.from_numpy(v)).argmax(-1).numpy() for s, v in x.items()}
    return SequenceData(TASK, list(meta["class_names"]), x["train"], y["train"], x["val"], y["val"], x["test"], y["test"],
                        info={"source": ds.get("source", "synthetic"), "synthetic": True,
                              "labels": "argmax of the imported model's own float logits (no labelled data came with it)",
                              "seed": int(ds.get("seed", SYNTHETIC["seed"]))})


def import_keras(keras_path, checkpoint, *, seq_len: int | None = None, timeout: float = LOAD_TIMEOUT_S) -> dict:
    """Import ``keras_path`` (.keras / .h5) and write ``checkpoint`` (model.safetensors); returns meta.

    ``seq_len``: the window length, required when the model's input has no fixed time dimension.
    Raises UserError (one line) for unreadable files and unsupported layers/options, and when the
    mapped model does not reproduce Keras' own outputs.
    """
    import torch
    from export.keras_rebuild import keras_to_torch_weights
    from training.checkpoint import save_model
    from training.models import ModelSpec, SequenceModel

    keras_path, checkpoint = Path(keras_path), Path(checkpoint)
    if not keras_path.is_file():
        raise UserError(f"no Keras model at {keras_path}: pass the path of a .keras or .h5 file")
    if keras_path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise UserError(f"{keras_path} is not a .keras or .h5 file: save the model with model.save('model.keras')")
    with tempfile.TemporaryDirectory(prefix="keras-import-") as tmp:
        work = Path(tmp)
        # one private copy is checked, hashed and loaded: the file cannot change between the check and the load
        data = keras_path.read_bytes()
        private = work / f"model{keras_path.suffix.lower()}"
        private.write_bytes(data)
        refuse_unsafe_config(model_config(private, keras_path), keras_path)  # before any Keras code reads the file
        refuse_external_storage(private, keras_path, work)
        desc, arrays = _run_child(private, work, timeout, seq_len, keras_path)
    T = desc["seq_len"] or seq_len
    if T is None:
        raise UserError(f"{keras_path}: the model's input has no fixed number of time steps: pass --seq-len N")
    if desc["seq_len"] is not None and seq_len is not None and seq_len != desc["seq_len"]:
        raise UserError(f"{keras_path}: the model takes {desc['seq_len']} time steps, not --seq-len {seq_len}")
    x_check = arrays["x"]

    arch, hidden = desc["arch"], desc["hidden_sizes"]
    weights = {"rnn": [tuple(arrays[f"rnn{i}_{j}"] for j in range(3)) for i in range(len(hidden))],
               "head": (arrays["head_0"], arrays["head_1"])}
    spec = ModelSpec(arch, int(desc["features"]), tuple(hidden), int(desc["num_classes"]))
    model = SequenceModel(spec)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in keras_to_torch_weights(arch, weights).items()})
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x_check)).numpy()
    keras_logits, keras_probs = arrays["logits"], arrays["probs"]
    max_abs = float(np.max(np.abs(logits - keras_logits)))
    argmax_agree = float(np.mean(logits.argmax(-1) == keras_probs.argmax(-1)))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    probs_abs = float(np.max(np.abs(probs - keras_probs))) if desc["final_activation"] == "softmax" else None
    if not max_abs <= MAX_ABS_VS_KERAS:  # also catches NaN
        raise UserError(f"{keras_path}: the imported model differs from Keras by {max_abs:.3g} in the logits "
                        f"(> {MAX_ABS_VS_KERAS:g}); the model is probably not a plain chain of its layers")
    meta = {
        "task": TASK,
        "class_names": [f"c{i}" for i in range(spec.num_classes)],
        "input_mean": [0.0] * spec.input_size,
        "input_std": [1.0] * spec.input_size,
        "seq_len": int(T),
        "config": {"task": TASK, "arch": arch, "hidden": list(hidden)},
        "dataset": {"source": "synthetic: seeded N(0,1) windows of the model's input shape (a Keras model comes without data)",
                    "seed": SYNTHETIC["seed"], **{k: v for k, v in SYNTHETIC.items() if k != "seed"},
                    "labels": "argmax of the imported model's own float logits"},
        "val_acc": None,
        "epoch": None,
        "keras": {"file": str(keras_path), "sha256": hashlib.sha256(data).hexdigest(), "framework": desc["framework"],
                  "layers": desc["layers"], "final_activation": desc["final_activation"],
                  "head": "logits (the final softmax is not part of the imported model)",
                  "check": {"windows": int(len(x_check)), "logits_max_abs_vs_keras": max_abs,
                            "argmax_agreement_vs_keras": argmax_agree, "softmax_max_abs_vs_keras": probs_abs}},
    }
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    save_model(checkpoint, model, meta)
    return meta


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    print("usage: python -m training.keras_import --child MODEL WORK_DIR (internal; use `python -m export --keras`)",
          file=sys.stderr)
    sys.exit(2)
