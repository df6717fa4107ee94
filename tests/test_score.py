"""Score reader: meters, tempo maps, drum detection, merging, round trip, bad input."""
from __future__ import annotations

import random
import warnings

import mido
import numpy as np
import pytest
from conftest import meter, note, shared, tempo, write_midi

from rolypoly.errors import ScoreError
from rolypoly.score.midi import bar_ms, read_score

PPQ = 480


def test_bar_ms_is_exact_at_every_tempo():
    assert bar_ms(120.0, 1.0) == pytest.approx(2000.0)
    assert bar_ms(60.0, 1.0) == pytest.approx(4000.0)
    assert bar_ms(90.0, 0.875) == pytest.approx(240000 * 0.875 / 90)


def test_tempo_change_times_and_phase(tmp_path):
    # 4/4: bar 0 at 120 bpm (2 s), then 60 bpm from bar 1 (4 s a bar).
    ev = [tempo(0, 120), tempo(4 * PPQ, 60), meter(0, 4, 4)]
    for t in (0, 2 * PPQ, 4 * PPQ, 6 * PPQ, 8 * PPQ):
        ev += note(t, 36)
    s = read_score(write_midi(tmp_path / "t.mid", [ev]))
    np.testing.assert_allclose(s.times_ms, [0, 1000, 2000, 4000, 6000], atol=1e-6)
    np.testing.assert_allclose(s.bpm, [120, 120, 60, 60, 60])
    np.testing.assert_array_equal(s.bar, [0, 0, 1, 1, 2])
    np.testing.assert_allclose(s.phase, [0, 0.5, 0, 0.5, 0])
    np.testing.assert_allclose(s.bar_ms, [2000, 2000, 4000, 4000, 4000])


@pytest.mark.parametrize("num,den", [(6, 8), (7, 8), (5, 4), (3, 4)])
def test_phase_through_empty_bars_in_any_meter(tmp_path, num, den):
    bar_ticks = PPQ * 4 * num // den
    # hits in bars 0 and 3 (bars 1-2 empty), at the start and at 2 eighths/quarters in
    step = PPQ * 4 // den
    ev = [meter(0, num, den)] + note(0, 38) + note(3 * bar_ticks, 38) + note(3 * bar_ticks + 2 * step, 38)
    s = read_score(write_midi(tmp_path / "m.mid", [ev]))
    np.testing.assert_array_equal(s.bar, [0, 3, 3])
    np.testing.assert_allclose(s.phase, [0, 0, 2 / num])
    np.testing.assert_allclose(s.tsig, num / den)
    assert s.length_ms == pytest.approx(4 * bar_ms(120.0, num / den))


def test_meter_change_starts_new_bars(tmp_path):
    ev = [meter(0, 4, 4), meter(4 * PPQ, 7, 8)] + note(0, 36) + note(4 * PPQ, 36) + note(4 * PPQ + 7 * PPQ // 2, 36)
    s = read_score(write_midi(tmp_path / "c.mid", [ev]))
    np.testing.assert_array_equal(s.bar, [0, 1, 2])
    np.testing.assert_allclose(s.tsig, [1.0, 0.875, 0.875])


def test_drums_found_on_channel_10_and_in_named_tracks_type0_and_1(tmp_path):
    piano = note(0, 60, channel=0) + note(PPQ, 62, channel=0)
    named = [(0, mido.MetaMessage("track_name", name="Drum Kit"))] + note(2 * PPQ, 38, channel=3)
    ch10 = note(0, 36) + note(PPQ, 42)
    s = read_score(write_midi(tmp_path / "a.mid", [[tempo(0, 100)], piano, named, ch10]))
    assert s.n_rows == 3
    assert s.vel[0, 0] == 100 and s.vel[1, 2] == 100 and s.vel[2, 1] == 100
    s0 = read_score(write_midi(tmp_path / "z.mid", [[tempo(0, 100)] + piano + ch10], midi_type=0))
    assert s0.n_rows == 2  # the piano on channel 1 is not drums


def test_unknown_pitches_are_reported_not_turned_into_kicks(tmp_path):
    ev = note(0, 36) + note(PPQ, 81) + note(2 * PPQ, 81)
    with pytest.warns(UserWarning, match="pitch 81 x2"):
        s = read_score(write_midi(tmp_path / "u.mid", [ev]))
    assert s.n_rows == 1 and s.unknown_pitches == {81: 2}


def test_merge_tolerance_and_louder_hit_kept(tmp_path):
    # 10 ms at 120 bpm = 9.6 ticks: 5 ticks apart merge, 20 ticks apart do not.
    ev = note(0, 36, 50) + note(5, 38, 90) + note(6, 40, 110) + note(PPQ, 42) + note(PPQ + 20, 46)
    s = read_score(write_midi(tmp_path / "g.mid", [ev]))
    assert s.n_rows == 3
    assert s.vel[0, 0] == 50 and s.vel[0, 1] == 110  # 38 and 40 are both snare: louder kept
    assert s.off[0, 1] == pytest.approx((6 / PPQ * 500) / 2000)


def test_round_trip_keeps_times_within_1ms_and_velocities(tmp_path):
    rng = random.Random(3)
    ev = [tempo(0, 97), tempo(8 * PPQ, 131), meter(0, 4, 4), meter(16 * PPQ, 7, 8)]
    for _ in range(300):
        ev += note(rng.randrange(0, 40 * PPQ), rng.choice([36, 38, 42, 46, 43, 45, 48, 49, 51]), rng.randint(1, 127))
    src = read_score(write_midi(tmp_path / "r.mid", [ev]))
    out = src.write_midi(tmp_path / "back.mid")
    back = read_score(out)
    assert back.n_rows == src.n_rows
    np.testing.assert_array_equal(back.vel, src.vel)
    t0, t1 = src.hit_times_ms(), back.hit_times_ms()
    hit = src.vel > 0
    assert np.max(np.abs(t0[hit] - t1[hit])) < 1.0
    np.testing.assert_allclose(back.tsig, src.tsig)
    np.testing.assert_allclose(back.bpm, src.bpm, rtol=1e-6)


def test_gmd_file_reads():
    path = shared("groove", "drummer1", "eval_session", "1_funk-groove1_138_beat_4-4.mid")
    s = read_score(path)
    assert s.n_rows > 100 and np.all(np.diff(s.times_ms) > 0)
    assert np.all((s.phase >= 0) & (s.phase < 1))
    assert s.bpm[0] == pytest.approx(138, abs=0.01)


# --- bad input -------------------------------------------------------------------------

def test_missing_and_non_midi_and_directory(tmp_path):
    with pytest.raises(ScoreError, match="no such file"):
        read_score(tmp_path / "nope.mid")
    (tmp_path / "x.mid").write_text("hello")
    with pytest.raises(ScoreError, match="not a MIDI file"):
        read_score(tmp_path / "x.mid")
    with pytest.raises(ScoreError, match="directory"):
        read_score(tmp_path)


def test_truncated_file(tmp_path):
    good = write_midi(tmp_path / "g.mid", [note(0, 36) + note(PPQ, 38)])
    data = good.read_bytes()
    (tmp_path / "t.mid").write_bytes(data[: len(data) - 9])
    with pytest.raises(ScoreError, match="t.mid"):
        read_score(tmp_path / "t.mid")


def test_no_drum_notes(tmp_path):
    p = write_midi(tmp_path / "p.mid", [note(0, 60, channel=0)])
    with pytest.raises(ScoreError, match="no drum notes"):
        read_score(p)


@pytest.mark.parametrize("us", [0, 1, 10_000_000])
def test_zero_or_absurd_tempo(tmp_path, us):
    ev = [(0, mido.MetaMessage("set_tempo", tempo=us))] + note(0, 36)
    p = write_midi(tmp_path / "z.mid", [ev])
    with pytest.raises(ScoreError, match="tempo"):
        read_score(p)


def test_randomly_corrupted_files_end_in_clean_error_or_valid_score(tmp_path):
    rng = random.Random(11)
    ev = [tempo(0, 110), meter(0, 4, 4)]
    for i in range(60):
        ev += note(i * PPQ // 2, rng.choice([36, 38, 42, 46, 49]), rng.randint(20, 127))
    base = bytearray(write_midi(tmp_path / "base.mid", [ev[:2], ev[2:]]).read_bytes())
    outcomes = {"error": 0, "score": 0}
    for k in range(300):
        data = bytearray(base)
        kind = k % 3
        if kind == 0:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # truncate
            data = data[: rng.randrange(4, len(data))]
        else:  # splice in random bytes
            pos = rng.randrange(14, len(data))
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 30)))
        p = tmp_path / f"c{k}.mid"
        p.write_bytes(bytes(data))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = read_score(p)
        except ScoreError as exc:
            assert str(p) in str(exc)
            outcomes["error"] += 1
        else:
            assert s.n_rows > 0 and np.all(np.isfinite(s.times_ms)) and np.all((s.phase >= 0) & (s.phase < 1))
            outcomes["score"] += 1
    assert outcomes["error"] > 0 and outcomes["score"] > 0
