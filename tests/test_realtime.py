"""Real time against a JACK server with the dummy backend (the compiled JACK callback; PortAudio for a named device)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_engine import make_engine

pytestmark = pytest.mark.realtime


@pytest.fixture()
def jack(jack_session):
    return jack_session


def test_realtime_duet_through_jack(tmp_path, jack):
    from rolypoly.live.drivers import jack_running, play_realtime
    if not jack_running():
        pytest.skip("the JACK server started above does not answer")
    from rolypoly.live.takes import load_take
    from rolypoly.sim.duet import virtual_take
    from rolypoly.sim.corpus import groove_score
    score = groove_score(3, 160.0)
    path = score.write_midi(tmp_path / "g.mid")
    audio, rows, onsets = virtual_take(score, "on_grid", seed=1)
    eng = make_engine(tmp_path)
    hits = []
    eng.connect("hit", lambda *a: hits.append(a))
    eng.message("read", str(path))
    stats = play_realtime(eng, duration_s=20, input_audio=audio)
    assert stats.driver == "jack"   # the compiled callback, not PortAudio's Python one
    assert stats.blocks > 0 and eng.last_take is not None
    take = load_take(eng.last_take)
    assert take.settings["rows_played"] == score.n_rows
    assert len(hits) == int((score.vel > 0).sum())
    # hits arrive in time order at their scheduled samples
    samples = [h[0] for h in hits]
    assert samples == sorted(samples)
    assert take.n_onsets >= 0.8 * len(rows)
    assert np.isfinite(take.rows["tau_g"]).all()


def test_missing_device_is_a_clear_error(tmp_path, jack):
    from rolypoly.errors import AudioError
    from rolypoly.live.drivers import play_realtime
    from rolypoly.sim.corpus import groove_score
    eng = make_engine(tmp_path)
    eng.message("read", str(groove_score(1).write_midi(tmp_path / "g.mid")))
    eng.device = "no such device 42"
    with pytest.raises(AudioError, match="no such device 42"):
        play_realtime(eng, duration_s=1)


def test_bench_names_the_rows_that_played_late(tmp_path):
    # the benchmark reads late rows back from the saved take: which rows, and when
    from conftest import note, write_midi

    from rolypoly.live.takes import ROW_FIELDS, late_rows, save_take
    score = write_midi(tmp_path / "s.mid", [note(0, 36) + note(480, 38)])
    n = 5
    rows = {f: np.zeros(n) for f in ROW_FIELDS}
    rows["k"] = np.arange(n)
    rows["time_ms"] = np.arange(n) * 250.0
    rows["late"] = np.array([False, False, True, False, True])
    take = save_take(tmp_path / "takes", {}, rows, [], [], None, 48000, str(score))
    assert late_rows(take) == [(2, 500.0), (4, 1000.0)]
    assert late_rows(None) == []


def test_realtime_continue_is_drawn_while_the_take_plays(tmp_path, jack):
    """Free mode through the compiled JACK callback: the worker draws the continuation while the
    audio thread plays, every drawn row plays, none late, and the take records them."""
    from rolypoly.live.drivers import jack_running, play_realtime
    if not jack_running():
        pytest.skip("the JACK server started above does not answer")
    from rolypoly.live.takes import load_take
    from rolypoly.sim.corpus import groove_score
    score = groove_score(2, 160.0)
    path = score.write_midi(tmp_path / "g.mid")
    from conftest import REPO
    eng = make_engine(tmp_path, model=REPO / "models" / "rolypoly.pt", extra=("generate.seed=3",))
    errors = []
    eng.connect("error", errors.append)
    eng.message("read", str(path))
    assert eng.message("set", "generate", "continue", 3)
    stats = play_realtime(eng, duration_s=15)
    assert stats.driver == "jack" and not errors
    take = load_take(eng.last_take)
    rows = take.rows
    assert take.settings["rows_played"] > score.n_rows and take.settings["late_rows"] == 0
    new = rows["k"] >= score.n_rows
    assert (rows["score_vel"][new] > 0).any(axis=1).all() and (rows["bar_ms"][new] > 0).all()
    assert (np.diff(rows["time_ms"]) > 0).all()
