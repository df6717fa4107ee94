"""The virtual musician: feels move notes where they should, takes are deterministic."""
import numpy as np
import pytest

from rolypoly.errors import RolypolyError
from rolypoly.sim.musician import STYLES, Feel, play, rhythm

SR = 48000


def test_named_feels_offsets():
    bar = 2.0  # 120 bpm, beat 0.5 s
    lb = Feel.named("laid_back")
    assert lb.offset_s(0.25, bar) == pytest.approx(0.025)   # beat 2
    assert lb.offset_s(0.75, bar) == pytest.approx(0.025)   # beat 4
    assert lb.offset_s(0.0, bar) == pytest.approx(0.0)
    assert lb.offset_s(0.5, bar) == pytest.approx(0.0)
    assert Feel.named("rushing").offset_s(np.array([0.0, 0.3, 0.9]), bar) == pytest.approx([-0.015] * 3)
    sw = Feel.named("swing")
    # the off-beat eighth moves from half to 0.62 of the beat; on-beats stay
    assert sw.offset_s(0.125, bar) == pytest.approx((0.62 - 0.5) * 0.5)
    assert sw.offset_s(0.0, bar) == pytest.approx(0.0)
    assert Feel.named("on_grid").offset_s(0.375, bar) == 0.0


def test_bad_feel_and_style():
    with pytest.raises(RolypolyError):
        Feel.named("drunk")
    with pytest.raises(RolypolyError):
        Feel("x", swing=1.2)
    with pytest.raises(RolypolyError):
        play([0.5], [0.0], 2.0, style="banjo")
    with pytest.raises(RolypolyError):
        play([1.0, 0.5], [0.0, 0.0], 2.0)


def test_true_onsets_follow_feel_and_sound_starts_there():
    times = np.array([0.5, 1.0, 1.5, 2.0, 2.25])
    phases = np.array([0.0, 0.25, 0.5, 0.75, 0.875])
    feel = Feel.named("laid_back", jitter_ms=0.0, dynamics_db=0.0)
    audio, onsets = play(times, phases, 2.0, feel, sr=SR, seed=3)
    expected = times + feel.offset_s(phases, 2.0)
    assert onsets == pytest.approx(expected, abs=1.0 / SR)
    for t in onsets:
        i = int(round(t * SR))
        before = np.abs(audio[i - 480:i - 10]).max()
        after = np.abs(audio[i:i + 480]).max()
        assert after > 4 * before + 1e-4


def test_deterministic_and_level():
    t, ph, bar = rhythm(2, bpm=120, seed=5)
    a1, o1 = play(t, ph, bar, "swing", sr=SR, seed=9, level_db=-20)
    a2, o2 = play(t, ph, bar, "swing", sr=SR, seed=9, level_db=-20)
    a3, _ = play(t, ph, bar, "swing", sr=SR, seed=10, level_db=-20)
    assert np.array_equal(a1, a2) and np.array_equal(o1, o2)
    assert not np.array_equal(a1, a3)
    assert a1.dtype == np.float32
    assert 20 * np.log10(np.abs(a1).max()) == pytest.approx(-20.0, abs=0.01)


@pytest.mark.parametrize("style", STYLES)
def test_every_style_renders(style):
    t, ph, bar = rhythm(1, bpm=120, steps_per_bar=4, fill=1.0, seed=1)
    audio, onsets = play(t, ph, bar, "on_grid", sr=SR, seed=2, style=style, noise_db=-70, hum_db=-70)
    assert onsets.shape == t.shape and np.all(np.diff(onsets) > 0)
    assert np.all(np.isfinite(audio)) and audio.size > int(onsets[-1] * SR)


def test_noise_and_hum_levels():
    audio, _ = play([], [], 2.0, sr=SR, noise_db=-40.0, tail_s=1.0)
    rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2))
    assert 20 * np.log10(rms) == pytest.approx(-40.0, abs=0.5)


def test_legato_slurs_sound_like_notes_not_a_dying_string():
    # a slurred note on a guitar sounds a few dB under the picked one; it does not fade out
    t, ph, bar = rhythm(4, bpm=100, steps_per_bar=4, fill=1.0, seed=12)
    audio, onsets = play(t, ph, bar, "on_grid", sr=48000, seed=12, style="legato", legato_run=4)
    x = audio.astype(np.float64)

    def level(t0):
        i = int(t0 * 48000)
        return 10 * np.log10(np.mean(x[i:i + 2400] ** 2) + 1e-20)
    for r0 in range(0, onsets.size - 3, 4):
        picked = level(onsets[r0])
        for k in range(1, 4):
            assert picked - 24.0 < level(onsets[r0 + k]) < picked
