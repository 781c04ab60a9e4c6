"""Rebuild a PyTorch ``SequenceModel`` as a tf_keras model carrying the exact same weights.

Two parts:

- Pure weight mappings (numpy in, numpy out), both directions, so Keras models can later be
  imported too. The math:

  LSTM  PyTorch gates i,f,g,o == Keras gates i,f,c,o (same order). PyTorch ``weight_ih``
        ``[4H, In]`` is Keras ``kernel`` transposed ``[In, 4H]``; ``weight_hh`` ``[4H, H]`` is
        ``recurrent_kernel.T``; Keras has one bias ``[4H]`` = ``b_ih + b_hh`` (the two are only
        ever added). Importing back, the whole bias goes to ``b_ih`` and ``b_hh`` is zero.
  GRU   PyTorch gates r,z,n vs Keras (``reset_after=True``) z,r,h: the first two blocks swap.
        Keras keeps both biases: ``bias`` ``[2, 3H]`` = [input bias; recurrent bias], matching
        PyTorch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) exactly.

- ``build_keras_model``: the tf_keras graph (whole-sequence, or a one-frame streaming step).
  tf_keras (Keras 2) is required: Keras 3 LSTMs do not fuse into TFLite's
  UNIDIRECTIONAL_SEQUENCE_LSTM. TensorFlow is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import os

import numpy as np

from runtime.errors import MissingDependency, UserError

# torch GRU block order r,z,n -> Keras z,r,h: take torch blocks (1, 0, 2).
_GRU_TORCH_TO_KERAS = (1, 0, 2)
_GRU_KERAS_TO_TORCH = (1, 0, 2)  # the swap is its own inverse


def _blocks(a: np.ndarray, n: int, axis: int) -> list[np.ndarray]:
    return np.split(np.asarray(a), n, axis=axis)


# -- LSTM ---------------------------------------------------------------------------------
def torch_lstm_to_keras(w_ih, w_hh, b_ih, b_hh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch LSTM weights -> Keras ``(kernel [In,4H], recurrent_kernel [H,4H], bias [4H])``."""
    w_ih, w_hh = np.asarray(w_ih, np.float32), np.asarray(w_hh, np.float32)
    return (np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T),
            (np.asarray(b_ih, np.float32) + np.asarray(b_hh, np.float32)))


def keras_lstm_to_torch(kernel, recurrent_kernel, bias) -> tuple[np.ndarray, ...]:
    """Keras LSTM weights -> PyTorch ``(weight_ih, weight_hh, bias_ih, bias_hh)``; bias_hh = 0."""
    bias = np.asarray(bias, np.float32)
    return (np.ascontiguousarray(np.asarray(kernel, np.float32).T),
            np.ascontiguousarray(np.asarray(recurrent_kernel, np.float32).T),
            bias.copy(), np.zeros_like(bias))


# -- GRU ----------------------------------------------------------------------------------
def torch_gru_to_keras(w_ih, w_hh, b_ih, b_hh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch GRU weights -> Keras reset_after GRU ``(kernel [In,3H], recurrent_kernel [H,3H], bias [2,3H])``."""
    def reorder(a, axis):
        b = _blocks(np.asarray(a, np.float32), 3, axis)
        return np.concatenate([b[i] for i in _GRU_TORCH_TO_KERAS], axis=axis)
    kernel = np.ascontiguousarray(reorder(w_ih, 0).T)
    recurrent = np.ascontiguousarray(reorder(w_hh, 0).T)
    bias = np.stack([reorder(b_ih, 0), reorder(b_hh, 0)])
    return kernel, recurrent, bias


def keras_gru_to_torch(kernel, recurrent_kernel, bias) -> tuple[np.ndarray, ...]:
    """Keras reset_after GRU weights -> PyTorch ``(weight_ih, weight_hh, bias_ih, bias_hh)``."""
    bias = np.asarray(bias, np.float32)
    if bias.ndim != 2 or bias.shape[0] != 2:
        raise UserError(f"Keras GRU bias has shape {bias.shape}, expected (2, 3*units): rebuild the GRU with reset_after=True")

    def reorder(a, axis):
        b = _blocks(np.asarray(a, np.float32), 3, axis)
        return np.concatenate([b[i] for i in _GRU_KERAS_TO_TORCH], axis=axis)
    return (np.ascontiguousarray(reorder(np.asarray(kernel, np.float32).T, 0)),
            np.ascontiguousarray(reorder(np.asarray(recurrent_kernel, np.float32).T, 0)),
            reorder(bias[0], 0), reorder(bias[1], 0))


# -- whole model --------------------------------------------------------------------------
def torch_to_keras_weights(arch: str, state_dict: dict) -> dict:
    """A SequenceModel state dict (numpy arrays, PyTorch names) -> Keras weights per layer.

    Returns ``{"rnn": [(kernel, recurrent_kernel, bias), ...], "head": (kernel [H,K], bias [K])}``.
    """
    to_keras = torch_lstm_to_keras if arch == "lstm" else torch_gru_to_keras
    rnn, i = [], 0
    while f"layers.{i}.weight_ih_l0" in state_dict:
        p = f"layers.{i}."
        rnn.append(to_keras(state_dict[p + "weight_ih_l0"], state_dict[p + "weight_hh_l0"],
                            state_dict[p + "bias_ih_l0"], state_dict[p + "bias_hh_l0"]))
        i += 1
    if not rnn:
        raise UserError("the checkpoint has no recurrent layers (no layers.0.weight_ih_l0): it is not an rnn-edge model")
    head = (np.ascontiguousarray(np.asarray(state_dict["head.weight"], np.float32).T),
            np.asarray(state_dict["head.bias"], np.float32))
    return {"rnn": rnn, "head": head}


def keras_to_torch_weights(arch: str, weights: dict) -> dict:
    """Inverse of ``torch_to_keras_weights``: Keras weights per layer -> PyTorch state dict (numpy)."""
    to_torch = keras_lstm_to_torch if arch == "lstm" else keras_gru_to_torch
    sd = {}
    for i, w in enumerate(weights["rnn"]):
        for name, a in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), to_torch(*w)):
            sd[f"layers.{i}.{name}"] = a
    sd["head.weight"] = np.ascontiguousarray(np.asarray(weights["head"][0], np.float32).T)
    sd["head.bias"] = np.asarray(weights["head"][1], np.float32)
    return sd


def import_tf_keras():
    """tf_keras (Keras 2), with TF_USE_LEGACY_KERAS set before TensorFlow is first imported."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tf_keras
    except ImportError:
        raise MissingDependency("tf-keras (TFLite export)", "pip install tensorflow==2.21.0 tf-keras==2.21.0") from None
    return tf_keras


def build_keras_model(arch: str, weights: dict, *, seq_len: int | None, input_size: int,
                      kind: str = "sequence", unroll: bool = False, batch_size: int | None = 1,
                      frames: bool = False):
    """The tf_keras model for ``weights`` (from ``torch_to_keras_weights``).

    kind ``"sequence"``: input ``x [batch, seq_len, C]`` -> ``scores [batch, K]`` from the last step
    (``frames``: the last RNN returns every step and the Dense head runs on each: ``[batch, seq_len, K]``).
    kind ``"step"``: one frame ``x [1, C]`` -> ``scores [1, K]``. LSTM: the sequence graph over a
    one-frame window; Keras itself forgets the state between calls, but TFLite's fused LSTM keeps
    h and c in variable tensors, which is what streams. GRU state is explicit: inputs
    ``state_in_i [1, H_i]``, outputs ``state_out_i`` (TFLite has no fused GRU to hold it).
    """
    keras = import_tf_keras()
    layers = keras.layers
    Layer = layers.LSTM if arch == "lstm" else layers.GRU
    extra = {} if arch == "lstm" else {"reset_after": True}
    hidden = [w[1].shape[0] for w in weights["rnn"]]
    num_classes = weights["head"][1].shape[0]

    if kind == "sequence":
        x_in = keras.Input(shape=(seq_len, input_size), batch_size=batch_size, name="x")
        h = x_in
        rnns = []
        for i, units in enumerate(hidden):
            last = i == len(hidden) - 1
            layer = Layer(units, return_sequences=frames or not last, unroll=unroll, name=f"{arch}_{i}", **extra)
            h = layer(h)
            rnns.append(layer)
        dense = layers.Dense(num_classes, name="scores")
        model = keras.Model(x_in, dense(h), name=f"{arch}_sequence")
    elif kind == "step" and arch == "lstm":
        # Not Keras stateful=True (that converts to resource variables and a WHILE loop, no fused
        # op): the fused UNIDIRECTIONAL_SEQUENCE_LSTM over a one-frame window already keeps h and c
        # in variable tensors between invoke() calls.
        x_in = keras.Input(shape=(input_size,), batch_size=1, name="x")
        h = layers.Reshape((1, input_size), name="frame_to_sequence")(x_in)
        rnns = []
        for i, units in enumerate(hidden):
            last = i == len(hidden) - 1
            layer = layers.LSTM(units, return_sequences=not last, name=f"lstm_{i}")
            h = layer(h)
            rnns.append(layer)
        dense = layers.Dense(num_classes, name="scores")
        model = keras.Model(x_in, dense(h), name="lstm_step")
    elif kind == "step":
        x_in = keras.Input(shape=(input_size,), batch_size=1, name="x")
        states_in = [keras.Input(shape=(u,), batch_size=1, name=f"state_in_{i}") for i, u in enumerate(hidden)]
        h, states_out, rnns = x_in, [], []
        for i, units in enumerate(hidden):
            cell = layers.GRUCell(units, reset_after=True, name=f"gru_{i}")
            h, _ = cell(h, [states_in[i]])
            h = layers.Identity(name=f"state_out_{i}")(h)
            states_out.append(h)
            rnns.append(cell)
        dense = layers.Dense(num_classes, name="scores")
        model = keras.Model([x_in, *states_in], [dense(h), *states_out], name="gru_step")
    else:
        raise UserError(f"unknown graph kind {kind!r}: use sequence or step")
    for layer, w in zip(rnns, weights["rnn"]):
        layer.set_weights([np.asarray(a, np.float32) for a in w])
    dense.set_weights([np.asarray(a, np.float32) for a in weights["head"]])
    return model
