"""The decoder step compiled: one row of the incremental model in one numba call.

The TorchScript ``step`` of a small model is bound by operator dispatch, not arithmetic:
about 1,400 aten operators (views included) for some 350 k multiply-adds, 0.33 ms a row on
one core.  This module does the same arithmetic in one compiled function over the weights
the export hands out (``step_weights``), about ten times faster; the engine's tick then
costs a fraction of a millisecond however many rows are due.

The TorchScript step stays the contract and the reference: :class:`rolypoly.model.export.Runtime`
uses this path only for a file that exports ``step_weights`` (the rolypoly decoder's
weights in :data:`WEIGHT_ORDER`), after checking on a made-up score that both paths agree,
and falls back to the TorchScript step otherwise.

Examples
--------
>>> import numpy as np, torch
>>> from rolypoly.model.transformer import ModelConfig, RolypolyModel
>>> net = RolypolyModel(ModelConfig(n_enc_layers=1, n_dec_layers=2, n_heads=4, d_model=16, d_ff=32,
...                                 window=32, span=4, enc_ahead=2)).eval()
>>> score = torch.rand(1, 10, 22)
>>> with torch.no_grad():
...     memory, ref = net.encode(score), net(score)[0].numpy()     # one forward over the rows
>>> st = CompiledStep(net.step_weights(), n_heads=4, span=4)
>>> st.bind(memory.numpy())
>>> rows = score[0].numpy()
>>> out = np.stack([st.step(rows[k - 1] if k else None, rows[k], k) for k in range(10)])
>>> out.shape, bool(np.abs(out - ref).max() < 1e-5)
((10, 19), True)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from rolypoly.errors import ModelError
from rolypoly.score.features import BPM, N_IN, N_OUT, OFF0, OFF1, PHASE, TAU_G, VEL0, VEL1

#: The order of ``step_weights()``: three input tensors, then per decoder layer
#: :data:`LAYER_WEIGHTS`, then the final norm, the head and the velocity curve.
LAYER_WEIGHTS = ("ln1.weight", "ln1.bias", "self_attn.q.weight", "self_attn.q.bias", "self_attn.kv.weight",
                 "self_attn.kv.bias", "self_attn.proj.weight", "self_attn.proj.bias", "ln2.weight", "ln2.bias",
                 "cross_attn.q.weight", "cross_attn.q.bias", "cross_attn.proj.weight", "cross_attn.proj.bias",
                 "ln3.weight", "ln3.bias", "ff.fc.weight", "ff.fc.bias", "ff.out.weight", "ff.out.bias")
WEIGHT_ORDER = (("dec_in.weight", "dec_in.bias", "dec_phase.weight")
                + tuple("decoder.<i>." + n for n in LAYER_WEIGHTS)
                + ("ln_f.weight", "ln_f.bias", "head.weight", "head.bias", "vel_curve.x", "vel_curve.y"))
#: LayerNorm's epsilon (torch's default, which the model uses).
LN_EPS = 1e-5
# Sums may be reordered (vectorised); NaN and inf keep their meaning.
_jit = njit(cache=True, fastmath={"contract", "reassoc"})


@_jit
def _layer_norm(x, w, b, out):
    n = x.shape[0]
    mean = 0.0
    for i in range(n):
        mean += x[i]
    mean /= n
    var = 0.0
    for i in range(n):
        d = x[i] - mean
        var += d * d
    inv = 1.0 / math.sqrt(var / n + LN_EPS)
    for i in range(n):
        out[i] = (x[i] - mean) * inv * w[i] + b[i]


@_jit
def _affine(w, b, x, out):
    """``out = w @ x + b`` for a ``(n_out, n_in)`` weight (torch's Linear layout)."""
    for i in range(w.shape[0]):
        acc = 0.0
        for j in range(w.shape[1]):
            acc += w[i, j] * x[j]
        out[i] = acc + b[i]


@_jit
def _attend(q, keys, values, lo, hi, out):
    """Each head's attention of ``q`` to rows ``lo..hi-1`` of ``keys``/``values`` (h, rows, dh)."""
    n_heads, dh = keys.shape[0], keys.shape[2]
    scale = 1.0 / math.sqrt(dh)
    w = np.empty(hi - lo)
    for hd in range(n_heads):
        top = -1e300
        for r in range(lo, hi):
            s = 0.0
            for d in range(dh):
                s += q[hd * dh + d] * keys[hd, r, d]
            s *= scale
            w[r - lo] = s
            if s > top:
                top = s
        total = 0.0
        for r in range(hi - lo):
            w[r] = math.exp(w[r] - top)
            total += w[r]
        for d in range(dh):
            acc = 0.0
            for r in range(lo, hi):
                acc += w[r - lo] * values[hd, r, d]
            out[hd * dh + d] = acc / total


@_jit
def _step(prev, row, k, din_w, din_b, phase_emb, ln_w, ln_b, wq, bq, wkv, bkv, wp, bp, wcq, bcq, wcp, bcp,
             wfc, bfc, wo, bo, lnf_w, lnf_b, head_w, head_b, curve_x, curve_y, memory, cache, out):
    """One decoder row: see :meth:`CompiledStep.step`; ``cache`` (L, 2, h, span, dh) is written."""
    n_layers, n_heads, span = cache.shape[0], cache.shape[2], cache.shape[3]
    dh = cache.shape[4]
    c = din_b.shape[0]
    nv = VEL1 - VEL0
    # the decoder input: the previous row's offsets, tau_g, score velocities and a flag, then
    # this row's score velocities, bpm, tsig and phase (zeros for the previous row at k = 0)
    g = 1.0 if k > 0 else 0.0
    inp = np.empty(din_w.shape[1], np.float32)
    for i in range(OFF1 - OFF0):
        inp[i] = prev[OFF0 + i] * g
    inp[OFF1 - OFF0] = prev[TAU_G] * g
    base = OFF1 - OFF0 + 1
    for i in range(nv):
        inp[base + i] = prev[VEL0 + i] * g
        inp[base + nv + 1 + i] = row[VEL0 + i]
    inp[base + nv] = g
    for i in range(PHASE + 1 - BPM):
        inp[base + 2 * nv + 1 + i] = row[BPM + i]
    bins = phase_emb.shape[0]
    p = math.floor(np.float32(row[PHASE] * np.float32(bins)) + np.float32(0.5))
    p = int(p) % bins
    x = np.empty(c)
    _affine(din_w, din_b, inp, x)
    for i in range(c):
        x[i] += phase_emb[p, i]
    h = np.empty(c)
    q = np.empty(c)
    kv = np.empty(2 * c)
    y = np.empty(c)
    t = np.empty(c)
    f = np.empty(wfc.shape[1])
    slot = k % span
    n = min(k + 1, span)
    lo = max(0, k - span + 1)
    for li in range(n_layers):
        _layer_norm(x, ln_w[li, 0], ln_b[li, 0], h)
        _affine(wq[li], bq[li], h, q)
        _affine(wkv[li], bkv[li], h, kv)
        for hd in range(n_heads):
            for d in range(dh):
                cache[li, 0, hd, slot, d] = kv[hd * dh + d]
                cache[li, 1, hd, slot, d] = kv[c + hd * dh + d]
        _attend(q, cache[li, 0], cache[li, 1], 0, n, y)
        _affine(wp[li], bp[li], y, t)
        for i in range(c):
            x[i] += t[i]
        _layer_norm(x, ln_w[li, 1], ln_b[li, 1], h)
        _affine(wcq[li], bcq[li], h, q)
        _attend(q, memory[li, 0], memory[li, 1], lo, k + 1, y)
        _affine(wcp[li], bcp[li], y, t)
        for i in range(c):
            x[i] += t[i]
        _layer_norm(x, ln_w[li, 2], ln_b[li, 2], h)
        _affine(wfc[li], bfc[li], h, f)
        for i in range(f.shape[0]):
            f[i] = 0.5 * f[i] * (1.0 + math.erf(f[i] / math.sqrt(2.0)))
        _affine(wo[li], bo[li], f, t)
        for i in range(c):
            x[i] += t[i]
    _layer_norm(x, lnf_w, lnf_b, h)
    _affine(head_w, head_b, h, out)
    # the velocity curve: piecewise linear through the knots, end segments extended
    m = curve_x.shape[0]
    for i in range(nv):
        v = out[i]
        j = 1
        while j < m - 1 and curve_x[j] < v:
            j += 1
        x0, x1, y0, y1 = curve_x[j - 1], curve_x[j], curve_y[j - 1], curve_y[j]
        out[i] = y0 + (v - x0) * (y1 - y0) / (x1 - x0)


class CompiledStep:
    """The decoder's rows, one compiled call each, from the weights of ``step_weights()``.

    Parameters
    ----------
    weights : list of tensors or arrays in :data:`WEIGHT_ORDER`
    n_heads : int, attention heads
    span : int, rows each decoder layer attends to (the cache ring's length)
    """

    def __init__(self, weights, n_heads: int, span: int):
        w = [np.ascontiguousarray(np.asarray(t.detach().numpy() if hasattr(t, "detach") else t, np.float32))
             for t in weights]
        per = len(LAYER_WEIGHTS)
        if len(w) < 9 or (len(w) - 9) % per:
            raise ModelError(f"step_weights: {len(w)} tensors do not follow the rolypoly decoder's order")
        if n_heads < 1 or span < 1:
            raise ModelError(f"step_weights: {n_heads} heads and span {span} must both be >= 1")
        self.n_layers = (len(w) - 9) // per
        self.din_w, self.din_b, self.phase_emb = w[:3]
        # each layer weight stacked over the layers, by its name in LAYER_WEIGHTS
        by = {name: np.stack([w[3 + i * per + j] for i in range(self.n_layers)])
              for j, name in enumerate(LAYER_WEIGHTS)}
        self.ln_w = np.stack([by[f"ln{i}.weight"] for i in (1, 2, 3)], axis=1)
        self.ln_b = np.stack([by[f"ln{i}.bias"] for i in (1, 2, 3)], axis=1)
        self.wq, self.bq = by["self_attn.q.weight"], by["self_attn.q.bias"]
        self.wkv, self.bkv = by["self_attn.kv.weight"], by["self_attn.kv.bias"]
        self.wp, self.bp = by["self_attn.proj.weight"], by["self_attn.proj.bias"]
        self.wcq, self.bcq = by["cross_attn.q.weight"], by["cross_attn.q.bias"]
        self.wcp, self.bcp = by["cross_attn.proj.weight"], by["cross_attn.proj.bias"]
        self.wfc, self.bfc = by["ff.fc.weight"], by["ff.fc.bias"]
        self.wo, self.bo = by["ff.out.weight"], by["ff.out.bias"]
        self.lnf_w, self.lnf_b, self.head_w, self.head_b, self.curve_x, self.curve_y = w[-6:]
        c = self.din_b.shape[0]
        if c % n_heads or self.head_w.shape != (N_OUT, c) or self.din_w.shape[0] != c:
            raise ModelError(f"step_weights: shapes do not fit d_model {c}, {n_heads} heads, span {span}")
        self.n_heads, self.span = int(n_heads), int(span)
        self.cache = np.zeros((self.n_layers, 2, n_heads, span, c // n_heads), np.float32)
        self.memory = None
        self._zero = np.zeros(N_IN, np.float32)
        self._out = np.zeros(N_OUT, np.float32)

    def bind(self, memory: np.ndarray, clear: bool = True) -> None:
        """Use ``memory`` (L, 2, 1, h, N, dh), the export's ``encode`` output (a view, kept up to
        date in place by ``encode_part``); ``clear``: empty the cache (a new take)."""
        if memory.ndim != 6 or memory.shape[0] != self.n_layers or memory.shape[2] != 1:
            raise ModelError(f"memory of shape {memory.shape} does not fit {self.n_layers} decoder layers, batch 1")
        self.memory = memory[:, :, 0]
        if clear:
            self.cache[:] = 0.0

    def step(self, prev_row: np.ndarray | None, row: np.ndarray, k: int) -> np.ndarray:
        """Predict row ``k`` (19 values) from row ``k - 1`` as played (None at ``k = 0``) and row ``k``."""
        if self.memory is None:
            raise ModelError("step before bind: bind the encoder's memory first")
        prev = self._zero if prev_row is None else prev_row
        _step(prev, row, int(k), self.din_w, self.din_b, self.phase_emb, self.ln_w, self.ln_b, self.wq, self.bq,
              self.wkv, self.bkv, self.wp, self.bp, self.wcq, self.bcq, self.wcp, self.bcp, self.wfc, self.bfc,
              self.wo, self.bo, self.lnf_w, self.lnf_b, self.head_w, self.head_b, self.curve_x, self.curve_y,
              self.memory, self.cache, self._out)
        return self._out.copy()
