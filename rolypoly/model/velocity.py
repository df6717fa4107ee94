"""Fitting the velocity curve: played velocities spread like a drummer's.

A model trained to minimise velocity error regresses towards the mean: its velocities
crowd the middle of the range and its histogram misses the soft ghost notes and the hard
accents of a real drummer.  :class:`rolypoly.model.transformer.VelocityCurve` is a monotone
map after the head; this module fits it in three steps:

1. the model's raw teacher-forced velocities on GMD **train** and the real ones there give a
   quantile map (predicted quantile -> real quantile, over the hits of all drums, real
   velocities de-quantised by a seeded uniform jitter so integer steps do not make stairs);
2. the curve is the identity moved a share ``alpha`` of the way towards that map;
3. ``alpha`` is the largest on a grid whose velocity MAE on GMD **validation** is at most
   ``tolerance`` above the uncalibrated model's (test is never looked at).

Examples
--------
>>> import numpy as np
>>> kx, ky = quantile_knots(np.array([40., 50, 60, 70]), np.array([20., 50, 60, 100]), knots=5)
>>> bool(np.all(np.diff(kx) > 0)), len(kx)
(True, 5)
"""
from __future__ import annotations

import numpy as np

from rolypoly.errors import ModelError
from rolypoly.score.features import VEL_SCALE, decode_outputs

#: Blends tried, identity (0) to the full quantile map (1).
ALPHAS = tuple(round(0.05 * i, 2) for i in range(21))


def quantile_knots(pred: np.ndarray, real: np.ndarray, knots: int = 17) -> tuple[np.ndarray, np.ndarray]:
    """Knots of the quantile map from predicted to real velocities (both 0-127): ``knots - 2``
    quantiles plus one padding knot at each end (slope 1 beyond the data).

    Raises
    ------
    ModelError
        Fewer than two hits, or ``knots < 4``.
    """
    pred, real = np.asarray(pred, np.float64).ravel(), np.asarray(real, np.float64).ravel()
    if knots < 4:
        raise ModelError(f"velocity curve: knots={knots} must be >= 4")
    if min(len(pred), len(real)) < 2:
        raise ModelError("velocity curve: fewer than two hits to fit on")
    q = np.linspace(0.0, 1.0, knots - 2)
    px, ry = np.quantile(pred, q), np.quantile(real, q)
    # strictly increasing knots (ties would divide by zero in the curve)
    px = px + 1e-6 * np.arange(len(px))
    px = np.maximum.accumulate(px) + 1e-9 * np.arange(len(px))
    kx = np.concatenate([[px[0] - VEL_SCALE], px, [px[-1] + VEL_SCALE]])
    ky = np.concatenate([[ry[0] - VEL_SCALE], ry, [ry[-1] + VEL_SCALE]])
    return kx, ky


def _set_curve(model, kx: np.ndarray, ky: np.ndarray) -> None:
    import torch
    curve = model.vel_curve
    if len(kx) != curve.x.numel():
        raise ModelError(f"velocity curve: {len(kx)} knots, the model holds {curve.x.numel()}")
    with torch.no_grad():
        curve.x.copy_(torch.as_tensor(kx / VEL_SCALE, dtype=curve.x.dtype))
        curve.y.copy_(torch.as_tensor(ky / VEL_SCALE, dtype=curve.y.dtype))


def _teacher_forced_velocities(model, takes) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and real velocities on the hits of ``takes`` (real history, whole takes)."""
    from rolypoly.model.evaluate import _take_inputs, predictor_from_model, teacher_forced, whole_takes
    rows = [takes.rows(i) for i in range(len(takes))]
    xs = [_take_inputs(r)[0] for r in rows]
    if int(getattr(model, "span", 0)) > 0:
        outs = whole_takes(model, xs)
    else:
        outs = teacher_forced(predictor_from_model(model), xs, int(model.window))
    pv = np.concatenate([decode_outputs(y)[0] for y in outs])
    tv = np.concatenate([r["vel"] for r in rows])
    hit = tv > 0
    return pv[hit], tv[hit]


def fit_velocity_curve(model, train, validation, knots: int = 17, tolerance: float = 0.05,
                       seed: int = 0, log=None) -> dict:
    """Fit ``model.vel_curve`` in place (see the module docstring) and return the report.

    Parameters
    ----------
    model : RolypolyModel (eager)
    train, validation : Takes (GMD splits)
    tolerance : most velocity MAE the curve may add on validation
    log : optional callable for progress lines

    Returns
    -------
    dict with ``alpha``, ``knots``, ``tolerance``, ``validation`` (per alpha: ``alpha``,
    ``velocity_mae``, ``hist_intersection``) and the chosen row's figures.
    """
    import torch

    from rolypoly.model.evaluate import velocity_distribution
    from rolypoly.model.transformer import VelocityCurve
    model.vel_curve = VelocityCurve(knots)  # fit on the head's raw output
    model.eval()
    say = log or (lambda _m: None)
    say("velocity curve: teacher-forced velocities on GMD train")
    pred_tr, real_tr = _teacher_forced_velocities(model, train)
    rng = np.random.default_rng(seed)
    kx, ky = quantile_knots(pred_tr, real_tr + rng.uniform(-0.5, 0.5, real_tr.shape), knots)
    say("velocity curve: choosing the blend on GMD validation")
    raw_val, real_val = _teacher_forced_velocities(model, validation)
    rows = []
    for a in ALPHAS:
        _set_curve(model, kx, kx + a * (ky - kx))
        with torch.no_grad():
            v = model.vel_curve(torch.from_numpy(raw_val / VEL_SCALE)).numpy() * VEL_SCALE
        v = np.clip(v, 0.0, 127.0)
        dist = velocity_distribution(v[:, None], real_val[:, None], np.ones((len(v), 1), bool))
        rows.append({"alpha": a, "velocity_mae": float(np.abs(v - real_val).mean()),
                     "hist_intersection": dist["intersection"]})
    base = rows[0]["velocity_mae"]
    chosen = max((r for r in rows if r["velocity_mae"] <= base + tolerance), key=lambda r: r["alpha"])
    _set_curve(model, kx, kx + chosen["alpha"] * (ky - kx))
    # plain Python numbers: the meta goes into checkpoints that load with weights_only
    return {"alpha": float(chosen["alpha"]), "knots": int(knots), "tolerance": float(tolerance), "seed": int(seed),
            "fitted_on": f"GMD train teacher-forced ({len(pred_tr)} hits)",
            "chosen_on": f"GMD validation teacher-forced ({len(raw_val)} hits)",
            "validation_mae": chosen["velocity_mae"], "validation_hist_intersection": chosen["hist_intersection"],
            "validation": rows}
