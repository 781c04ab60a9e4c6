"""int8 quantization of an LSTM/GRU model for the C generator: pure functions.

- ``float_weights(model)``: the PyTorch model as plain numpy arrays (``fm``).
- ``calibrate(fm, X)``: the parameters learned from data, once, stored as the manifest's
  ``quant`` record: the input scale and each LSTM layer's cell-state format.
- ``quantize(fm, quant)``: the integer model (``qm``) that both the C code and
  ``reference.int_run`` execute: per-channel (per gate row) symmetric int8 weights, with a
  fixed-point multiplier + shift per row that rescales the int32 accumulator to Q3.12.
- ``check_bounds(qm)``: proves, from the weights alone, that no intermediate of the C code can
  overflow its type for ANY input, so the C needs no saturation in its inner loops.
"""

from __future__ import annotations

import math

import numpy as np

from export.c.reference import GATE_FRAC, LUT_ORIGIN, SCORE_FRAC, STATE_FRAC, float_run
from runtime.errors import UserError

SCHEME = "rnn-edge-c-int8/1"
MAX_HIDDEN = 1024


def float_weights(model) -> dict:
    """``SequenceModel`` -> ``{"arch", "input_size", "layers": [{w_ih, w_hh, b_ih, b_hh, hidden}], head_w, head_b}``."""
    sd = {k: v.detach().cpu().double().numpy() for k, v in model.state_dict().items()}
    spec = model.spec
    layers = []
    for i, h in enumerate(spec.hidden_sizes):
        p = f"layers.{i}."
        layers.append({"hidden": int(h), "w_ih": sd[p + "weight_ih_l0"], "w_hh": sd[p + "weight_hh_l0"],
                       "b_ih": sd[p + "bias_ih_l0"], "b_hh": sd[p + "bias_hh_l0"]})
    return {"arch": spec.arch, "input_size": spec.input_size, "num_classes": spec.num_classes,
            "layers": layers, "head_w": sd["head.weight"], "head_b": sd["head.bias"]}


def calibrate(fm: dict, X_norm: np.ndarray, max_windows: int = 512, seed: int = 0) -> dict:
    """Scales from normalized training windows ``[N, T, C]``: the manifest's ``quant`` record."""
    X = np.asarray(X_norm, np.float64)
    if X.ndim != 3 or len(X) == 0:
        raise UserError(f"calibration data must be windows [N, T, C], got shape {X.shape}: pass the training split")
    if len(X) > max_windows:
        X = X[np.random.default_rng(seed).choice(len(X), max_windows, replace=False)]
    # input: symmetric, covering the largest normalized value of the calibration windows (a seeded
    # sample of at most max_windows training windows: rarer, larger training values clip to +-127)
    x_max = float(np.abs(X).max())
    input_scale = max(x_max, 1e-6) / 127.0
    _, cmax = float_run(fm, X, collect_cell=True)
    layers = []
    for cm in cmax:
        int_bits = max(0, math.ceil(math.log2(max(cm * 1.25, 1e-9)))) if fm["arch"] == "lstm" else 0
        layers.append({"cell_frac": int(min(15, max(4, 15 - int_bits))), "cell_max_abs": round(cm, 6)})
    return {"scheme": SCHEME, "input": {"scale": input_scale, "zero_point": 0, "dtype": "int8"},
            "output": {"scale": 2.0 ** -SCORE_FRAC, "zero_point": 0, "dtype": "int32"},
            "gate_frac": GATE_FRAC, "state_frac": STATE_FRAC, "layers": layers,
            "weights": "int8 symmetric per output channel (gate row), int32 accumulators",
            "calibration": {"windows": int(len(X)), "input_max_abs": x_max}}


def multiplier(m: float) -> tuple[int, int, int]:
    """Real ``m >= 0`` -> (mult, ls, rs) with ``m ~= mult / 2**32 * 2**ls / 2**rs`` (see ``reference.requantize``).

    ``mult`` is in [2**30, 2**31) so the SMMULR keeps 30+ significant bits; ``rs >= 1`` always.
    """
    if m <= 0.0:
        return 0, 0, 1
    f, e = math.frexp(m)  # m = f * 2**e, 0.5 <= f < 1  ->  m = (mult / 2**32) * 2**(e + 1)
    mult = round(f * (1 << 31))
    if mult == 1 << 31:
        mult, e = 1 << 30, e + 1
    k = e + 1
    ls, rs = (k + 1, 1) if k + 1 >= 0 else (0, -k)
    if ls > 30:
        raise UserError(f"a weight scale of {m:g} is too large for int8 export: the model's weights are out of range")
    if rs > 31:  # a negligible row (all but zero weights): keep it representable
        mult, rs = mult >> (rs - 31), 31
    return int(mult), int(ls), int(rs)


def quantize_rows(w: np.ndarray, in_scale: float, out_frac: int):
    """Per-row symmetric int8 weights and the multipliers that map ``acc`` to ``2**-out_frac`` units."""
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    wq = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    ms = [multiplier(s * in_scale * 2.0 ** out_frac) for s in scale]
    return (wq, np.array([m for m, _, _ in ms], np.int64),
            np.array([[ls, rs] for _, ls, rs in ms], np.int64).reshape(len(ms), 2))


def quantize(fm: dict, quant: dict) -> dict:
    """Float weights + ``quant`` record -> integer model ``qm`` (deterministic)."""
    if quant.get("scheme") != SCHEME:
        raise UserError(f"quantization record has scheme {quant.get('scheme')!r}, expected {SCHEME}: re-export the model")
    G = 4 if fm["arch"] == "lstm" else 3
    in_scale = quant["input"]["scale"]
    layers = []
    for L, lq in zip(fm["layers"], quant["layers"]):
        H = L["hidden"]
        if H > MAX_HIDDEN:
            raise UserError(f"hidden size {H} exceeds the C generator's limit of {MAX_HIDDEN}: use smaller layers")
        wx, wxm, wxs = quantize_rows(L["w_ih"], in_scale, GATE_FRAC)
        wh, whm, whs = quantize_rows(L["w_hh"], 2.0 ** -STATE_FRAC, GATE_FRAC)
        b = L["b_ih"].copy()
        if fm["arch"] == "lstm":
            b = b + L["b_hh"]
            bias_hn = None
        else:  # r and z take both biases; n keeps b_hn apart, inside r * (W_hn h + b_hn)
            b[:2 * H] += L["b_hh"][:2 * H]
            bias_hn = np.round(L["b_hh"][2 * H:] * 2.0 ** GATE_FRAC).astype(np.int64)
        layers.append({"hidden": H, "inputs": L["w_ih"].shape[1], "gates": G, "cell_frac": int(lq["cell_frac"]),
                       "wx": wx, "wx_mult": wxm, "wx_shift": wxs, "wh": wh, "wh_mult": whm, "wh_shift": whs,
                       "bias": np.round(b * 2.0 ** GATE_FRAC).astype(np.int64), "bias_hn": bias_hn})
        in_scale = 2.0 ** -STATE_FRAC
    hw, hm, hs = quantize_rows(fm["head_w"], 2.0 ** -STATE_FRAC, SCORE_FRAC)
    qm = {"arch": fm["arch"], "input_size": fm["input_size"], "num_classes": fm["num_classes"],
          "input_scale": quant["input"]["scale"], "layers": layers, "head_w": hw, "head_mult": hm, "head_shift": hs,
          "head_bias": np.round(fm["head_b"] * 2.0 ** SCORE_FRAC).astype(np.int64)}
    check_bounds(qm)
    return qm


def _row_bound(wq, mult, shift, a_max: int):
    """Worst-case |acc << ls| and |requantized acc| of each row for inputs bounded by ``a_max``."""
    acc = np.abs(wq.astype(np.int64)).sum(1) * a_max * (2.0 ** shift[:, 0])
    return acc, acc * mult.astype(np.float64) / 2.0 ** (32 + shift[:, 1]) + 2


def _folded_bias_bound(y, bias) -> float:
    """The largest int32 the C's requantize meets when it adds ``bias`` inside the rounding
    (``reference.requant_word``): the packed word itself and ``(v >> (rs - 1)) + 1 + 2 * bias``."""
    b = np.abs(np.asarray(bias, np.float64))
    return float(max(((1 + 2 * b) * 256 + 31).max(initial=0), (2 * y + 1 + 2 * b).max(initial=0)))


def check_bounds(qm: dict) -> None:
    """Raise ``UserError`` unless every int32 intermediate fits for every possible input."""
    a_max = 128  # |int8 input|
    for i, L in enumerate(qm["layers"]):
        acc_x, gx = _row_bound(L["wx"], L["wx_mult"], L["wx_shift"], a_max)
        acc_h, gh = _row_bound(L["wh"], L["wh_mult"], L["wh_shift"], 32768)
        pre = gx + np.abs(L["bias"]) + gh
        # the C adds the tables' origin with the bias (LUT_ORIGIN): the words carry it
        folded = max(_folded_bias_bound(gx, np.abs(L["bias"]) + LUT_ORIGIN), _folded_bias_bound(gh, 0))
        if L["bias_hn"] is not None:
            H = L["hidden"]  # n: gx + b_in + (r * (gh + b_hn)) >> 15, with r < 1
            pre = np.concatenate([pre[:2 * H], gx[2 * H:] + np.abs(L["bias"][2 * H:]) + gh[2 * H:] + np.abs(L["bias_hn"])])
            folded = max(folded, _folded_bias_bound(gh[2 * H:], L["bias_hn"]),
                         2 * (gh[2 * H:] + np.abs(L["bias_hn"])).max())  # the cell's SMMULR takes 2 gh_n
        pre = pre + LUT_ORIGIN
        worst = max(acc_x.max(), acc_h.max(), pre.max(), folded)
        if worst >= 2 ** 31 - 1:
            raise UserError(f"layer {i}: worst-case accumulator {worst:.3g} overflows int32: "
                            "the weights are too large for the int8 C export (retrain with weight decay)")
        a_max = 32768
    acc, y = _row_bound(qm["head_w"], qm["head_mult"], qm["head_shift"], 32768)
    if acc.max() >= 2 ** 31 - 1:
        raise UserError("the classification head's scores overflow int32 in the int8 C export: the head weights are too large")
    if max((y + np.abs(qm["head_bias"])).max(), _folded_bias_bound(y, qm["head_bias"])) >= 2 ** 31 - 1:
        raise UserError("the classification head's scores overflow int32 in the int8 C export once its bias is added: "
                        "the head bias is too large (scores far from zero; retrain with weight decay)")
