"""Numpy reference of the generated C: float32 and integer-only int8, as pure functions.

The integer path is the specification the C code is checked against, bit for bit
(``tests/test_c_codegen.py``); every operation here has a one-line twin in the generated C. Where
the C computes the same integer another way, to spend fewer instructions, the other way has a twin
here too, tested equal over its whole input range: the biases added inside the requantization
rounding (``requant_word``, ``requantize_word``), the packed tables looked up from the origin
32768 (``pack_table``, ``lut_packed``), the cell state's way to the tanh table (``cell_table_input``).
All integer arithmetic is done in int64 numpy arrays, and every intermediate is proven to fit the
C type it lives in (int32, or int64 where the C uses int64) by ``quantize.check_bounds``.

Number formats (``Qm.n``: a signed integer holding ``value * 2**n``):
- input frame ``x``: int8, ``x_real = q * input_scale`` (symmetric, calibrated)
- hidden state ``h`` and all gate outputs: int16 Q0.15 (``[-1, 1)``)
- gate pre-activations: Q3.12 int16 (``[-8, 8)``), the domain of the sigmoid/tanh tables
- LSTM cell state ``c``: int16 with a per-layer power-of-two format Q(15-cf).cf, calibrated
- scores: int32, ``score_real = q * 2**-16``
"""

from __future__ import annotations

import numpy as np

GATE_FRAC = 12  # gate pre-activations are Q3.12
STATE_FRAC = 15  # h and gate activations are Q0.15
SCORE_FRAC = 16  # scores are int32 with 16 fractional bits
TABLE_BITS = 8  # 2**8 + 1 table entries over the int16 range, linear interpolation in between


# ---------------------------------------------------------------------------------------------
# integer primitives (each mirrors a static inline function of the generated C)
def rshift_round(x, s):
    """``(x + 2**(s-1)) >> s``: round half up, arithmetic shift (s >= 1; scalar or per element)."""
    x = np.asarray(x, np.int64)
    s = np.asarray(s, np.int64)
    return (x + (np.int64(1) << (s - 1))) >> s


def smmulr(a, b):
    """``(a * b + 2**31) >> 32``: the high word of a 32x32 product, rounded (ARM SMMULR)."""
    return (np.asarray(a, np.int64) * np.asarray(b, np.int64) + (np.int64(1) << 31)) >> 32


def requantize(acc, mult, shift):
    """Rescale a row's int32 accumulator: ``rshift_round(smmulr(acc << ls, mult), rs)``.

    ``mult`` in [2**30, 2**31) (or 0), ``shift[..., 0] = ls >= 0``, ``shift[..., 1] = rs >= 1``:
    the real multiplier is ``mult / 2**32 * 2**ls / 2**rs``.
    """
    shift = np.asarray(shift, np.int64)
    acc = np.asarray(acc, np.int64) << shift[..., 0]
    return rshift_round(smmulr(acc, mult), shift[..., 1])


def requant_word(rs, bias):
    """The C's second requantization word: ``(1 + 2 * bias) * 256 + (rs - 1)`` (int64 array).

    The generated C adds a row's bias inside ``requantize``'s rounding:
    ``((v >> (rs - 1)) + 1 + 2 * bias) >> 1 == rshift_round(v, rs) + bias`` for any integer bias
    (``requantize_word``); the low byte holds the shift, the rest the rounding term.
    """
    return (1 + 2 * np.asarray(bias, np.int64)) * 256 + (np.asarray(rs, np.int64) - 1)


def requantize_word(acc, mult, ls, word):
    """Twin of the C ``requantize(acc << ls, {mult, word})``: ``requantize(acc, mult, [ls, rs]) + bias``
    computed the C's way, from ``word = requant_word(rs, bias)``."""
    word = np.asarray(word, np.int64)
    v = smmulr(np.asarray(acc, np.int64) << np.asarray(ls, np.int64), mult)
    return ((v >> (word & 255)) + (word >> 8)) >> 1


def sat16(x):
    return np.clip(np.asarray(x, np.int64), -32768, 32767)


def make_table(fn) -> np.ndarray:
    """``fn`` sampled at 257 points spanning the Q3.12 range [-8, 8], as Q0.15 int16."""
    step = 1 << (16 - TABLE_BITS)
    xs = (np.arange((1 << TABLE_BITS) + 1, dtype=np.float64) * step - 32768) / (1 << GATE_FRAC)
    return np.clip(np.round(fn(xs) * 32768), -32767, 32767).astype(np.int16)


SIGMOID_TABLE = make_table(lambda v: 1.0 / (1.0 + np.exp(-v)))
TANH_TABLE = make_table(np.tanh)


def lut(table: np.ndarray, x):
    """Table lookup with linear interpolation: Q3.12 in (saturated to int16), Q0.15 out."""
    u = sat16(x) + 32768  # 0 .. 65535
    idx = u >> (16 - TABLE_BITS)
    frac = u & ((1 << (16 - TABLE_BITS)) - 1)
    t = table.astype(np.int64)
    lo, hi = t[idx], t[idx + 1]
    return lo + rshift_round((hi - lo) * frac, 16 - TABLE_BITS)


LUT_ORIGIN = 32768  # the C's table index origin: it looks up u = v + 32768 (see lut_packed)


def pack_table(table: np.ndarray) -> np.ndarray:
    """The C's table words: for each of the 256 intervals, the step ``hi - lo`` in the low halfword
    and ``lo`` in the high one (int32 values, as int64), read by one load and one SMLAD."""
    t = table.astype(np.int64)
    lo, step = t[:-1], t[1:] - t[:-1]
    assert np.all(np.abs(step) < 2 ** 15), "a table step does not fit a halfword"
    word = (step & 0xFFFF) | ((lo & 0xFFFF) << 16)
    return np.where(word >= 2 ** 31, word - 2 ** 32, word)


def lut_packed(words: np.ndarray, u):
    """Twin of the C ``lut(words, u)``: ``u = v + LUT_ORIGIN`` saturated to [0, 65535]; equals
    ``lut(table, v)`` for ``words = pack_table(table)``."""
    u = np.clip(np.asarray(u, np.int64), 0, 65535)
    w = np.asarray(words, np.int64)[u >> (16 - TABLE_BITS)]
    step = ((w & 0xFFFF) ^ 0x8000) - 0x8000  # the low halfword, sign-extended
    return (w >> 16) + ((step * (u & ((1 << (16 - TABLE_BITS)) - 1)) + 128) >> 8)


def cell_shifts(cf: int) -> tuple[int, int]:
    """(up, down) = (max(0, 13 - cf), max(0, cf - 13)): the C's shifts from the cell state's
    Q(15-cf).cf to the tanh table's Q3.12 (see ``cell_table_input``)."""
    return max(0, GATE_FRAC + 1 - cf), max(0, cf - GATE_FRAC - 1)


def cell_table_input(c, cf: int):
    """Twin of the C's tanh input for the LSTM cell state: ``((c * 2**up >> down) + 1 + 2 * LUT_ORIGIN) >> 1``,
    which is ``c`` in Q3.12 (``rshift_round(c, cf - 12)`` or ``c << (12 - cf)``) plus ``LUT_ORIGIN``; the
    table lookup saturates it as ``lut`` saturates ``c12`` (``sat16``)."""
    up, down = cell_shifts(cf)
    return (((np.asarray(c, np.int64) << up) >> down) + 1 + 2 * LUT_ORIGIN) >> 1


def quantize_input(x: np.ndarray, scale: float) -> np.ndarray:
    """Normalized float frames -> int8 ``clip(round(x / scale), -128, 127)``, rounding half away
    from zero (as ``runtime.quant.quantize``, which does this for the C backend)."""
    v = np.asarray(x, np.float64) / scale
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -128, 127).astype(np.int8)


def dequantize_scores(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, np.float64).astype(np.float32) * np.float32(2.0 ** -SCORE_FRAC)


# ---------------------------------------------------------------------------------------------
# int8 model: one step and a whole sequence, batched over the leading axis
def int_init_state(qm: dict, batch: int) -> list:
    """Zero state: per layer ``h`` (and ``c`` for LSTM), int64 arrays [batch, H]."""
    out = []
    for layer in qm["layers"]:
        h = np.zeros((batch, layer["hidden"]), np.int64)
        out.append((h, h.copy()) if qm["arch"] == "lstm" else h)
    return out


def _gates(layer: dict, x16: np.ndarray, h: np.ndarray):
    """Input and recurrent parts of the gate pre-activations, each requantized to Q3.12."""
    acc_x = x16 @ layer["wx"].astype(np.int64).T  # int32 accumulator in C
    acc_h = h @ layer["wh"].astype(np.int64).T
    gx = requantize(acc_x, layer["wx_mult"], layer["wx_shift"]) + layer["bias"].astype(np.int64)
    gh = requantize(acc_h, layer["wh_mult"], layer["wh_shift"])
    return gx, gh


def int_lstm_layer(layer: dict, x16, state):
    h, c = state
    H, cf = layer["hidden"], layer["cell_frac"]
    gx, gh = _gates(layer, x16, h)
    pre = gx + gh
    i = lut(SIGMOID_TABLE, pre[:, 0:H])
    f = lut(SIGMOID_TABLE, pre[:, H:2 * H])
    g = lut(TANH_TABLE, pre[:, 2 * H:3 * H])
    o = lut(SIGMOID_TABLE, pre[:, 3 * H:4 * H])
    c = sat16(rshift_round(f * c, 15) + rshift_round(i * g, 30 - cf))  # c' = f*c + i*g
    c12 = rshift_round(c, cf - GATE_FRAC) if cf > GATE_FRAC else sat16(c << (GATE_FRAC - cf))
    h = rshift_round(o * lut(TANH_TABLE, c12), 15)  # h' = o * tanh(c')
    return h, (h, c)


def int_gru_layer(layer: dict, x16, h):
    H = layer["hidden"]
    gx, gh = _gates(layer, x16, h)
    r = lut(SIGMOID_TABLE, gx[:, 0:H] + gh[:, 0:H])
    z = lut(SIGMOID_TABLE, gx[:, H:2 * H] + gh[:, H:2 * H])
    hn = gh[:, 2 * H:] + layer["bias_hn"].astype(np.int64)  # W_hn h + b_hn
    n = lut(TANH_TABLE, gx[:, 2 * H:] + rshift_round(r * hn, 15))  # tanh(W_in x + b_in + r*(...))
    h = n + rshift_round(z * (h - n), 15)  # h' = (1-z)*n + z*h = n + z*(h-n)
    return h, h


def int_head(qm: dict, h: np.ndarray) -> np.ndarray:
    acc = h @ qm["head_w"].astype(np.int64).T
    return requantize(acc, qm["head_mult"], qm["head_shift"]) + qm["head_bias"].astype(np.int64)


def int_step(qm: dict, xq: np.ndarray, state: list):
    """One int8 frame batch ``[B, C]`` -> (int32 scores [B, K], new state)."""
    x16 = np.asarray(xq, np.int64)  # int8 input widened to int16 (the C copies it)
    new_state = []
    for layer, s in zip(qm["layers"], state):
        fn = int_lstm_layer if qm["arch"] == "lstm" else int_gru_layer
        x16, s = fn(layer, x16, s)
        new_state.append(s)
    return int_head(qm, x16), new_state


def int_run(qm: dict, xq: np.ndarray, stream: bool = False) -> np.ndarray:
    """int8 sequences ``[B, T, C]`` -> int32 scores ``[B, K]`` (``[B, T, K]`` when ``stream``)."""
    xq = np.asarray(xq)
    state = int_init_state(qm, xq.shape[0])
    outs = []
    for t in range(xq.shape[1]):
        y, state = int_step(qm, xq[:, t], state)
        outs.append(y)
    return np.stack(outs, 1) if stream else outs[-1]


# ---------------------------------------------------------------------------------------------
# float32 model (what the float C computes; also used to calibrate the int8 model)
def _sigmoid(v):
    with np.errstate(over="ignore"):  # v < -709: exp(-v) = inf and the result is exactly 0, as it should be
        return 1.0 / (1.0 + np.exp(-v))


def float_run(fm: dict, x: np.ndarray, stream: bool = False, collect_cell: bool = False):
    """Float sequences ``[B, T, C]`` -> scores ``[B, K]`` (or ``[B, T, K]``).

    With ``collect_cell`` also returns the largest ``|c|`` per LSTM layer (calibration).
    """
    x = np.asarray(x, np.float64)
    B, T, _ = x.shape
    hs = [np.zeros((B, L["hidden"])) for L in fm["layers"]]
    cs = [np.zeros((B, L["hidden"])) for L in fm["layers"]]
    cmax = [0.0] * len(fm["layers"])
    outs = []
    for t in range(T):
        inp = x[:, t]
        for li, L in enumerate(fm["layers"]):
            H = L["hidden"]
            gx = inp @ L["w_ih"].T + L["b_ih"]
            gh = hs[li] @ L["w_hh"].T + L["b_hh"]
            if fm["arch"] == "lstm":
                g = gx + gh
                i, f = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H])
                gg, o = np.tanh(g[:, 2 * H:3 * H]), _sigmoid(g[:, 3 * H:])
                cs[li] = f * cs[li] + i * gg
                cmax[li] = max(cmax[li], float(np.abs(cs[li]).max(initial=0)))
                hs[li] = o * np.tanh(cs[li])
            else:
                r = _sigmoid(gx[:, :H] + gh[:, :H])
                z = _sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
                n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
                hs[li] = (1 - z) * n + z * hs[li]
            inp = hs[li]
        if stream or t == T - 1:
            outs.append(inp @ fm["head_w"].T + fm["head_b"])
    y = np.stack(outs, 1) if stream else outs[-1]
    return (y, cmax) if collect_cell else y
