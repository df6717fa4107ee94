"""Evaluation of a performance model on the GMD test protocol, in three conditions.

* **teacher-forced** — every row is predicted from a window whose earlier rows hold the
  drummer's real offsets: how well the model models a human given the human's history;
* **free-running** — earlier rows hold the model's own earlier predictions (as when it
  plays alone);
* **partner-following** — as free-running, plus ``tau_g`` of every earlier row set to the
  real drummer's mean offset on that row: a partner whose feel the model should pick up.

Each row is predicted from the window of the ``block`` rows ending at it (the first rows
of a take use the take's first window), exactly as the live engine builds its windows.
The errors use :mod:`rolypoly.metrics`, the functions that score the baselines.

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


def predictor_from_path(path) -> tuple[Predictor, str, int]:
    """``(predictor, description, block size)`` for a ``.ckpt`` (eager) or TorchScript file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    from rolypoly.model.export import is_torchscript, load_runtime
    if is_torchscript(path):
        rt = load_runtime(path)
        return predictor_from_model(rt.module), f"{path} ({rt.version})", rt.window
    from rolypoly.model.transformer import load_checkpoint
    model, meta = load_checkpoint(path)
    return predictor_from_model(model), f"{path} ({meta.get('version', '?')})", model.window


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


def score(outs: list[np.ndarray], takes_rows: list[dict]) -> dict:
    """Timing/velocity MAE (overall and per drum) of outputs against the real takes."""
    pv, po, tv, to, bars, masks = [], [], [], [], [], []
    for y, r in zip(outs, takes_rows):
        vel, off, _ = decode_outputs(y)
        pv.append(vel); po.append(off); tv.append(r["vel"]); to.append(r["off"])
        bars.append(r["bar_ms"]); masks.append(r["vel"] > 0)
    pv, po, tv, to = map(np.concatenate, (pv, po, tv, to))
    bar, mask = np.concatenate(bars), np.concatenate(masks)
    return {"timing_ms": timing_mae_ms(po, to, bar, mask), "velocity": velocity_mae(pv, tv, mask),
            "hits": int(mask.sum()), "rows": len(mask), "per_drum": per_drum_mae(po, to, bar, pv, tv, mask)}


def evaluate(predict: Predictor, takes, block: int = 16, conditions=CONDITIONS) -> dict:
    """Scores of a predictor on ``takes`` (the protocol set) in each condition.

    Returns ``{condition: {"timing_ms", "velocity", "hits", "rows", "per_drum"}}``.
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
        if c == "teacher-forced":
            outs = teacher_forced(predict, xs, block)
        elif c == "free-running":
            outs = running(predict, xs, hits, block)
        else:
            outs = running(predict, xs, hits, block, partner=[p[2] for p in prepared])
        result[c] = score(outs, rows)
    return result
