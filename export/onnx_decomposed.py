"""The recurrence decomposed into plain ops, so ONNX Runtime's static quantizer can quantize it.

ONNX Runtime's static quantizer (``quantize_static``, QDQ) has no rule for the fused ``LSTM``/
``GRU`` ops: it leaves them float and quantizes only the head. Here the same math is written with
ops it does quantize - ``MatMul``/``Gemm``, ``Add``, ``Mul``, ``Sigmoid``, ``Split`` - plus
``Tanh`` (no QDQ rule: it runs float between a DequantizeLinear and the next QuantizeLinear).

Two forms:

- ``DecomposedStep`` (what the pipeline exports): ONE time step with explicit state, the same
  contract as the fused streaming graph (``frame`` + ``state_in_*`` -> ``scores`` +
  ``state_out_*``). The time loop lives in the caller, as on a device. ~20 nodes per layer, so
  quantization takes a second, the graph runs any sequence length, and the state tensors are
  themselves quantized at the graph boundary - how an int8 device carries its state. Calibration
  feeds the (frame, state) pairs met while running the float model over training windows.
- ``UnrolledModel``: the whole window unrolled over a fixed ``seq_len`` (``export_unrolled``),
  kept for measurements. It works, but ONNX Runtime's quantizer is quadratic in the node count
  (calibrate.augment_graph and qdq_quantizer.replace_input_of_all_nodes scan every node for every
  tensor): 100 steps x 2 layers of a GRU are ~4000 tensors, which took 300-530 s to quantize on
  the build box, and gave a 2.3 MB graph running 71 ms per window against 0.12 ms for the fused
  op (docs/export.md).
- A ``Loop``/``Scan`` body was not used: calibration only reads tensors of the top-level graph and
  the QDQ quantizer does not descend into subgraphs, so the MatMuls inside would stay float.

Math (PyTorch's, per docs/contracts.md):

    GRU   r = s(xr + hr), z = s(xz + hz), n = tanh(xn + r * hn), h' = (1 - z) * n + z * h
    LSTM  i, f, g, o = s(.), s(.), tanh(.), s(.);  c' = f * c + i * g;  h' = o * tanh(c')

LSTM cell state: ``c`` is unbounded and accumulates over the window; in int8 (per-tensor, MinMax)
its rounding compounded to a 5-point accuracy loss on watch (top-1 agreement 0.84). The int8 step
graph therefore carries the cell-state path (``state_in/out`` of c, ``f * c``, ``i * g``) in int16,
as TFLite Micro's integer LSTM does; ``cell_state_tensors`` names those tensors.

In the step graph ``1 - z`` is computed as ``s(-(xz + hz))`` (exactly equal in real arithmetic)
so that the update is Mul/Add only: ``Sub`` has no QDQ rule and would stay float.
"""

from __future__ import annotations

import torch
from torch import nn

from export.onnx_float import _export, export_step, state_names


class UnrolledModel(nn.Module):
    """Same scores as ``SequenceModel.forward`` for ``[batch, seq_len, C]``, built from plain ops."""

    def __init__(self, model, seq_len: int):
        super().__init__()
        self.arch = model.spec.arch
        self.seq_len = int(seq_len)
        self.hidden = list(model.spec.hidden_sizes)
        self.w_ih, self.b_x, self.w_hh, self.b_h = (nn.ParameterList() for _ in range(4))
        for layer in model.layers:
            w_ih, w_hh = layer.weight_ih_l0.detach(), layer.weight_hh_l0.detach()
            b_ih, b_hh = layer.bias_ih_l0.detach(), layer.bias_hh_l0.detach()
            if self.arch == "lstm":  # both biases sit outside the gate nonlinearity: fold them
                b_ih, b_hh = b_ih + b_hh, torch.zeros_like(b_hh)
            self.w_ih.append(nn.Parameter(w_ih.t().contiguous(), requires_grad=False))
            self.b_x.append(nn.Parameter(b_ih.clone(), requires_grad=False))
            self.w_hh.append(nn.Parameter(w_hh.t().contiguous(), requires_grad=False))
            self.b_h.append(nn.Parameter(b_hh.clone(), requires_grad=False))
        self.head = nn.Linear(model.head.in_features, model.head.out_features)
        self.head.load_state_dict(model.head.state_dict())

    def _gru_layer(self, xp, w_hh, b_h, hidden):
        h, outs = None, []
        for t in range(self.seq_len):
            xr, xz, xn = torch.split(xp[:, t], hidden, dim=1)
            hp = b_h if h is None else h @ w_hh + b_h
            hr, hz, hn = torch.split(hp, hidden, dim=-1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = n - z * n if t == 0 else n + z * (h - n)  # (1 - z) * n + z * h
            outs.append(h)
        return outs

    def _lstm_layer(self, xp, w_hh, b_h, hidden):
        h = c = None
        outs = []
        for t in range(self.seq_len):
            g_all = xp[:, t] if h is None else xp[:, t] + h @ w_hh
            gi, gf, gg, go = torch.split(g_all, hidden, dim=1)
            i, f, g, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.tanh(gg), torch.sigmoid(go)
            c = i * g if c is None else f * c + i * g
            h = o * torch.tanh(c)
            outs.append(h)
        return outs

    def forward(self, x):
        seq = x
        outs = None
        for k, hidden in enumerate(self.hidden):
            xp = seq @ self.w_ih[k] + self.b_x[k]  # all steps' input projections at once
            layer = self._gru_layer if self.arch == "gru" else self._lstm_layer
            outs = layer(xp, self.w_hh[k], self.b_h[k], hidden)
            if k + 1 < len(self.hidden):
                seq = torch.stack(outs, 1)
        return self.head(outs[-1])


def export_unrolled(model, path, seq_len: int) -> dict:
    """Write the unrolled graph ``x [batch, seq_len, C] -> scores [batch, K]`` (batch dynamic)."""
    spec = model.spec
    module = UnrolledModel(model, seq_len).eval()
    x = torch.zeros(2, seq_len, spec.input_size)
    _export(module, (x,), path, ["x"], ["scores"], {"x": {0: "batch"}, "scores": {0: "batch"}})
    return {"kind": "sequence", "state": None, "seq_len": int(seq_len)}


class DecomposedStep(nn.Module):
    """One step of the model from plain ops: (frame, *states) -> (scores, *new states)."""

    def __init__(self, model):
        super().__init__()
        self.arch = model.spec.arch
        self.hidden = list(model.spec.hidden_sizes)
        self.w_ih, self.w_hh, self.b = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        self.b_hn = nn.ParameterList()
        for layer, h in zip(model.layers, self.hidden):
            b_ih, b_hh = layer.bias_ih_l0.detach(), layer.bias_hh_l0.detach()
            if self.arch == "lstm":
                bias, b_hn = b_ih + b_hh, torch.zeros(0)
            else:  # r and z take both biases; n keeps b_hn inside r * (W_hn h + b_hn)
                bias = torch.cat([b_ih[:2 * h] + b_hh[:2 * h], b_ih[2 * h:]])
                b_hn = b_hh[2 * h:].clone()
            self.w_ih.append(nn.Parameter(layer.weight_ih_l0.detach().t().contiguous(), requires_grad=False))
            self.w_hh.append(nn.Parameter(layer.weight_hh_l0.detach().t().contiguous(), requires_grad=False))
            self.b.append(nn.Parameter(bias.clone(), requires_grad=False))
            self.b_hn.append(nn.Parameter(b_hn, requires_grad=False))
        self.head = nn.Linear(model.head.in_features, model.head.out_features)
        self.head.load_state_dict(model.head.state_dict())

    def forward(self, frame, *flat):
        x, out, k = frame, [], 0
        for layer, h in enumerate(self.hidden):
            xp = x @ self.w_ih[layer] + self.b[layer]
            if self.arch == "gru":
                h_prev = flat[k]
                k += 1
                xr, xz, xn = torch.split(xp, h, dim=1)
                hr, hz, hn = torch.split(h_prev @ self.w_hh[layer], h, dim=1)
                a_z = xz + hz
                r = torch.sigmoid(xr + hr)
                n = torch.tanh(xn + r * (hn + self.b_hn[layer]))
                h_new = torch.sigmoid(a_z * -1.0) * n + torch.sigmoid(a_z) * h_prev
                out.append(h_new)
            else:
                h_prev, c_prev = flat[k], flat[k + 1]
                k += 2
                gi, gf, gg, go = torch.split(xp + h_prev @ self.w_hh[layer], h, dim=1)
                c_new = torch.sigmoid(gf) * c_prev + torch.sigmoid(gi) * torch.tanh(gg)
                h_new = torch.sigmoid(go) * torch.tanh(c_new)
                out += [h_new, c_new]
            x = h_new
        return (self.head(x), *out)


def export_decomposed_step(model, path) -> dict:
    """Write the decomposed step graph (same io as export.onnx_float.export_step)."""
    return export_step(model, path, graph=DecomposedStep(model).eval())


@torch.no_grad()
def step_calibration_feeds(model, windows, batch: int = 2048) -> list[dict]:
    """Inputs the step graph meets while streaming ``windows`` (normalized): one feed per batch.

    Every (frame, state) pair of every step is a calibration sample, so the state ranges are those
    of real sequences, not of zeros.
    """
    import numpy as np
    spec = model.spec
    names = [n[0] for n in state_names(spec)]
    x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    state = model.init_state(len(x))
    rows = {n: [] for n in ["frame", *names]}
    for t in range(x.shape[1]):
        rows["frame"].append(x[:, t].numpy())
        flat = [s for pair in state for s in (pair if isinstance(pair, tuple) else (pair,))]
        for n, s in zip(names, flat):
            rows[n].append(s[0].numpy())
        _, state = model.step(x[:, t], state)
    cols = {n: np.concatenate(v) for n, v in rows.items()}
    total = len(cols["frame"])
    return [{n: np.ascontiguousarray(v[i:i + batch]) for n, v in cols.items()} for i in range(0, total, batch)]


def cell_state_tensors(path) -> list[str]:
    """LSTM step graph: the tensors of the cell-state path (c in and out, ``f * c``, ``i * g``)."""
    import onnx
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    c_outs = [o.name for o in graph.output if o.name.startswith("state_out_")][1::2]  # h, c per layer
    c_ins = [i.name for i in graph.input if i.name.startswith("state_in_")][1::2]
    products = [i for o in c_outs for i in producer[o].input if i in producer and producer[i].op_type == "Mul"]
    return c_ins + c_outs + products
