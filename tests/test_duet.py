"""The duet simulation's measures: the listener's error on the musician's notes."""
from __future__ import annotations

import math

import numpy as np

from rolypoly.sim.duet import listener_bias_ms


def test_listener_bias_is_the_signed_mean_error_over_the_musicians_matched_notes():
    rows = np.array([0, 2, 4])
    true = np.array([0.50, 1.00, 1.50])
    heard = [{"row": 0, "time_s": 0.497, "tau_ms": -3.0},   # 3 ms early
             {"row": 2, "time_s": 0.999, "tau_ms": -1.0},   # 1 ms early
             {"row": 3, "time_s": 1.250, "tau_ms": 0.0}]    # a row the musician did not play: left out
    assert math.isclose(listener_bias_ms(heard, rows, true), -2.0, abs_tol=1e-9)
    late = [{"row": 4, "time_s": 1.505}]
    assert math.isclose(listener_bias_ms(late, rows, true), 5.0, abs_tol=1e-9)
    assert math.isnan(listener_bias_ms([], rows, true))


def test_bench_duet_rejects_bad_seeds_in_one_line(capsys):
    from rolypoly.cli import main
    for bad in ("x", ","):
        assert main(["bench", "duet", "--seeds", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err and "--seeds" in err[-1]
