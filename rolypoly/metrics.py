"""Timing and velocity errors, and the baselines every model is measured against.

The metric functions here are the only ones used to score predictors: the baselines of
``rolypoly eval baselines`` and the models of ``rolypoly eval model``.

Protocol: GMD test split, 4/4 takes, hits snapped to the 16th grid of
the file tempo (loudest hit per step and drum); errors over every hit (drum that plays
in a row); timing in ms at the take's tempo, velocity on the 0-127 scale.

Examples
--------
>>> import numpy as np
>>> timing_mae_ms(np.zeros((1, 9)), np.full((1, 9), 0.01), np.array([2000.0]), np.ones((1, 9), bool))
20.0
"""
from __future__ import annotations

import numpy as np

from rolypoly.score.drums import DRUM_LABELS, N_DRUMS

STEPS = 16
SAME_TAKE_MIN_S = 20.0
PROTOCOL = ("GMD test split, 4/4 takes >= 5 s, onsets snapped to the 16th grid of the file tempo "
            "(loudest hit per step and drum); MAE over all hits; timing in ms at the take's tempo, "
            "velocity on 0-127. Lookups are fitted on GMD train (per drum and 16th step); the same-take "
            "lookup is fitted on the first half of each test take >= 20 s and scored on its second half.")


def timing_mae_ms(pred_off, true_off, bar_ms, mask) -> float:
    """Mean |predicted - true| offset in ms over the hits in ``mask``.

    Parameters
    ----------
    pred_off, true_off : (N, 9) offsets in bar fractions
    bar_ms : (N,) bar length of each row in ms
    mask : (N, 9) bool, the hits to score
    """
    err = np.abs(np.asarray(pred_off, np.float64) - np.asarray(true_off, np.float64)) * np.asarray(bar_ms)[:, None]
    mask = np.asarray(mask, bool)
    return float(err[mask].mean()) if mask.any() else float("nan")


def velocity_mae(pred_vel, true_vel, mask) -> float:
    """Mean |predicted - true| velocity (0-127) over the hits in ``mask``."""
    err = np.abs(np.asarray(pred_vel, np.float64) - np.asarray(true_vel, np.float64))
    mask = np.asarray(mask, bool)
    return float(err[mask].mean()) if mask.any() else float("nan")


def per_drum_mae(pred_off, true_off, bar_ms, pred_vel, true_vel, mask) -> list[dict]:
    """Timing and velocity MAE for each drum class (NaN where the drum never plays)."""
    out = []
    for d in range(N_DRUMS):
        m = np.zeros_like(mask, dtype=bool)
        m[:, d] = mask[:, d]
        out.append({"drum": DRUM_LABELS[d], "hits": int(m.sum()),
                    "timing_ms": timing_mae_ms(pred_off, true_off, bar_ms, m),
                    "velocity": velocity_mae(pred_vel, true_vel, m)})
    return out


def eval_takes(takes, split: str = "test"):
    """The takes of the evaluation protocol: 4/4 test takes (16th-grid preparation expected).

    ``split="validation"`` gives the same selection from the validation takes, where model
    choices are made (the test split only reports them).
    """
    test = takes.split(split)
    return test.select(test.meta["time_signature"] == "4-4")


def _steps(phase) -> np.ndarray:
    return np.clip(np.floor(np.asarray(phase) * STEPS + 0.5).astype(int), 0, STEPS - 1)


def fit_lookup(vel, off, phase):
    """Mean offset and velocity per (drum, 16th step) over hits; NaN where unseen."""
    hit = vel > 0
    steps = _steps(phase)
    sum_off = np.zeros((N_DRUMS, STEPS))
    sum_vel = np.zeros((N_DRUMS, STEPS))
    count = np.zeros((N_DRUMS, STEPS))
    rows, drums = np.nonzero(hit)
    np.add.at(sum_off, (drums, steps[rows]), off[rows, drums])
    np.add.at(sum_vel, (drums, steps[rows]), vel[rows, drums])
    np.add.at(count, (drums, steps[rows]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sum_off / count, sum_vel / count


def apply_lookup(table_off, table_vel, phase, fallback_off=0.0, fallback_vel=64.0):
    """Predicted (N, 9) offsets and velocities from a lookup; unseen cells take the fallbacks."""
    steps = _steps(phase)
    off = table_off[:, steps].T
    vel = table_vel[:, steps].T
    fo = np.broadcast_to(np.asarray(fallback_off, np.float64), (N_DRUMS,))[None, :]
    fv = np.broadcast_to(np.asarray(fallback_vel, np.float64), (N_DRUMS,))[None, :]
    return np.where(np.isnan(off), fo, off), np.where(np.isnan(vel), fv, vel)


def baselines(train, test) -> list[dict]:
    """Every baseline of the protocol on ``test`` (fitted on ``train`` where needed).

    Returns a list of ``{"predictor", "rows", "hits", "timing_ms", "velocity"}``.
    """
    a, t = train.arrays, test.arrays
    hit = t["vel"] > 0
    train_hit = a["vel"] > 0
    const_vel = float(np.mean(a["vel"][train_hit]))
    results = []
    zero = np.zeros_like(t["off"])
    results.append({"predictor": "zero offset / constant velocity (train mean %.1f)" % const_vel,
                    "rows": len(t["vel"]), "hits": int(hit.sum()),
                    "timing_ms": timing_mae_ms(zero, t["off"], t["bar_ms"], hit),
                    "velocity": velocity_mae(np.full_like(t["vel"], const_vel), t["vel"], hit)})
    lk_off, lk_vel = fit_lookup(a["vel"], a["off"], a["phase"])
    p_off, p_vel = apply_lookup(lk_off, lk_vel, t["phase"], 0.0, const_vel)
    results.append({"predictor": "per drum and 16th-step lookup (train)", "rows": len(t["vel"]),
                    "hits": int(hit.sum()), "timing_ms": timing_mae_ms(p_off, t["off"], t["bar_ms"], hit),
                    "velocity": velocity_mae(p_vel, t["vel"], hit)})
    results.append(same_take_lookup(test))
    return results


def second_half_masks(takes, min_duration_s: float = SAME_TAKE_MIN_S):
    """For each take >= ``min_duration_s``: (take index, first-half row mask, second-half row mask)."""
    out = []
    for i in range(len(takes)):
        if takes.meta["duration"][i] < min_duration_s:
            continue
        r = takes.rows(i)
        t_ms = (r["bar"] + r["phase"]) * r["bar_ms"]  # nominal time (constant tempo within a GMD take)
        half = t_ms < 0.5 * t_ms[-1]
        if half.any() and (~half).any():
            out.append((i, half, ~half))
    return out


def same_take_lookup(test) -> dict:
    """Lookup fitted on the first half of each take >= 20 s, scored on its second half."""
    preds_off, preds_vel, trues_off, trues_vel, bars, masks = [], [], [], [], [], []
    for i, first, second in second_half_masks(test):
        r = test.rows(i)
        lk_off, lk_vel = fit_lookup(r["vel"][first], r["off"][first], r["phase"][first])
        hit1 = r["vel"][first] > 0
        # Cells unseen in the first half fall back to the take's per-drum means.
        n1 = hit1.sum(0)
        d_off = np.where(n1 > 0, (r["off"][first] * hit1).sum(0) / np.maximum(n1, 1), 0.0)
        d_vel = np.where(n1 > 0, (r["vel"][first] * hit1).sum(0) / np.maximum(n1, 1), 64.0)
        p_off, p_vel = apply_lookup(lk_off, lk_vel, r["phase"][second], d_off, d_vel)
        preds_off.append(p_off); preds_vel.append(p_vel)
        trues_off.append(r["off"][second]); trues_vel.append(r["vel"][second])
        bars.append(r["bar_ms"][second]); masks.append(r["vel"][second] > 0)
    if not masks:
        return {"predictor": "same-take lookup", "rows": 0, "hits": 0, "timing_ms": float("nan"),
                "velocity": float("nan")}
    mask = np.concatenate(masks)
    return {"predictor": "same-take lookup (first half -> second half)", "rows": len(mask),
            "hits": int(mask.sum()),
            "timing_ms": timing_mae_ms(np.concatenate(preds_off), np.concatenate(trues_off), np.concatenate(bars), mask),
            "velocity": velocity_mae(np.concatenate(preds_vel), np.concatenate(trues_vel), mask)}


# ----------------------------------------------------------------------------- onsets

def onset_f_measure(detected, truth, window_s: float = 0.025, reported=None) -> dict:
    """Onset F-measure as ``mir_eval.onset.f_measure`` computes it, with the pairs.

    Detections and true onsets are paired one-to-one within ``±window_s`` by a maximum
    matching (``mir_eval.util.match_events``), so F, precision and recall are exactly
    mir_eval's; empty inputs score 0 as there.

    Parameters
    ----------
    detected, truth : array_like
        Detected and true onset times (s), any order.
    window_s : float
        The pairing window (s) either side.
    reported : array_like, optional
        The moment each detection was reported (s), one per entry of ``detected`` and in
        its order (:func:`rolypoly.ears.listener.detect_onsets` with ``reported=True``).
        It does not change the pairing (that is on the detected times alone).

    Returns
    -------
    dict
        ``f``, ``precision``, ``recall``, ``tp``, ``n_detected``, ``n_true`` and
        ``delays`` (detected − true, s, one per matched pair, in truth order); with
        ``reported``, also ``report_delays`` (reported − true, s, the same pairs and order):
        the delay from the true onset to the moment it was reported.

    Examples
    --------
    >>> r = onset_f_measure([0.51, 1.2], [0.5, 1.0], 0.025)
    >>> r["tp"], round(r["f"], 2)
    (1, 0.5)
    >>> r = onset_f_measure([1.2, 0.51], [0.5, 1.0], 0.025, reported=[1.21, 0.52])
    >>> [round(float(d), 3) for d in r["report_delays"]]
    [0.02]
    """
    import mir_eval
    det = np.asarray(detected, dtype=np.float64).ravel()
    order = np.argsort(det, kind="stable")
    det = det[order]
    if reported is not None:
        rep = np.asarray(reported, dtype=np.float64).ravel()
        if rep.shape != order.shape:
            from rolypoly.errors import DataError
            raise DataError(f"onset_f_measure: reported has {rep.size} times for {det.size} detections")
        rep = rep[order]
    tru = np.sort(np.asarray(truth, dtype=np.float64).ravel())
    pairs = sorted(mir_eval.util.match_events(tru, det, window_s)) if det.size and tru.size else []
    tp = len(pairs)
    precision = tp / det.size if det.size else 0.0
    recall = tp / tru.size if tru.size else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    delays = np.array([det[d] - tru[t] for t, d in pairs])
    out = dict(f=f, precision=precision, recall=recall, tp=tp, n_detected=int(det.size),
               n_true=int(tru.size), delays=delays)
    if reported is not None:
        out["report_delays"] = np.array([rep[d] - tru[t] for t, d in pairs])
    return out
