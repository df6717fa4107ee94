"""Evaluation of a performance model on the GMD test protocol, in three conditions.

* **teacher-forced** — every row is predicted from a window whose earlier rows hold the
  drummer's real offsets: how well the model models a human given the human's history;
* **free-running** — earlier rows hold the model's own earlier predictions (as when it
  plays alone);
* **partner-following** — as free-running, plus ``tau_g`` of every earlier row set to the
  real drummer's mean offset on that row: a partner whose feel the model should pick up.

A window model predicts each row from the window of the ``block`` rows ending at it (the
first rows of a take use the take's first window), exactly as the live engine builds its
windows.  An incremental model (one with ``encode``/``step``) is scored as the engine plays
it: the whole take's score encoded once, then one step per row (teacher-forced: one
``forward`` over the take, which equals stepping it with the real history).
The errors use :mod:`rolypoly.metrics`, the functions that score the baselines; next to
them the velocity distribution: histogram intersection of predicted and real velocities
(8-step bins over 0-127) and the mean velocity per drum.

Examples
--------
>>> from rolypoly.config import load_config
>>> from rolypoly.score.gmd import load_gmd
>>> from rolypoly.metrics import eval_takes
>>> cfg = load_config()                                                # doctest: +SKIP
>>> test = eval_takes(load_gmd(cfg, grid="16"))                        # doctest: +SKIP
>>> res = evaluate(predictor_from_path("models/rolypoly.pt"), test)    # doctest: +SKIP
>>> res["teacher-forced"]["timing_ms"]                                 # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from rolypoly.errors import ModelError
from rolypoly.metrics import per_drum_mae, timing_mae_ms, velocity_mae
from rolypoly.score import features as feat
from rolypoly.score.features import N_OUT, decode_outputs, encode_rows

CONDITIONS = ("teacher-forced", "free-running", "partner-following")
#: A predictor maps a batch of windows ``(B, T, 22)`` float32 to ``(B, T, 19)``.
Predictor = Callable[[np.ndarray], np.ndarray]


def predictor_from_model(model, chunk: int = 512) -> Predictor:
    """Wrap an eager or TorchScript module (batched, no grad)."""
    import torch

    def predict(x: np.ndarray) -> np.ndarray:
        outs = []
        # Batches change size every step of a running evaluation; TorchScript's optimising
        # executor would re-specialise for each shape, so run it unoptimised here.
        with torch.no_grad(), torch.jit.optimized_execution(False):
            for i in range(0, len(x), chunk):
                y = model(torch.from_numpy(np.ascontiguousarray(x[i:i + chunk], dtype=np.float32)))
                outs.append(y.detach().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, x.shape[1], N_OUT), np.float32)
    return predict


def model_from_path(path):
    """``(module, description, window, incremental)`` for a ``.ckpt`` (eager) or TorchScript file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    from rolypoly.model.export import is_torchscript, load_runtime
    if is_torchscript(path):
        rt = load_runtime(path)
        return rt.module, f"{path} ({rt.version})", rt.window, rt.supports_step
    from rolypoly.model.transformer import load_checkpoint
    model, meta = load_checkpoint(path)
    inc = model.span > 0
    return model, f"{path} ({meta.get('version', '?')})", model.receptive_field if inc else model.window, inc


def predictor_from_path(path) -> tuple[Predictor, str, int]:
    """``(predictor, description, block size)`` for a ``.ckpt`` (eager) or TorchScript file."""
    module, desc, window, _ = model_from_path(path)
    return predictor_from_model(module), desc, window


def stepper_from_path(path):
    """``(module, description, receptive field)`` of an incremental model; None for a window model."""
    module, desc, window, inc = model_from_path(path)
    return (module, desc, window) if inc else None


def _take_inputs(r: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model input of a take with real offsets, its hit mask and real per-row mean offsets."""
    hit = r["vel"] > 0
    real_off = r["off"] * hit
    g = (real_off.sum(1) / np.maximum(hit.sum(1), 1)).astype(np.float64)
    x = encode_rows(r["score_vel"], real_off, r["bpm"], r["tsig"], r["phase"], np.zeros(len(hit)))
    return x, hit, g


def _window(t: int, n: int, block: int) -> tuple[int, int]:
    """First row of the window that predicts row ``t`` and ``t``'s position in it."""
    s = max(0, min(t - block + 1, n - block))
    return s, t - s


def teacher_forced(predict: Predictor, xs: list[np.ndarray], block: int) -> list[np.ndarray]:
    """Outputs ``(T, 19)`` for every take, each row from the window ending at it (real history)."""
    windows, where = [], []
    for k, x in enumerate(xs):
        n = len(x)
        w = min(block, n)
        for t in range(n):
            s, pos = _window(t, n, w)
            windows.append(x[s:s + w]); where.append((k, t, pos, w))
    outs = [np.zeros((len(x), N_OUT), np.float32) for x in xs]
    # Group windows by length (short takes have shorter windows) to batch them.
    by_len: dict[int, list[int]] = {}
    for i, (_, _, _, w) in enumerate(where):
        by_len.setdefault(w, []).append(i)
    for w, ids in by_len.items():
        y = predict(np.stack([windows[i] for i in ids]))
        for j, i in enumerate(ids):
            k, t, pos, _ = where[i]
            outs[k][t] = y[j, pos]
    return outs


def running(predict: Predictor, xs: list[np.ndarray], hits: list[np.ndarray], block: int,
            partner: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Free-running outputs: earlier rows hold the model's own offsets (and ``partner`` as tau_g).

    All takes advance together, one row per step, so each step is one batched call.
    """
    from rolypoly.score.features import scale_off
    xs = [x.copy() for x in xs]
    for k, x in enumerate(xs):
        x[:, feat.OFF] = 0.0
        x[:, feat.TAU_G] = scale_off(partner[k]) if partner is not None else 0.0
    outs = [np.zeros((len(x), N_OUT), np.float32) for x in xs]
    longest = max(len(x) for x in xs)
    for t in range(longest):
        live = [k for k, x in enumerate(xs) if len(x) > t]
        groups: dict[int, list[int]] = {}
        for k in live:
            groups.setdefault(min(block, len(xs[k])), []).append(k)
        for w, ks in groups.items():
            batch, pos = [], []
            for k in ks:
                s, p = _window(t, len(xs[k]), w)
                batch.append(xs[k][s:s + w]); pos.append(p)
            y = predict(np.stack(batch))
            for j, k in enumerate(ks):
                row = y[j, pos[j]]
                outs[k][t] = row
                # The played offsets of the score's drums become history for later rows.
                xs[k][t, feat.OFF] = np.clip(row[feat.OUT_OFF], -feat.OFF_CLIP, feat.OFF_CLIP) * hits[k][t]
    return outs


def whole_takes(module, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Teacher-forced outputs of an incremental model: one forward over each whole take."""
    import torch
    outs = []
    with torch.no_grad(), torch.jit.optimized_execution(False):
        for x in xs:
            outs.append(module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None])[0].numpy())
    return outs


def stepped(module, xs: list[np.ndarray], hits: list[np.ndarray],
            partner: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Free-running outputs of an incremental model, all takes stepped together (batch = takes).

    Each take's score is encoded once (its own ``encode``; shorter takes are padded after
    their end, which no real row attends to); row ``k-1`` as played (the model's offsets on
    the score's drums, the partner's tau_g) feeds step ``k``.
    """
    import torch
    from rolypoly.score.features import scale_off
    B, N = len(xs), max(len(x) for x in xs)
    X = np.zeros((B, N, feat.N_IN), np.float32)
    H = np.zeros((B, N, feat.N_DRUMS), np.float32)
    for k, x in enumerate(xs):
        X[k, :len(x)] = x
        X[k, :len(x), feat.OFF] = 0.0
        X[k, :len(x), feat.TAU_G] = scale_off(partner[k]) if partner is not None else 0.0
        H[k, :len(x)] = hits[k]
    out = np.zeros((B, N, N_OUT), np.float32)
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        mems = [module.encode(torch.from_numpy(X[k:k + 1, :len(x)].copy())) for k, x in enumerate(xs)]
        memory = torch.cat([torch.nn.functional.pad(m, (0, 0, 0, N - m.shape[4])) for m in mems], dim=2)
        cache = module.new_cache(B)
        Xt, Ht = torch.from_numpy(X), torch.from_numpy(H)
        prev = torch.zeros(B, feat.N_IN)
        for t in range(N):
            y = module.step(prev, Xt[:, t], t, memory, cache)
            out[:, t] = y.numpy()
            prev = Xt[:, t].clone()
            prev[:, feat.OFF] = y[:, feat.OUT_OFF].clamp(-feat.OFF_CLIP, feat.OFF_CLIP) * Ht[:, t]
    return [out[k, :len(x)] for k, x in enumerate(xs)]


#: Velocity histogram bins (8 velocity steps each) for the distribution figures.
VEL_BINS = np.arange(0, 129, 8)


def velocity_distribution(pred_vel: np.ndarray, true_vel: np.ndarray, mask: np.ndarray) -> dict:
    """Histogram intersection (0..1, 1 = same distribution) of predicted and real velocities on hits,
    and the mean predicted / real velocity per drum.

    Examples
    --------
    >>> m = np.ones((4, 1), bool)
    >>> velocity_distribution(np.array([[10.], [20], [100], [120]]), np.array([[12.], [22], [100], [60]]), m)["intersection"]
    0.75
    """
    from rolypoly.score.drums import DRUM_LABELS
    p = np.clip(pred_vel[mask], 0, 127.999)
    r = np.clip(true_vel[mask], 0, 127.999)
    hp = np.histogram(p, VEL_BINS)[0] / max(len(p), 1)
    hr = np.histogram(r, VEL_BINS)[0] / max(len(r), 1)
    per = []
    for d in range(mask.shape[1]):
        m = mask[:, d]
        per.append({"drum": DRUM_LABELS[d], "mean": float(pred_vel[m, d].mean()) if m.any() else float("nan"),
                    "real_mean": float(true_vel[m, d].mean()) if m.any() else float("nan")})
    return {"intersection": float(np.minimum(hp, hr).sum()), "mean": float(p.mean()) if len(p) else float("nan"),
            "real_mean": float(r.mean()) if len(r) else float("nan"), "per_drum": per}


def score(outs: list[np.ndarray], takes_rows: list[dict]) -> dict:
    """Timing/velocity MAE (overall and per drum) and the velocity distribution against the real takes."""
    pv, po, tv, to, bars, masks = [], [], [], [], [], []
    for y, r in zip(outs, takes_rows):
        vel, off, _ = decode_outputs(y)
        pv.append(vel); po.append(off); tv.append(r["vel"]); to.append(r["off"])
        bars.append(r["bar_ms"]); masks.append(r["vel"] > 0)
    pv, po, tv, to = map(np.concatenate, (pv, po, tv, to))
    bar, mask = np.concatenate(bars), np.concatenate(masks)
    dist = velocity_distribution(pv, tv, mask)
    per = per_drum_mae(po, to, bar, pv, tv, mask)
    for d, v in zip(per, dist["per_drum"]):
        d["mean_velocity"], d["real_mean_velocity"] = v["mean"], v["real_mean"]
    return {"timing_ms": timing_mae_ms(po, to, bar, mask), "velocity": velocity_mae(pv, tv, mask),
            "velocity_hist_intersection": dist["intersection"], "mean_velocity": dist["mean"],
            "real_mean_velocity": dist["real_mean"], "hits": int(mask.sum()), "rows": len(mask), "per_drum": per}


def evaluate(predict: Predictor, takes, block: int = 16, conditions=CONDITIONS, stepper=None) -> dict:
    """Scores of a predictor on ``takes`` (the protocol set) in each condition.

    ``stepper``: an incremental module (``encode``/``new_cache``/``step``); when given it is
    scored by whole-take forwards and steps instead of ``predict`` on windows.

    Returns ``{condition: {"timing_ms", "velocity", "velocity_hist_intersection", "mean_velocity",
    "real_mean_velocity", "hits", "rows", "per_drum"}}``.
    """
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown conditions {unknown}; choose from {CONDITIONS}")
    rows = [takes.rows(i) for i in range(len(takes))]
    prepared = [_take_inputs(r) for r in rows]
    xs = [p[0] for p in prepared]
    hits = [p[1] for p in prepared]
    result = {}
    for c in conditions:
        if stepper is not None:
            if c == "teacher-forced":
                outs = whole_takes(stepper, xs)
            else:
                outs = stepped(stepper, xs, hits, partner=[p[2] for p in prepared] if c == "partner-following" else None)
        elif c == "teacher-forced":
            outs = teacher_forced(predict, xs, block)
        elif c == "free-running":
            outs = running(predict, xs, hits, block)
        else:
            outs = running(predict, xs, hits, block, partner=[p[2] for p in prepared])
        result[c] = score(outs, rows)
    return result


def score_velocities(module, incremental: bool, window: int, score) -> list[dict]:
    """Written vs played velocities of a model playing ``score`` alone (free-running).

    For the kick, snare and closed hi-hat: mean written velocity, mean and max played, on all
    their hits and on the rows that also hold a snare (the backbeats of a groove), where a
    model that reads written velocities as a take's averages accents a second time.
    """
    hit = score.vel > 0
    x = encode_rows(score.vel, np.zeros_like(score.vel), score.bpm, score.tsig, score.phase, np.zeros(len(hit)))
    if incremental:
        out = stepped(module, [x], [hit])[0]
    else:
        out = running(predictor_from_model(module), [x], [hit], min(window, len(x)))[0]
    vel, _, _ = decode_outputs(out)
    rows = []
    for d, name in ((0, "kick"), (1, "snare"), (2, "closed hi-hat")):
        for where, m in (("all hits", hit[:, d]), ("rows with a snare", hit[:, d] & hit[:, 1])):
            if m.any() and not (d == 1 and where != "all hits"):
                rows.append({"drum": name, "rows": where, "hits": int(m.sum()), "written": float(score.vel[m, d].mean()),
                             "played": float(vel[m, d].mean()), "played_max": float(vel[m, d].max())})
    return rows
