"""A small causal onset network: log-mel frames in, an onset probability every hop out.

The model (:class:`OnsetNet`, PyTorch, exported as TorchScript to ``models/onsets.pt``)
is a dilated causal convolution stack over features computed here (:class:`FrontEnd`):

1. conditioning — non-finite samples become silence, samples are limited to ±4 (a
   broken driver's 1e30 must not overflow), a 2nd-order high-pass at 30 Hz removes DC;
2. every ``HOP_S`` (128 samples at 48 kHz) a Hann window of the last ``N_FFT_48K``
   samples (scaled with the rate) gives a power spectrum and ``N_MELS`` mel bands;
3. level normalisation: band levels (dB) less a peak follower of the frame level that
   falls 60 dB in 3 s and never goes under the silence floor, so a quiet player looks like
   a loud one but silence stays silent; plus the frame level itself (absolute), so quiet
   noise is not mistaken for playing.

The network sees only the past: the output at frame ``t`` depends on frames ``<= t``.
Its training target marks the frames whose window ends 0 to ``LOOKAHEAD_S`` (10 ms)
after a true onset, so it may wait at most that long for evidence.  Peak picking
(:class:`Picker`) fires on the first frame over ``threshold``, then re-arms once the
probability falls under ``rearm`` and ``min_ioi_ms`` has passed.  The reported time is
the frame's end less the model's stored ``latency_s`` (its median delay on the corpus
it was trained on): threshold, re-arm and latency are properties of the exported model.

:class:`Runtime` runs a model incrementally in numpy: one frame costs one FFT, one mel
product and one small matrix product per layer, with a short history per layer (no
recomputation of the past); stepping it equals :meth:`OnsetNet.forward` on the whole
sequence.  Training: :mod:`rolypoly.ears.train`.

Examples
--------
>>> import numpy as np
>>> from rolypoly.ears.network import FrontEnd
>>> fe = FrontEnd(48000)
>>> feats, level = fe.process(np.zeros(48000, np.float32))
>>> feats.shape, bool(np.all(level < -70))
((375, 65), True)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rolypoly.errors import ConfigError, ModelError

HOP_S = 128 / 48000          # one frame every 2.67 ms whatever the sample rate
N_FFT_48K = 1024             # analysis window at 48 kHz (scaled to the nearest power of two)
N_MELS = 64
FMIN, FMAX = 30.0, 16000.0
HIGHPASS_HZ = 30.0
FLOOR_DB = -70.0             # the level follower never goes under this (silence stays silent)
RELEASE_S = 3.0              # ... and falls 60 dB in this long
LOOKAHEAD_S = 0.010          # the target: frames ending up to this long after an onset
N_FEATURES = N_MELS + 1
MODEL_FILE = Path(__file__).resolve().parents[2] / "models" / "onsets.pt"

# the architecture: a small convolution shared by every band (BAND_KERNEL: bands x frames,
# BAND_CHANNELS maps; a pitch-independent "is this band rising" detector), mixed to CHANNELS,
# then residual dilated causal convolutions, (kernel, dilation) per layer
BAND_KERNEL = (3, 5)
BAND_CHANNELS = 8
LAYERS = ((3, 1), (3, 2), (3, 4), (3, 8), (3, 16))
CHANNELS = 64


def mel_filters(sr: int, n_fft: int, n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Triangular filters on the mel scale (HTK formula), ``(n_mels, n_fft // 2 + 1)``,
    each summing to one (a band's level is its mean power, whatever its width).

    Examples
    --------
    >>> fb = mel_filters(48000, 1024)
    >>> fb.shape, bool(np.allclose(fb.sum(axis=1), 1.0))
    ((64, 513), True)
    """
    fmax = min(fmax, 0.5 * sr)
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft

    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    edges = 700.0 * (10.0 ** (np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    fb = np.zeros((n_mels, freqs.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[m] = np.clip(np.minimum(up, down), 0.0, None)
        if fb[m].sum() == 0.0:  # narrower than a bin: the nearest bin
            fb[m, int(np.argmin(np.abs(freqs - mid)))] = 1.0
        fb[m] /= fb[m].sum()
    return fb.astype(np.float32)


class FrontEnd:
    """Streaming features: feed samples (any split), get ``(frames, N_FEATURES)`` back.

    Any split of the input into blocks gives the same frames as one call on the whole.

    Parameters
    ----------
    sr : int
        Sample rate; the hop is ``HOP_S`` seconds and the window ``N_FFT_48K`` scaled.
    gain_db : float
        Input trim (the sound check's).
    floor_db : float
        The level follower's floor (the silence floor).
    """

    def __init__(self, sr: int, gain_db: float = 0.0, floor_db: float = FLOOR_DB):
        from scipy.signal import butter
        self.sr = int(sr)
        self.hop = max(1, int(round(HOP_S * self.sr)))
        self.n_fft = int(2 ** round(math.log2(N_FFT_48K * self.sr / 48000.0)))
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.n_fft) / self.n_fft)).astype(np.float32)
        # a full-scale sine's bin has power ~1
        self.scale = np.float32(2.0 / self.window.sum())
        self.fb = mel_filters(self.sr, self.n_fft)
        self.gain = float(10.0 ** (gain_db / 20.0))
        self.floor_db = float(floor_db)
        self.fall_db = 60.0 * self.hop / (RELEASE_S * self.sr)
        self._b, self._a = butter(2, HIGHPASS_HZ / (0.5 * self.sr), "highpass")
        self.reset()

    def reset(self) -> None:
        self._zi = np.zeros(2)
        self._buf = np.zeros(self.n_fft, np.float32)
        self._fill = self.n_fft - self.hop     # samples in _buf; a frame every hop more
        self._follow = self.floor_db
        self.n_bad = 0                         # non-finite samples seen in the last call
        self.stats = np.zeros(3)               # last call: non-finite, clipping samples, sum

    def _condition(self, x: np.ndarray) -> np.ndarray:
        y = np.empty(x.size, np.float32)
        self.n_bad = _condition(x, y, self.gain, self._b, self._a, self._zi, self.stats)
        return y

    def process(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Features and frame levels (dB) of every frame completed by ``x`` (mono)."""
        x = self._condition(np.asarray(x).ravel())
        # frames end at every hop-th sample; the buffer keeps the window's past
        stream = np.concatenate([self._buf[: self._fill], x])
        n_frames = (stream.size - self.n_fft) // self.hop + 1 if stream.size >= self.n_fft else 0
        if n_frames:
            if n_frames == 1:   # the live case: one block, one frame (a 1-D transform is cheaper)
                spec = np.fft.rfft(stream[: self.n_fft] * self.window)[None, :]
            else:
                idx = np.arange(self.n_fft)[None, :] + self.hop * np.arange(n_frames)[:, None]
                spec = np.fft.rfft(stream[idx] * self.window, axis=1)
            power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32) * self.scale ** 2
            mel = power @ self.fb.T
            band_db = 10.0 * np.log10(mel + 1e-12)
            level_db = 10.0 * np.log10(mel.mean(axis=1) * self.fb.shape[0] + 1e-12)
            follow = np.empty(n_frames, np.float64)
            f = self._follow
            for t in range(n_frames):
                f = max(float(level_db[t]), f - self.fall_db, self.floor_db)
                follow[t] = f
            self._follow = f
            feats = np.empty((n_frames, N_FEATURES), np.float32)
            feats[:, :N_MELS] = (np.clip(band_db - follow[:, None], -80.0, 5.0) + 40.0) / 40.0
            feats[:, N_MELS] = (np.clip(level_db, -100.0, 0.0) + 50.0) / 50.0
            rest = stream[n_frames * self.hop:]
        else:
            feats = np.zeros((0, N_FEATURES), np.float32)
            level_db = np.zeros(0, np.float32)
            rest = stream
        keep = rest[-self.n_fft:]
        self._buf[: keep.size] = keep
        self._fill = keep.size
        return feats, np.asarray(level_db, np.float32)


def _condition_py(x, y, gain, b, a, zi, stats):
    """Non-finite samples to zero, trim, limit to +-4, the 2nd-order high-pass (transposed
    direct form II, state ``zi`` kept); ``stats`` gets the counts of non-finite and
    clipping (|x| >= 0.999) samples and the sum of the rest (the DC check)."""
    bad = 0
    clip = 0
    total = 0.0
    z0, z1 = zi[0], zi[1]
    for n in range(x.size):
        v = float(x[n])
        if not np.isfinite(v):
            bad += 1
            v = 0.0
        elif abs(v) >= 0.999:
            clip += 1
        total += v
        v = min(4.0, max(-4.0, v * gain))
        out = b[0] * v + z0
        z0 = b[1] * v - a[1] * out + z1
        z1 = b[2] * v - a[2] * out
        y[n] = out
    zi[0], zi[1] = z0, z1
    stats[0] = bad
    stats[1] = clip
    stats[2] = total
    return bad


try:
    from numba import njit
    _condition = njit(cache=True)(_condition_py)
except ImportError:  # numba is a dependency; this keeps the module importable without it
    _condition = _condition_py


def _step_py(frame, band_hist, band_w, band_b, mix_w, mix_b, conv_w, conv_b, dil, hist, pos, head_w, head_b,
             mix_in, taps, h):
    """One frame through the network (numba): the band history shifted, the band maps,
    the mix, each layer's ring of past inputs; returns the logit."""
    kf, n_band, kt = band_w.shape
    n_mels = band_hist.shape[1] - 2 * (kf // 2)
    for j in range(kt - 1):
        band_hist[j, :] = band_hist[j + 1, :]
    for f in range(n_mels):
        band_hist[kt - 1, f + kf // 2] = frame[f]
    for c in range(n_band):
        for f in range(n_mels):
            acc = band_b[c]
            for i in range(kf):
                for j in range(kt):
                    acc += band_w[i, c, j] * band_hist[j, f + i]
            mix_in[c * n_mels + f] = acc if acc > 0.0 else 0.0
    mix_in[n_band * n_mels] = frame[n_mels]
    y = np.dot(mix_w, mix_in) + mix_b
    for o in range(h.size):
        h[o] = y[o] if y[o] > 0.0 else 0.0
    n_layers, C, k = conv_w.shape[0], h.size, taps.size // h.size
    for layer in range(n_layers):
        d = dil[layer]
        R = (k - 1) * d + 1
        p = (pos[layer] + 1) % R
        pos[layer] = p
        hist[layer, p, :] = h
        for j in range(k):
            taps[j * C:(j + 1) * C] = hist[layer, (p - (k - 1 - j) * d) % R, :]
        y = np.dot(conv_w[layer], taps) + conv_b[layer]
        for o in range(C):
            if y[o] > 0.0:
                h[o] += y[o]
    return float(np.dot(head_w, h)) + head_b


try:
    from numba import njit as _njit
    _step = _njit(cache=True)(_step_py)
except ImportError:
    _step = _step_py


def targets(n_frames: int, hop: int, sr: int, onsets_s) -> np.ndarray:
    """Frame targets: 1 where the frame's window ends 0 to ``LOOKAHEAD_S`` after an onset.

    Examples
    --------
    >>> targets(10, 128, 48000, [0.004]).nonzero()[0].tolist()   # frames ending 5.3 .. 13.3 ms
    [1, 2, 3, 4]
    """
    y = np.zeros(n_frames, np.float32)
    ends = (np.arange(n_frames) + 1) * hop / sr
    for t in np.asarray(onsets_s, dtype=np.float64).ravel():
        y[(ends >= t) & (ends < t + LOOKAHEAD_S)] = 1.0
    return y


# ----------------------------------------------------------------------------------
# the model (torch only here)

def build_model(channels: int = CHANNELS, band_channels: int = BAND_CHANNELS, layers=LAYERS):
    """A fresh :class:`OnsetNet` (imports torch)."""
    import torch
    import torch.nn.functional as F

    class OnsetNet(torch.nn.Module):
        """Band convolution, mixing, dilated causal convolutions: ``(B, T, F)`` -> logits ``(B, T)``."""

        def __init__(self):
            super().__init__()
            kf, kt = BAND_KERNEL
            self.band = torch.nn.Conv2d(1, band_channels, (kf, kt))
            self.mix = torch.nn.Conv1d(band_channels * N_MELS + 1, channels, 1)
            self.convs = torch.nn.ModuleList([torch.nn.Conv1d(channels, channels, k, dilation=d) for k, d in layers])
            self.head = torch.nn.Conv1d(channels, 1, 1)
            self.pads = [(k - 1) * d for k, d in layers]
            self.band_pad = [kt - 1, 0, kf // 2, kf // 2]
            self.n_mels = N_MELS

        def forward(self, feats: torch.Tensor) -> torch.Tensor:
            B, T = feats.shape[0], feats.shape[1]
            bands = feats[:, :, :self.n_mels].transpose(1, 2).unsqueeze(1)          # (B, 1, bands, T)
            # time padded on the left only (causal), bands on both sides
            b = torch.relu(self.band(F.pad(bands, self.band_pad)))             # (B, C, bands, T)
            h = torch.relu(self.mix(torch.cat([b.reshape(B, -1, T), feats[:, :, self.n_mels:].transpose(1, 2)], 1)))
            i = 0
            for conv in self.convs:
                h = h + torch.relu(conv(F.pad(h, (self.pads[i], 0))))
                i += 1
            return self.head(h)[:, 0, :]

    return OnsetNet()


def export(model, path, meta: dict) -> Path:
    """TorchScript ``model`` to ``path`` with ``meta`` (threshold, latency ...) as
    ``meta.json`` inside; written atomically."""
    import torch

    from rolypoly.io import atomic_path
    scripted = torch.jit.script(model.eval())
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"meta.json": json.dumps(meta, indent=1)})
    return path


def load(path=None) -> tuple[dict, dict]:
    """Weights (numpy) and meta of an exported model (default ``models/onsets.pt``)."""
    import torch
    path = Path(path) if path is not None else MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{path}: no onset network here; train one with `rolypoly data train-onsets`")
    extra = {"meta.json": ""}
    try:
        mod = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra["meta.json"] or "{}")
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: not an onset network TorchScript file ({exc})") from None
    weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in mod.state_dict().items()}
    return weights, meta


class Runtime:
    """One model run frame by frame in numpy; keeps a short input history per layer.

    Parameters
    ----------
    weights : dict
        ``state_dict`` of an :class:`OnsetNet` as numpy arrays.
    """

    def __init__(self, weights: dict, layers=LAYERS):
        try:
            w = weights["band.weight"]                              # (C, 1, kf, kt)
            self.band_w = np.ascontiguousarray(w[:, 0].transpose(1, 0, 2))   # (kf, C, kt)
            self.band_b = weights["band.bias"].astype(np.float32)
            self.mix_w = np.ascontiguousarray(weights["mix.weight"][:, :, 0])
            self.mix_b = weights["mix.bias"].astype(np.float32)
            self.layers = []
            for i, (k, d) in enumerate(layers):
                w = weights[f"convs.{i}.weight"]           # (out, in, k)
                self.layers.append((np.ascontiguousarray(w.transpose(0, 2, 1).reshape(w.shape[0], -1)),
                                    weights[f"convs.{i}.bias"].astype(np.float32), k, d, w.shape[1]))
            self.head_w = weights["head.weight"][0, :, 0].astype(np.float32)
            self.head_b = float(weights["head.bias"][0])
        except KeyError as exc:
            raise ModelError(f"onset network: weight {exc} missing (not this architecture)") from None
        # the layers stacked for the compiled step (every layer is C -> C with one kernel size)
        ks = {k for _, _, k, _, _ in self.layers}
        if len(ks) != 1 or any(w.shape[0] != w.shape[1] // k for w, _, k, _, _ in self.layers):
            raise ModelError("onset network: every dilated layer must have one kernel size and C -> C channels")
        self.conv_w = np.ascontiguousarray(np.stack([w for w, _, _, _, _ in self.layers]))
        self.conv_b = np.ascontiguousarray(np.stack([b for _, b, _, _, _ in self.layers]))
        self.dil = np.array([d for _, _, _, d, _ in self.layers], np.int64)
        self.reset()

    def reset(self) -> None:
        kf, kt = BAND_KERNEL
        # the band history: kt frames (oldest first) of the bands padded with kf // 2 zeros each side
        self.band_hist = np.zeros((kt, N_MELS + 2 * (kf // 2)), np.float32)
        self.hist = [np.zeros(((k - 1) * d + 1, c_in), np.float32) for _, _, k, d, c_in in self.layers]
        self._mix_in = np.zeros(self.mix_w.shape[1], np.float32)
        C = self.mix_w.shape[0]
        k = self.layers[0][2]
        self.ring = np.zeros((len(self.layers), int(self.dil.max()) * (k - 1) + 1, C), np.float32)
        self.pos = np.zeros(len(self.layers), np.int64)
        self._taps = np.zeros(k * C, np.float32)
        self._h = np.zeros(C, np.float32)

    def step(self, frame: np.ndarray) -> float:
        """The logit of one feature frame (``N_FEATURES``,), compiled."""
        return _step(np.asarray(frame, np.float32), self.band_hist, self.band_w, self.band_b, self.mix_w, self.mix_b,
                     self.conv_w, self.conv_b, self.dil, self.ring, self.pos, self.head_w, np.float32(self.head_b),
                     self._mix_in, self._taps, self._h)

    def step_numpy(self, frame: np.ndarray) -> float:
        """:meth:`step` in plain numpy (the reference the compiled step is checked against)."""
        frame = np.asarray(frame, np.float32)
        kf, kt = BAND_KERNEL
        bh = self.band_hist
        bh[:-1] = bh[1:]
        bh[-1, kf // 2: kf // 2 + N_MELS] = frame[:N_MELS]
        # map c at band f = sum over band taps i of W[c, i, :] . bh[:, f + i]
        b = self.band_w[0] @ bh[:, 0:N_MELS]
        for i in range(1, kf):
            b += self.band_w[i] @ bh[:, i:i + N_MELS]
        b += self.band_b[:, None]
        np.maximum(b, 0.0, out=b)                                # (C, bands)
        mix_in = self._mix_in
        mix_in[:-1] = b.ravel()
        mix_in[-1] = frame[N_MELS]
        h = self.mix_w @ mix_in + self.mix_b
        np.maximum(h, 0.0, out=h)
        for i, (w, bias, k, d, _) in enumerate(self.layers):
            hist = self.hist[i]
            hist[:-1] = hist[1:]
            hist[-1] = h
            y = w @ hist[::d].ravel() + bias
            np.maximum(y, 0.0, out=y)
            h = h + y
        return float(self.head_w @ h + self.head_b)

    def run(self, feats: np.ndarray) -> np.ndarray:
        """Logits of consecutive frames (``(T, N_FEATURES)``), continuing the state."""
        return np.array([self.step(f) for f in feats], np.float64)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))


class Picker:
    """Causal peak picking on onset probabilities: fire on the first frame over
    ``threshold`` (and over the silence floor), then wait until the probability is under
    ``rearm`` and ``min_ioi_s`` has passed.

    Examples
    --------
    >>> p = Picker(0.5, 0.3, min_ioi_frames=2)
    >>> p.process(np.array([0.1, 0.6, 0.9, 0.2, 0.7]), np.zeros(5)).tolist()
    [1, 4]
    """

    def __init__(self, threshold: float, rearm: float, min_ioi_frames: int, floor_db: float = FLOOR_DB):
        self.threshold = float(threshold)
        self.rearm = float(rearm)
        self.min_ioi = int(min_ioi_frames)
        self.floor_db = float(floor_db)
        self.reset()

    def reset(self) -> None:
        self.frame = 0
        self.armed = True
        self.last = -10 ** 9

    def process(self, prob: np.ndarray, level_db: np.ndarray) -> np.ndarray:
        """Frame indices (since reset) that fire among these consecutive frames."""
        fired = []
        for p, lv in zip(prob, np.asarray(level_db).tolist()):
            if not self.armed and p < self.rearm:
                self.armed = True
            if self.armed and p >= self.threshold and lv >= self.floor_db and self.frame - self.last >= self.min_ioi:
                fired.append(self.frame)
                self.last = self.frame
                self.armed = False
            self.frame += 1
        return np.asarray(fired, np.int64)


class NetworkDetector:
    """Front end + network + picker: mono samples in, onset times (s, latency taken off) out.

    Parameters
    ----------
    sr : int
        Input sample rate.
    model : str or Path or tuple, optional
        An exported model file (default ``models/onsets.pt``) or ``(weights, meta)``.
    threshold, min_ioi_ms, gain_db, silence_db : optional
        Override the model's stored picking settings / the front end's trim and floor.
    """

    def __init__(self, sr: int, model=None, threshold: float | None = None, min_ioi_ms: float | None = None,
                 gain_db: float = 0.0, silence_db: float | None = None):
        weights, meta = model if isinstance(model, tuple) else load(model)
        self.meta = dict(meta)
        floor = float(silence_db) if silence_db is not None else float(meta.get("floor_db", FLOOR_DB))
        self.front = FrontEnd(sr, gain_db=gain_db, floor_db=floor)
        self.net = Runtime(weights, [tuple(x) for x in meta.get("layers", LAYERS)])
        thr = float(threshold if threshold is not None else meta.get("threshold", 0.5))
        if not 0.0 < thr < 1.0:
            raise ConfigError(f"listen.net_threshold: must be in (0, 1), got {thr!r}")
        ioi = float(min_ioi_ms if min_ioi_ms is not None else meta.get("min_ioi_ms", 40.0)) / 1000.0
        self.frame_s = self.front.hop / self.front.sr
        self.picker = Picker(thr, float(meta.get("rearm", 0.5)) * thr, int(round(ioi / self.frame_s)), floor)
        self.latency_s = float(meta.get("latency_s", 0.0))
        self.last_level_db = FLOOR_DB - 60.0

    def reset(self) -> None:
        self.front.reset()
        self.net.reset()
        self.picker.reset()

    def process(self, mono: np.ndarray) -> list[float]:
        feats, level = self.front.process(mono)
        if not len(feats):
            return []
        self.last_level_db = float(level[-1])
        if len(feats) == 1:   # the live case: no arrays for one value
            z = min(60.0, max(-60.0, self.net.step(feats[0])))
            prob = (1.0 / (1.0 + math.exp(-z)),)
        else:
            prob = sigmoid(self.net.run(feats))
        fired = self.picker.process(prob, level)
        # a frame's decision is made at its window's end
        return [max(0.0, (f + 1) * self.frame_s - self.latency_s) for f in fired.tolist()]
