"""Latency calibration with a software loopback on the JACK dummy server."""
from __future__ import annotations

import numpy as np
import pytest
from test_engine import make_engine

pytestmark = pytest.mark.realtime


@pytest.fixture()
def jack_server(jack_session):
    return jack_session


def _detector_only_ms(tmp_path) -> float:
    """The same clicks fed straight back offline (no round trip): what the detector alone adds."""
    from rolypoly.live.calibrate import click_score
    from rolypoly.live.drivers import perform_offline
    eng = make_engine(tmp_path / "dry", extra=["listen.latency_ms=null"])
    eng.read(click_score(12))
    drums = perform_offline(eng).drums[:, 0].copy()
    eng = make_engine(tmp_path / "wet", extra=["listen.latency_ms=null"])
    eng.read(click_score(12))
    perform_offline(eng, drums)
    lat = eng.listener.latency_s
    t = [1000.0 * (o["time_s"] + lat) - eng.score.times_ms[o["row"]] for o in eng._onsets]
    return float(np.median(t))


def test_software_loopback_measures_one_jack_period_more_than_the_detector(tmp_path, jack_server):
    from rolypoly.live.calibrate import calibrate
    eng = make_engine(tmp_path, offline=False)
    res = calibrate(eng, n_clicks=12, loopback=True)
    assert res["heard"] >= 10
    period_ms = 1000.0 * 128 / 48000
    dry = _detector_only_ms(tmp_path)
    # JACK feeds a client's output back to its input one period later: that is the round trip
    assert res["latency_ms"] - dry == pytest.approx(period_ms, abs=1000.0 * 64 / 48000)
    assert eng.latency_ms == pytest.approx(round(res["latency_ms"], 2))


def test_calibrate_without_a_connection_is_a_clear_error(tmp_path, jack_server):
    from rolypoly.errors import AudioError
    from rolypoly.live.calibrate import calibrate
    eng = make_engine(tmp_path, offline=False)
    with pytest.raises(AudioError, match="connected"):
        calibrate(eng, n_clicks=4, loopback=False, timeout_s=5)
