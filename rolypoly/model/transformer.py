"""The performance model: a small causal encoder-decoder Transformer.

Read top to bottom: configuration, attention, blocks, the model, checkpoints.

The encoder reads the score (9 velocities per row, plus tempo, meter and bar phase);
the decoder reads what has been played (realised drum offsets and the musician's offset
``tau_g`` of earlier rows) and predicts, for every row, 9 velocities, 9 offsets and the
musician's offset ``g`` (19 values, scaled as in :mod:`rolypoly.score.features`).

Output row ``t`` depends on played rows ``< t`` only.  The model shifts the decoder
history itself, so a caller passes rows exactly as
:func:`rolypoly.score.features.encode_rows` builds them (row ``t``'s own offsets are
ignored for row ``t``).

Two attention layouts share the same weights' shapes:

* ``span = 0`` (the first published model): plain causal attention over the rows
  given; a live window of the last ``window`` rows is recomputed every tick, and the
  encoder reads score rows ``<= t`` only.
* ``span = W > 0`` (incremental): every decoder layer attends to the previous ``W`` rows
  only (self-attention and cross-attention alike), so a row's keys and values never
  change once computed and :meth:`RolypolyModel.step` predicts one row from a cache of
  ``W`` rows per layer; the receptive field is ``n_dec_layers * (W - 1) + 1`` rows.  The
  encoder reads ahead: each encoder layer sees ``W - 1`` rows back and ``enc_ahead`` rows
  ahead, and :meth:`RolypolyModel.encode` runs it once over the whole score.  Stepping a
  take row by row gives the outputs of one ``forward`` over the whole take.

Examples
--------
>>> import torch
>>> model = RolypolyModel(ModelConfig(n_enc_layers=1, n_dec_layers=1, n_heads=2, d_model=8, d_ff=16))
>>> model(torch.zeros(2, 5, 22)).shape
torch.Size([2, 5, 19])
>>> inc = RolypolyModel(ModelConfig(n_enc_layers=1, n_dec_layers=2, n_heads=2, d_model=8, d_ff=16,
...                                 span=4, enc_ahead=2)).eval()
>>> x = torch.rand(1, 6, 22)
>>> mem, cache = inc.encode(x), inc.new_cache(1)
>>> ys = [inc.step(x[:, max(k - 1, 0)], x[:, k], k, mem, cache) for k in range(6)]
>>> bool(torch.allclose(torch.stack(ys, 1), inc(x), atol=1e-5))
True
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rolypoly.errors import ModelError
from rolypoly.io import atomic_path
from rolypoly.score.drums import N_DRUMS
from rolypoly.score.features import BPM, N_IN, N_OUT, OFF0, OFF1, OUT_OFF, PHASE, TAU_G, VEL0, VEL1

OUT_OFF0, OUT_OFF1 = OUT_OFF.start, OUT_OFF.stop

#: Version of the checkpoint format and model code; stored with every saved model.
MODEL_FORMAT = 1
#: Bar-phase resolution of the learned position embedding (48 = lcm of 16 and 24 steps).
PHASE_BINS = 48


@dataclass
class ModelConfig:
    """Sizes of the model (``configs/model/*.yaml``)."""

    n_enc_layers: int = 6
    n_dec_layers: int = 6
    n_heads: int = 16
    d_model: int = 64
    d_ff: int = 256
    window: int = 16
    dropout: float = 0.1
    #: Rows each decoder layer attends to (0: plain causal attention over the whole window).
    span: int = 0
    #: Score rows ahead each encoder layer attends to (needs ``span > 0``).
    enc_ahead: int = 0

    @classmethod
    def from_cfg(cls, cfg_model) -> "ModelConfig":
        """Build from a config node or dict, ignoring keys such as ``name``."""
        d = dict(cfg_model)
        if "block_size" in d and "window" not in d:  # checkpoints saved before the rename
            d["window"] = d.pop("block_size")
        known = {f.name for f in fields(cls)}
        conf = cls(**{k: d[k] for k in known if k in d})
        if conf.d_model % conf.n_heads:
            raise ModelError(f"model.d_model={conf.d_model} is not divisible by model.n_heads={conf.n_heads}")
        for k in ("n_enc_layers", "n_dec_layers", "n_heads", "d_model", "d_ff", "window"):
            if int(getattr(conf, k)) < 1:
                raise ModelError(f"model.{k} must be >= 1, got {getattr(conf, k)}")
        if int(conf.span) < 0 or int(conf.enc_ahead) < 0:
            raise ModelError(f"model.span and model.enc_ahead must be >= 0, got {conf.span}, {conf.enc_ahead}")
        if conf.enc_ahead and not conf.span:
            raise ModelError("model.enc_ahead > 0 needs model.span > 0 (a banded, incremental model)")
        if not 0.0 <= conf.dropout < 1.0:
            raise ModelError(f"model.dropout must be in [0, 1), got {conf.dropout}")
        return conf


def band_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, back: int, ahead: int,
                   dropout: float) -> torch.Tensor:
    """Attention of row ``t`` to rows ``t - back .. t + ahead`` only: ``(B, h, T, dh)`` each.

    Short sequences (training windows) use a masked ``T x T`` attention (the fused kernel
    is fastest there); long ones (a whole take) gather each row's band of keys
    (``back + ahead + 1`` of them), so thousands of rows cost ``T`` times the band.
    """
    B, h, T, dh = q.shape
    if T <= 256:
        rel = torch.arange(T, device=q.device)[None, :] - torch.arange(T, device=q.device)[:, None]
        mask = (rel >= -back) & (rel <= ahead)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    width = back + ahead + 1
    kw = F.pad(k, (0, 0, back, ahead)).unfold(2, width, 1)  # (B, h, T, dh, width)
    vw = F.pad(v, (0, 0, back, ahead)).unfold(2, width, 1)
    att = torch.einsum("bhtd,bhtdw->bhtw", q, kw) * (1.0 / math.sqrt(dh))
    pos = torch.arange(T, device=q.device)[:, None] + torch.arange(width, device=q.device)[None, :] - back
    att = att.masked_fill(~((pos >= 0) & (pos < T)), float("-inf"))
    att = torch.softmax(att, dim=-1)
    if dropout > 0.0:
        att = F.dropout(att, dropout)
    return torch.einsum("bhtw,bhtdw->bhtd", att, vw)


class Attention(nn.Module):
    """Multi-head attention over aligned rows: causal (``back < 0``) or banded."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, C = t.shape
        return t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        B, h, T, dh = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, h * dh))

    def keys_values(self, memory: torch.Tensor) -> torch.Tensor:
        """``(2, B, h, T, dh)``: the keys and values of ``memory`` rows."""
        k, v = self.kv(memory).split(memory.shape[2], dim=2)
        return torch.stack([self.heads(k), self.heads(v)])

    def forward(self, x: torch.Tensor, memory: torch.Tensor, back: int = -1, ahead: int = 0) -> torch.Tensor:
        q = self.heads(self.q(x))
        kv = self.keys_values(memory)
        p = self.dropout if self.training else 0.0
        if back < 0:
            y = F.scaled_dot_product_attention(q, kv[0], kv[1], dropout_p=p, is_causal=True)
        else:
            y = band_attention(q, kv[0], kv[1], back, ahead, p)
        return self.merge(y)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff)
        self.out = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.out(F.gelu(self.fc(x))))


class EncoderBlock(nn.Module):
    """Pre-norm block: causal self-attention, feed-forward."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.d_model)
        self.attn = Attention(c.d_model, c.n_heads, c.dropout)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, back: int = -1, ahead: int = 0) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, h, back, ahead))
        return x + self.ff(self.ln2(x))


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention, causal cross-attention to the encoder, feed-forward."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.d_model)
        self.self_attn = Attention(c.d_model, c.n_heads, c.dropout)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.cross_attn = Attention(c.d_model, c.n_heads, c.dropout)
        self.ln3 = nn.LayerNorm(c.d_model)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, back: int = -1) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.drop(self.self_attn(h, h, back, 0))
        x = x + self.drop(self.cross_attn(self.ln2(x), memory, back, 0))
        return x + self.ff(self.ln3(x))

    def step(self, x: torch.Tensor, cache: torch.Tensor, memory_kv: torch.Tensor, k: int, span: int) -> torch.Tensor:
        """One row ``x`` (B, 1, C) at index ``k``; writes its keys/values into ``cache`` (2, B, h, span, dh).

        The cache is a ring of ``span`` slots (attention ignores order: position enters
        through the bar-phase embedding), ``memory_kv`` (2, B, h, N, dh) the encoder's.
        """
        # One row: (B, 1, h, dh) and (B, h, 1, dh) share a memory layout, so plain views
        # replace the transposes of the sequence path (fewer operators: this is the live cost).
        B, C = x.shape[0], x.shape[2]
        att = self.self_attn
        nh = att.n_heads
        dh = C // nh
        h = self.ln1(x)
        q = att.q(h).view(B, nh, 1, dh)
        kv = att.kv(h).view(B, 2, nh, dh)
        slot = k % span
        cache[0, :, :, slot] = kv[:, 0]
        cache[1, :, :, slot] = kv[:, 1]
        n = min(k + 1, span)
        y = F.scaled_dot_product_attention(q, cache[0, :, :, :n], cache[1, :, :, :n])
        x = x + att.proj(y.view(B, 1, C))
        cross = self.cross_attn
        q = cross.q(self.ln2(x)).view(B, nh, 1, dh)
        s = max(0, k - span + 1)
        y = F.scaled_dot_product_attention(q, memory_kv[0, :, :, s:k + 1], memory_kv[1, :, :, s:k + 1])
        x = x + cross.proj(y.view(B, 1, C))
        return x + self.ff(self.ln3(x))


#: Encoder inputs per row: score velocities, bpm, tsig, phase.
N_ENC_IN = 9 + 3
#: Decoder inputs per row: previous row's offsets, tau_g, score velocities and a
#: "has a previous row" flag; this row's score velocities, bpm, tsig, phase.
N_DEC_IN = 9 + 1 + 9 + 1 + 9 + 3


class VelocityCurve(nn.Module):
    """A monotone piecewise-linear map of the velocity outputs (0..1 scale); identity until fitted.

    Knots ``x`` (increasing) map to ``y``; beyond the end knots the end segments extend
    linearly.  :mod:`rolypoly.model.velocity` fits it after training so that the spread of
    the played velocities comes closer to a drummer's (a regression to the mean squeezes
    it); it is part of the weights, so finetuning and export carry it.
    """

    def __init__(self, knots: int = 17):
        super().__init__()
        self.register_buffer("x", torch.linspace(-1.0, 2.0, knots))
        self.register_buffer("y", torch.linspace(-1.0, 2.0, knots))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        i = torch.searchsorted(self.x, v.contiguous()).clamp(1, self.x.numel() - 1)
        x0, x1, y0, y1 = self.x[i - 1], self.x[i], self.y[i - 1], self.y[i]
        return y0 + (v - x0) * (y1 - y0) / (x1 - x0)


class RolypolyModel(nn.Module):
    """Encoder-decoder Transformer mapping ``(B, T, 22)`` rows to ``(B, T, 19)`` predictions.

    Parameters
    ----------
    config : ModelConfig
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.config = c
        self.window = c.window
        self.span = int(c.span)
        self.enc_ahead = int(c.enc_ahead)
        self.n_dec = int(c.n_dec_layers)
        self.config_d_model = int(c.d_model)
        self.config_heads = int(c.n_heads)
        self.phase_bins = PHASE_BINS
        # feature columns as int attributes: TorchScript cannot read module-level globals
        self.c_vel0, self.c_vel1, self.c_off0, self.c_off1 = VEL0, VEL1, OFF0, OFF1
        self.c_bpm, self.c_phase, self.c_tau = BPM, PHASE, TAU_G
        self.enc_in = nn.Linear(N_ENC_IN, c.d_model)
        self.dec_in = nn.Linear(N_DEC_IN, c.d_model)
        # Position enters as a learned embedding of the bar phase, so the model knows where in the bar a row falls at any tempo.
        self.enc_phase = nn.Embedding(PHASE_BINS, c.d_model)
        self.dec_phase = nn.Embedding(PHASE_BINS, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList([EncoderBlock(c) for _ in range(c.n_enc_layers)])
        self.decoder = nn.ModuleList([DecoderBlock(c) for _ in range(c.n_dec_layers)])
        self.ln_enc = nn.LayerNorm(c.d_model)
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, N_OUT)
        self.vel_curve = VelocityCurve()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def receptive_field(self) -> int:
        """Rows of played history an output depends on (the window for ``span = 0``)."""
        if self.span > 0:
            return self.n_dec * (self.span - 1) + 1
        return self.window

    def _phase_index(self, x: torch.Tensor) -> torch.Tensor:
        bins = self.phase_bins
        return torch.remainder(torch.floor(x[..., self.c_phase] * bins + 0.5), bins).long()

    def _previous(self, x: torch.Tensor) -> torch.Tensor:
        """A row's contribution to the next row's decoder input: offsets, tau_g, score velocities, flag."""
        vel = x[..., self.c_vel0:self.c_vel1]
        return torch.cat([x[..., self.c_off0:self.c_off1], x[..., self.c_tau:self.c_tau + 1], vel,
                          torch.ones_like(vel[..., :1])], dim=-1)

    def _decoder_input(self, prev: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        vel = x[..., self.c_vel0:self.c_vel1]
        ctx = x[..., self.c_bpm:self.c_phase + 1]  # bpm, tsig, phase
        return self.dec_in(torch.cat([prev, vel, ctx], dim=-1)) + self.dec_phase(self._phase_index(x))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        vel = x[:, :, self.c_vel0:self.c_vel1]
        ctx = x[:, :, self.c_bpm:self.c_phase + 1]
        enc = self.drop(self.enc_in(torch.cat([vel, ctx], dim=2)) + self.enc_phase(self._phase_index(x)))
        back = self.span - 1 if self.span > 0 else -1
        for blk in self.encoder:
            enc = blk(enc, back, self.enc_ahead)
        return self.ln_enc(enc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict every row: ``x`` (B, T, 22) float32 -> (B, T, 19)."""
        # The decoder's history: row t sees the played offsets and tau_g of row t-1.
        return self.decode(x, self._encode(x))

    def decode(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """The decoder over rows ``x`` (B, T, 22) given the encoder's output ``enc`` (B, T, d_model)."""
        prev = self._previous(x)
        prev = torch.cat([torch.zeros_like(prev[:, :1]), prev[:, :-1]], dim=1)
        dec = self.drop(self._decoder_input(prev, x))
        back = self.span - 1 if self.span > 0 else -1
        for blk in self.decoder:
            dec = blk(dec, enc, back)
        return self._out(self.head(self.ln_f(dec)))

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        """The head's output with the velocity curve applied to its velocity columns."""
        return torch.cat([self.vel_curve(y[..., :self.c_vel1 - self.c_vel0]), y[..., self.c_vel1 - self.c_vel0:]], dim=-1)

    # ------------------------------------------------------------------ incremental decoding

    @torch.jit.export
    def encode(self, score: torch.Tensor) -> torch.Tensor:
        """Encode a whole score ``(B, N, 22)`` once: cross-attention keys/values ``(L, 2, B, h, N, dh)``."""
        enc = self._encode(score)
        return torch.stack([blk.cross_attn.keys_values(enc) for blk in self.decoder])

    @torch.jit.export
    def encode_part(self, score: torch.Tensor, lo: int, hi: int, memory_kv: torch.Tensor) -> None:
        """Score rows ``[lo, hi)`` changed: bring ``memory_kv`` (from :meth:`encode` of ``score``)
        up to date in place.

        The encoder reads ``enc_ahead`` rows ahead and ``span - 1`` back per layer, so the rows
        whose encoding changes are ``[lo - reach, hi + reach)``; they are recomputed from the
        rows they see, exactly as one :meth:`encode` of the whole score would.  Free mode's
        generation writes a bar ahead of the playhead and updates its encoding with this.
        """
        N = score.shape[1]
        n_enc = len(self.encoder)
        ahead = n_enc * self.enc_ahead
        back = n_enc * max(self.span - 1, 0)
        lo, hi = max(0, lo - ahead), min(N, hi + back)
        if hi <= lo:
            return
        a, b = max(0, lo - back), min(N, hi + ahead)
        enc = self._encode(score[:, a:b])
        kv = torch.stack([blk.cross_attn.keys_values(enc) for blk in self.decoder])
        memory_kv[:, :, :, :, lo:hi] = kv[:, :, :, :, lo - a:hi - a]

    @torch.jit.export
    def step_weights(self) -> list[torch.Tensor]:
        """The decoder's weights in :data:`rolypoly.model.stepper.WEIGHT_ORDER`, for the compiled step."""
        w = [self.dec_in.weight, self.dec_in.bias, self.dec_phase.weight]
        for blk in self.decoder:
            w += [blk.ln1.weight, blk.ln1.bias, blk.self_attn.q.weight, blk.self_attn.q.bias, blk.self_attn.kv.weight,
                  blk.self_attn.kv.bias, blk.self_attn.proj.weight, blk.self_attn.proj.bias, blk.ln2.weight,
                  blk.ln2.bias, blk.cross_attn.q.weight, blk.cross_attn.q.bias, blk.cross_attn.proj.weight,
                  blk.cross_attn.proj.bias, blk.ln3.weight, blk.ln3.bias, blk.ff.fc.weight, blk.ff.fc.bias,
                  blk.ff.out.weight, blk.ff.out.bias]
        return w + [self.ln_f.weight, self.ln_f.bias, self.head.weight, self.head.bias, self.vel_curve.x,
                    self.vel_curve.y]

    @torch.jit.export
    def new_cache(self, batch: int) -> torch.Tensor:
        """An empty decoder cache ``(L, 2, batch, h, span, dh)``."""
        c = self.config_d_model
        h = self.config_heads
        return torch.zeros(self.n_dec, 2, batch, h, max(self.span, 1), c // h)

    @torch.jit.export
    def step(self, prev: torch.Tensor, row: torch.Tensor, k: int, memory_kv: torch.Tensor,
             cache: torch.Tensor) -> torch.Tensor:
        """Predict row ``k`` (B, 19) from row ``k-1`` as played (``prev``, ignored at ``k = 0``) and row ``k``.

        ``memory_kv`` comes from :meth:`encode` of the score these rows index; ``cache``
        from :meth:`new_cache`, updated in place.  Needs ``span > 0``.
        """
        if self.span <= 0:
            raise RuntimeError("this model has no incremental decoder (span = 0)")
        p = self._previous(prev) * (1.0 if k > 0 else 0.0)
        dec = self._decoder_input(p, row)[:, None]
        for i, blk in enumerate(self.decoder):
            dec = blk.step(dec, cache[i], memory_kv[i], k, self.span)
        return self._out(self.head(self.ln_f(dec))[:, 0])


# ----------------------------------------------------------------------------- checkpoints

def build_model(cfg_model) -> RolypolyModel:
    """A fresh model from a config node (``cfg.model``) or a :class:`ModelConfig`."""
    conf = cfg_model if isinstance(cfg_model, ModelConfig) else ModelConfig.from_cfg(cfg_model)
    return RolypolyModel(conf)


def save_checkpoint(model: nn.Module, meta: dict, path, extra: dict | None = None) -> None:
    """Write ``{"model": state_dict, "meta": meta, **extra}`` atomically (tmp + rename).

    ``meta`` must hold ``model_config`` (a dict of :class:`ModelConfig` fields).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = model.module if hasattr(model, "module") else model
    meta = dict(meta)
    meta.setdefault("model_config", asdict(raw.config))
    meta.setdefault("format", MODEL_FORMAT)
    payload = {"model": {k: v.detach().cpu() for k, v in raw.state_dict().items()}, "meta": meta}
    payload.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path) -> dict:
    """The raw checkpoint dict; :class:`ModelError` when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data, never code
    except Exception as exc:  # truncated zip, pickle garbage, ...: all are user-facing file problems
        raise ModelError(f"{path}: not a readable rolypoly checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from None
    if not isinstance(payload, dict) or "model" not in payload or "meta" not in payload:
        raise ModelError(f"{path}: not a rolypoly checkpoint (expected keys 'model' and 'meta')")
    meta = payload["meta"]
    if not isinstance(meta, dict) or "model_config" not in meta:
        raise ModelError(f"{path}: checkpoint meta lacks 'model_config'")
    return payload


def load_weights(model: RolypolyModel, state: dict) -> None:
    """``model.load_state_dict(state, strict=True)``, except that weights saved before the
    velocity curve existed load with the identity curve."""
    state = dict(state)
    for k, v in model.state_dict().items():
        if k.startswith("vel_curve.") and k not in state:
            state[k] = v
    model.load_state_dict(state, strict=True)


def load_checkpoint(path) -> tuple[RolypolyModel, dict]:
    """Load eager weights: ``(model in eval mode, meta)``.

    Raises
    ------
    ModelError
        Missing, truncated or corrupt file, or weights of another architecture.

    Examples
    --------
    >>> model, meta = load_checkpoint("models/rolypoly.ckpt")   # doctest: +SKIP
    >>> meta["offset_mu"], meta["version"]                      # doctest: +SKIP
    """
    payload = read_checkpoint(path)
    meta = dict(payload["meta"])
    try:
        conf = ModelConfig.from_cfg(meta["model_config"])
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: bad model_config in checkpoint ({exc})") from None
    model = RolypolyModel(conf)
    try:
        load_weights(model, payload["model"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(f"{path}: weights do not match the rolypoly architecture "
                         f"({first[0] if first else type(exc).__name__}; "
                         f"{first[1].strip() if len(first) > 1 else ''})") from None
    model.eval()
    return model, meta


def offset_scales(a) -> np.ndarray:
    """An offset scale as one factor per drum, ``(9,)`` float64: ``a`` is one number (every
    drum) or one per drum, as ``--offset-scale`` and ``meta["offset_scale"]`` give it.

    Raises
    ------
    ModelError
        A factor outside (0, 2], not finite, or a list of another length than the drums.

    >>> offset_scales(0.9)[:3]
    array([0.9, 0.9, 0.9])
    """
    try:
        v = np.asarray(a, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ModelError(f"offset scale {a!r}: must be a number or {N_DRUMS} numbers") from None
    if v.size == 1:
        v = np.full(N_DRUMS, v[0])
    if v.size != N_DRUMS:
        raise ModelError(f"offset scale {a!r}: one number or one per drum ({N_DRUMS}), got {v.size}")
    if not (np.isfinite(v).all() and (v > 0.0).all() and (v <= 2.0).all()):
        raise ModelError(f"offset scale {a!r}: each factor must be in (0, 2]")
    return v


def scale_offsets(model: RolypolyModel, a) -> None:
    """Multiply the model's drum-offset outputs by ``a`` (the head's offset rows, in place):
    one factor, or one per drum (:func:`offset_scales`).

    Raises
    ------
    ModelError
        A factor outside (0, 2] or not finite.
    """
    v = torch.as_tensor(offset_scales(a), dtype=model.head.weight.dtype)
    with torch.no_grad():
        model.head.weight[OUT_OFF0:OUT_OFF1] *= v[:, None]
        model.head.bias[OUT_OFF0:OUT_OFF1] *= v


def average_checkpoints(paths) -> tuple[RolypolyModel, dict]:
    """The mean of the weights of several checkpoints of one architecture: ``(model, meta)``.

    Weight averaging of checkpoints along one run (or a run and its continuation) lands in
    a flatter point of the loss than any of them, a standard and free improvement; the
    meta is the first file's, with ``averaged_from`` naming every file.

    Raises
    ------
    ModelError
        A file that does not load, or one of another architecture than the first.

    Examples
    --------
    >>> model, meta = average_checkpoints(["runs/v2b/best.pt", "runs/v3/last.pt"])   # doctest: +SKIP
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ModelError("average_checkpoints: no checkpoints given")
    model, meta = load_checkpoint(paths[0])
    total = {k: v.detach().clone().double() for k, v in model.state_dict().items()}
    for p in paths[1:]:
        other, m = load_checkpoint(p)
        if m.get("model_config") != meta.get("model_config"):
            raise ModelError(f"{p}: model {m.get('model_config')} differs from {paths[0]}'s "
                             f"{meta.get('model_config')}; only one architecture can be averaged")
        for k, v in other.state_dict().items():
            total[k] += v.double()
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    model.load_state_dict({k: (v / len(paths)).to(dtypes[k]) for k, v in total.items()})
    meta = dict(meta)
    meta["averaged_from"] = paths
    return model.eval(), meta


def count_params(conf: ModelConfig) -> int:
    """Parameter count of a configuration (builds the model once)."""
    return RolypolyModel(conf).n_params()


__all__ = ["ModelConfig", "RolypolyModel", "band_attention", "build_model", "save_checkpoint", "read_checkpoint",
           "load_checkpoint", "count_params", "MODEL_FORMAT", "N_IN", "N_OUT"]
