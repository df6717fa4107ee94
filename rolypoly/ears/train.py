"""Training the onset network on the development corpus, leaving one family out.

For every instrument family a model is trained on the other families (plus made-up
negatives: silence, noise, hum, DC, clipped noise), its latency and threshold chosen on
those same families, and it is scored on the held-out family: the honest figure for an
instrument never heard.  The shipped model (``models/onsets.pt``) is then trained on all
families the same way; the fold models go to ``models/onsets_lofo.npz`` so that
``rolypoly bench onsets --corpus`` can score them next to the cue detector.

Examples
--------
>>> from rolypoly.ears.train import negatives
>>> [name for name, _ in negatives(48000, seconds=0.5)][:3]
['silence', 'white_-20dB', 'white_-50dB']
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rolypoly.ears import network as N

LEVEL_DB = -30.0            # families are judged at or above this peak level
WINDOW_S = 0.025
MIN_IOI_MS = 40.0
REARM = 0.5                 # re-arm under this share of the threshold
THRESHOLDS = tuple(np.round(np.arange(0.2, 0.91, 0.05), 2))
GAIN_AUG_DB = 20.0          # training crops heard up to this much louder or quieter
LOFO_FILE = N.MODEL_FILE.with_name("onsets_lofo.npz")


@dataclass
class Clip:
    """One training/evaluation sequence: features, levels, targets, true onsets."""
    family: str
    name: str
    level_db: float
    feats: np.ndarray
    level: np.ndarray
    target: np.ndarray
    truth: np.ndarray


def negatives(sr: int, seconds: float = 6.0, seed: int = 0):
    """Made-up inputs with no onset: silence, steady noise at several levels, hum, DC, clipping."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = [("silence", np.zeros(n))]
    for db in (-20.0, -50.0):
        out.append((f"white_{db:.0f}dB", rng.standard_normal(n) * 10 ** (db / 20)))
    pink = np.cumsum(rng.standard_normal(n))
    pink -= np.convolve(pink, np.ones(2048) / 2048, "same")
    out.append(("brown_-30dB", pink / (np.std(pink) + 1e-9) * 10 ** (-30 / 20)))
    out.append(("hum_-30dB", 10 ** (-30 / 20) * (np.sin(2 * np.pi * 50 * t) + 0.3 * np.sin(2 * np.pi * 150 * t))))
    out.append(("dc_0.3", np.full(n, 0.3) + rng.standard_normal(n) * 1e-4))
    out.append(("clipped_noise", np.clip(rng.standard_normal(n) * 2.0, -1, 1)))
    return out


def clips_from(items, sr: int = 48000) -> list[Clip]:
    """Features and targets of corpus items (:func:`rolypoly.ears.corpus.load`)."""
    out = []
    for it in items:
        fe = N.FrontEnd(sr)
        feats, level = fe.process(it.audio)
        out.append(Clip(it.family, it.name, it.level_db, feats, level,
                        N.targets(len(feats), fe.hop, sr, it.truth), np.asarray(it.truth)))
    return out


def negative_clips(sr: int = 48000) -> list[Clip]:
    out = []
    for name, x in negatives(sr):
        fe = N.FrontEnd(sr)
        feats, level = fe.process(x.astype(np.float32))
        out.append(Clip("_negative", name, 0.0, feats, level, np.zeros(len(feats), np.float32), np.zeros(0)))
    return out


def train_model(clips: list[Clip], steps: int = 600, batch: int = 8, frames: int = 1024, lr: float = 3e-3,
                seed: int = 0, pos_weight: float = 4.0, log=None, channels: int = N.CHANNELS,
                band_channels: int = N.BAND_CHANNELS):
    """A fresh :class:`~rolypoly.ears.network.OnsetNet` trained on random crops of ``clips``."""
    import torch

    from rolypoly.model.pretrain import optimizer_step
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = N.build_model(channels, band_channels)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warm = sum((k - 1) * d for k, d in N.LAYERS)  # frames of padded history at a crop's start: not scored
    lengths = np.array([len(c.feats) for c in clips], np.float64)
    share = lengths / lengths.sum()
    pw = torch.tensor(pos_weight)
    model.train()
    for step in range(steps):
        xs, ys = [], []
        for k in rng.choice(len(clips), size=batch, p=share):
            c = clips[k]
            a = int(rng.integers(0, max(1, len(c.feats) - frames)))
            x, y = c.feats[a:a + frames], c.target[a:a + frames]
            if len(x) < frames:
                x = np.pad(x, ((0, frames - len(x)), (0, 0)), mode="edge")
                y = np.pad(y, (0, frames - len(y)))
            # any input level: the absolute level feature shifted by up to +-GAIN_AUG_DB
            x = x.copy()
            x[:, N.N_MELS] += rng.uniform(-GAIN_AUG_DB, GAIN_AUG_DB) / 50.0
            xs.append(x)
            ys.append(y)
        x = torch.from_numpy(np.stack(xs))
        y = torch.from_numpy(np.stack(ys))
        logits = model(x)[:, warm:]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[:, warm:], pos_weight=pw)
        # cosine decay after a short warm-up
        lr_now = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + np.cos(np.pi * step / steps))
        optimizer_step(opt, list(model.parameters()), loss, lr_now, 1.0)
        if log is not None and (step % 100 == 0 or step == steps - 1):
            log(f"step {step} loss {loss.item():.4f}")
    return model.eval()


def probabilities(model, clips: list[Clip]) -> list[np.ndarray]:
    import torch
    with torch.no_grad():
        return [N.sigmoid(model(torch.from_numpy(c.feats[None]))[0].numpy().astype(np.float64)) for c in clips]


def detections(prob: np.ndarray, clip: Clip, threshold: float, latency_s: float,
               min_ioi_ms: float = MIN_IOI_MS, hop_s: float = N.HOP_S) -> np.ndarray:
    """Reported onset times of one clip, by the runtime's :class:`~rolypoly.ears.network.Picker`."""
    picker = N.Picker(threshold, REARM * threshold, int(round(min_ioi_ms / 1000.0 / hop_s)))
    fired = picker.process(prob, clip.level)
    return np.maximum(0.0, (fired + 1) * hop_s - latency_s)


def _counts(det, truth, window=WINDOW_S):
    from rolypoly.metrics import onset_f_measure
    r = onset_f_measure(det, truth, window)
    return np.array([r["tp"], r["n_detected"], r["n_true"]], np.int64), r["delays"]


def _f(c) -> float:
    return 2.0 * c[0] / (c[1] + c[2]) if c[1] + c[2] else 0.0


def score(probs, clips, threshold, latency_s, level_db=LEVEL_DB) -> tuple[dict, list]:
    """Per-family (tp, detected, true) at ±25 ms over clips at or above ``level_db``, and raw delays."""
    per, raw = {}, []
    for p, c in zip(probs, clips):
        if c.family.startswith("_") or c.level_db < level_db:
            continue
        det = detections(p, c, threshold, latency_s)
        cnt, d = _counts(det, c.truth)
        per[c.family] = per.get(c.family, 0) + cnt
        raw.extend((np.asarray(d) + latency_s).tolist())
    return per, raw


def calibrate(probs, clips) -> tuple[float, float]:
    """Threshold and latency chosen on these (training) clips: the latency is the median
    raw delay (matched within ±50 ms), the threshold the best mean family F at ±25 ms."""
    def latency_at(thr):
        raw = []
        for p, c in zip(probs, clips):
            if c.family.startswith("_") or c.level_db < LEVEL_DB:
                continue
            _, d = _counts(detections(p, c, thr, 0.0), c.truth, 0.05)
            raw.extend(np.asarray(d).tolist())
        return float(np.median(raw)) if raw else 0.0

    lat = latency_at(0.5)
    best = max(THRESHOLDS, key=lambda thr: (np.mean([_f(v) for v in score(probs, clips, thr, lat)[0].values()]),
                                            -abs(thr - 0.5)))
    return float(best), latency_at(float(best))


def meta_for(threshold: float, latency_s: float, trained_on, steps: int, seconds: float, model) -> dict:
    return dict(kind="rolypoly onset network", threshold=threshold, rearm=REARM, min_ioi_ms=MIN_IOI_MS,
                latency_s=latency_s, floor_db=N.FLOOR_DB, hop_s=N.HOP_S, n_fft_48k=N.N_FFT_48K, n_mels=N.N_MELS,
                layers=[list(x) for x in N.LAYERS], channels=int(model.mix.out_channels),
                band_channels=int(model.band.out_channels), lookahead_s=N.LOOKAHEAD_S,
                trained_on=sorted(trained_on), steps=steps, train_seconds=round(seconds, 1))


def run(items, steps: int = 600, families=None, lofo: bool = True, out_model=None, out_lofo=None,
        seed: int = 0, log=print) -> dict:
    """Leave-one-family-out training and scoring, then the model on all families.

    Returns ``{"lofo": {family: {...}}, "all": {...}}`` and writes the models.
    """
    import torch
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    clips = clips_from(items)
    negs = negative_clips()
    log(f"features of {len(clips)} chunks in {time.perf_counter() - t0:.1f} s")
    fams = sorted({c.family for c in clips})
    out: dict = {"lofo": {}}
    fold_arrays: dict = {}
    for fam in (families or fams) if lofo else []:
        train = [c for c in clips if c.family != fam] + negs
        held = [c for c in clips if c.family == fam]
        t1 = time.perf_counter()
        model = train_model(train, steps=steps, seed=seed)
        thr, lat = calibrate(probabilities(model, train), train)
        per, raw = score(probabilities(model, held), held, thr, lat)
        f = _f(per.get(fam, np.zeros(3)))
        out["lofo"][fam] = dict(f25=f, threshold=thr, latency_ms=lat * 1000.0,
                                raw_delay_median_ms=float(np.median(raw) * 1000) if raw else float("nan"),
                                onsets=int(per.get(fam, np.zeros(3))[2]), seconds=time.perf_counter() - t1)
        log(f"held out {fam}: F@25ms {f:.3f} (threshold {thr}, latency {lat * 1000:.1f} ms, "
            f"{time.perf_counter() - t1:.0f} s)")
        for k, v in model.state_dict().items():
            fold_arrays[f"{fam}/{k}"] = v.numpy()
        fold_arrays[f"{fam}/meta"] = np.array(json.dumps(meta_for(thr, lat, [f for f in fams if f != fam], steps,
                                                                  time.perf_counter() - t1, model)))
    if out_lofo is not None and fold_arrays:
        from rolypoly.io import atomic_path
        # folds trained by an earlier run (another --families) are kept
        if Path(out_lofo).is_file():
            with np.load(out_lofo) as old:
                kept = {k: old[k] for k in old.files if k.split("/", 1)[0] not in {f.split("/", 1)[0]
                                                                                 for f in fold_arrays}}
            fold_arrays = {**kept, **fold_arrays}
        with atomic_path(out_lofo, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **fold_arrays)
    if out_model is not None:
        t1 = time.perf_counter()
        train = clips + negs
        model = train_model(train, steps=steps, seed=seed)
        thr, lat = calibrate(probabilities(model, train), train)
        per, raw = score(probabilities(model, clips), clips, thr, lat)
        out["all"] = dict(threshold=thr, latency_ms=lat * 1000.0, seconds=time.perf_counter() - t1,
                          train_f25={f: _f(v) for f, v in per.items()})
        N.export(model, out_model, meta_for(thr, lat, fams, steps, time.perf_counter() - t1, model))
        log(f"all families: threshold {thr}, latency {lat * 1000:.1f} ms -> {out_model}")
    return out


def load_lofo(path=None) -> dict:
    """``{family: (weights, meta)}`` of the fold models (:data:`LOFO_FILE`)."""
    path = Path(path) if path is not None else LOFO_FILE
    if not path.is_file():
        return {}
    z = np.load(path)
    out: dict = {}
    for key in z.files:
        fam, name = key.split("/", 1)
        w, m = out.setdefault(fam, ({}, {}))
        if name == "meta":
            m.update(json.loads(str(z[key])))
        else:
            w[name] = z[key].astype(np.float32)
    return out
