"""Metric functions and the baselines' protocol."""
from __future__ import annotations

import numpy as np
import pytest

from rolypoly import metrics


def test_mae_functions_mask_and_scale():
    pred = np.zeros((2, 9))
    true = np.zeros((2, 9))
    true[0, 0], true[1, 3] = 0.01, -0.02
    mask = np.zeros((2, 9), bool)
    mask[0, 0] = mask[1, 3] = True
    assert metrics.timing_mae_ms(pred, true, np.array([2000.0, 4000.0]), mask) == pytest.approx((20 + 80) / 2)
    assert metrics.velocity_mae(np.full((2, 9), 10.0), np.full((2, 9), 30.0), mask) == pytest.approx(20)
    assert np.isnan(metrics.velocity_mae(pred, true, np.zeros((2, 9), bool)))


def test_lookup_recovers_a_planted_table():
    rng = np.random.default_rng(0)
    phase = rng.integers(0, 16, 4000) / 16
    vel = (rng.random((4000, 9)) < 0.3) * 90.0
    off = np.where(vel > 0, 0.002 * np.sin(phase * 16)[:, None], 0.0)
    t_off, t_vel = metrics.fit_lookup(vel, off, phase)
    p_off, p_vel = metrics.apply_lookup(t_off, t_vel, phase)
    assert metrics.timing_mae_ms(p_off, off, np.full(4000, 2000.0), vel > 0) < 1e-9
    assert np.all(p_vel[vel > 0] == 90.0)


def test_baselines_land_near_the_anchors(gmd16):
    res = {r["predictor"].split(" ")[0]: r for r in metrics.baselines(gmd16.split("train"), metrics.eval_takes(gmd16))}
    assert res["zero"]["timing_ms"] == pytest.approx(22.6, abs=1.5)
    assert res["per"]["timing_ms"] == pytest.approx(20.8, abs=1.5)
    assert res["same-take"]["timing_ms"] == pytest.approx(17.0, abs=1.5)
    assert res["zero"]["velocity"] == pytest.approx(30.3, abs=1.5)
    assert res["per"]["velocity"] == pytest.approx(25.9, abs=1.5)
    assert res["same-take"]["velocity"] == pytest.approx(15.2, abs=1.5)
    # the ordering is the point: more knowledge of the take, smaller errors
    assert res["same-take"]["timing_ms"] < res["per"]["timing_ms"] < res["zero"]["timing_ms"]
