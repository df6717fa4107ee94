"""The supertonic engine: voice behaviour, rendering, kits, chokes, stealing, morph, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rolypoly.errors import SynthError
from rolypoly.synth import BlockRenderer, Kit, Patch, load_kit, morph, render, save_kit
from rolypoly.synth.kit import DRUMS, Channel
from rolypoly.synth.render import _hit_seed
from rolypoly.synth.voice import render_voice

SR = 48000


@pytest.fixture(scope="module")
def kit():
    return load_kit(None)


def first_nonzero(x):
    nz = np.flatnonzero(np.abs(x).max(axis=1) > 0)
    return int(nz[0]) if len(nz) else None


def one_patch_kit(patch, choke=0):
    return Kit(name="one", channels=[Channel(patch=patch, choke=choke) for _ in range(8)])


def test_default_kit_loads_with_every_class_mapped(kit):
    assert kit.name
    assert {kit.class_channel(d) for d in range(9)} <= set(range(8))
    # the hats share a choke group so a closed hat cuts an open one
    assert kit.channels[kit.class_channel(2)].choke == kit.channels[kit.class_channel(3)].choke > 0


@pytest.mark.parametrize("drum", range(9))
def test_hits_are_sample_accurate(kit, drum):
    times = [0.0123457, 0.5 + 1.3 / SR, 1.0001]
    audio = render([(t, drum, 90) for t in times], kit, tail_s=0.05)
    for i, t in enumerate(times):
        n = int(round(t * SR))
        lo = int(round(times[i - 1] * SR)) if i else 0
        if i:   # the previous hit may still ring: isolate this hit against a render without it
            rest = render([(u, drum, 90) for u in times[:i]], kit, tail_s=times[i] - times[i - 1] + 0.05)
            seg = audio[lo:n + 10] - rest[lo:n + 10]
            assert np.all(seg[: n - lo] == 0)
            assert np.any(seg[n - lo] != 0)
        else:
            assert first_nonzero(audio) == n


def test_pure_tone_starts_on_its_first_sample():
    tone = Patch(mix=100.0, nVel=200.0, oscAtk=0.0, oscFreq=50.0)   # no noise at all
    audio = render([(0.25, 0, 100)], one_patch_kit(tone))
    assert first_nonzero(audio) == int(round(0.25 * SR))


def test_block_renderer_matches_offline_render(kit):
    hits = [(0.0, 0, 100), (0.1 + 17 / SR, 2, 80), (0.2, 3, 70), (0.3 + 5 / SR, 2, 60), (0.31, 1, 127)]
    ref = render(hits, kit, tail_s=0.4)
    r = BlockRenderer(kit, block_frames=128)
    out = np.zeros((128, 2), np.float32)
    starts = [int(round(t * SR)) for t, _, _ in hits]
    blocks = []
    k = 0
    for b in range(0, len(ref), 128):
        while k < len(hits) and starts[k] < b + 128:
            r.trigger(starts[k] - b, hits[k][1], hits[k][2], seed=_hit_seed(starts[k], hits[k][1], hits[k][2]))
            k += 1
        r.process(out)
        blocks.append(out.copy())
    live = np.concatenate(blocks)[: len(ref)]
    np.testing.assert_allclose(live, ref, atol=1e-6)


def test_process_fills_the_buffer_in_place_and_ends_voices(kit):
    r = BlockRenderer(kit, block_frames=64)
    out = np.full((64, 2), 7.0, np.float32)
    r.process(out)
    assert np.all(out == 0)              # silence overwrites, nothing accumulates
    r.trigger(3, 2, 100)                  # a closed hat: short
    r.process(out)
    assert np.all(out[:3] == 0) and np.any(out[3] != 0)
    for _ in range(2000):
        r.process(out)
    assert r.voices == 0 and np.all(out == 0)
    r.trigger(0, 0, 100)
    r.reset()
    r.process(out)
    assert np.all(out == 0)


def test_velocity_changes_loudness(kit):
    quiet = render([(0.0, 0, 20)], kit)
    loud = render([(0.0, 0, 120)], kit)
    assert np.sqrt(np.mean(loud ** 2)) > 2 * np.sqrt(np.mean(quiet ** 2))


def test_velocity_sensitivity_parameter():
    # oscVel scales how much the tone follows velocity: at 200 % the tone is silent
    base = Patch(mix=100.0, nVel=200.0)
    a = render_voice(Patch(**{**base.to_dict(), "oscVel": 0.0}).to_array(), 100)
    b = render_voice(Patch(**{**base.to_dict(), "oscVel": 150.0}).to_array(), 100)
    assert np.abs(b).max() < 0.6 * np.abs(a).max()


def test_slow_attack_is_not_cut_off():
    slow = Patch(mix=100.0, oscAtk=400.0, oscDcy=200.0, nVel=200.0, oscFreq=200.0, modAmt=0.0)
    x = render_voice(slow.to_array(), 100)
    assert len(x) >= 0.6 * SR
    m = len(x) // 480 * 480
    env = np.abs(x[:m, 0]).reshape(-1, 480).max(axis=1)
    assert env.argmax() >= int(0.35 * SR) // 480       # the peak is at the end of the attack
    assert env[int(0.1 * SR) // 480] > 0                # and it sounds during the attack


def test_voice_ends_when_envelopes_end():
    p = Patch(oscDcy=100.0, nEnvDcy=50.0, distAmt=0.0, mix=80.0)
    x = render_voice(p.to_array(), 100)
    d = p.distAmt / 100
    dec = 0.05 * math.cos(math.pi * d / 2) + 0.3 * d * math.sin(math.pi * d / 2)
    expect = max(0.1 * (1 + dec), 1.4 * 0.05) * SR
    assert abs(len(x) - expect) <= 2


def test_choke_fades_the_open_hat_quickly(kit):
    t_close = 0.1
    both = render([(0.0, 3, 100), (t_close, 2, 100)], kit, tail_s=0.3)
    closed_only = render([(t_close, 2, 100)], kit, tail_s=0.3)
    open_only = render([(0.0, 3, 100)], kit, tail_s=0.5)
    n = int(round(t_close * SR))
    residue = both[n:] - closed_only[n:len(both)]
    fade = int(0.003 * SR) + 2
    assert np.abs(residue[fade:]).max() < 1e-6           # gone after the fade
    assert np.abs(open_only[n + fade:n + 4 * fade]).max() > 1e-3   # it would still ring otherwise
    # no click: the fade never jumps more than the open hat itself moves per sample
    step = np.abs(np.diff(residue[:fade + 2], axis=0)).max()
    assert step <= np.abs(np.diff(open_only[n - 200:n + 200], axis=0)).max() + 1e-6


def test_voice_stealing_fades_the_oldest():
    long = Patch(mix=100.0, oscDcy=2000.0, nVel=200.0, modAmt=0.0, oscFreq=300.0)
    k = one_patch_kit(long)
    hits = [(0.0, 0, 100), (0.1, 0, 100), (0.2, 0, 100)]
    stolen = render(hits, k, polyphony=2, tail_s=0.3)
    free = render(hits, k, polyphony=16, tail_s=0.3)
    n = int(round(0.2 * SR))
    np.testing.assert_allclose(stolen[:n], free[:n], atol=1e-7)
    later = render(hits[1:], k, polyphony=16, tail_s=0.4)[int(0.1 * SR):]
    tail = stolen[n + int(0.004 * SR):] - later[n - int(0.1 * SR) + int(0.004 * SR):][: len(stolen) - n - int(0.004 * SR)]
    assert np.abs(tail).max() < 1e-6                    # the first voice is gone after the fade
    diff = np.abs(np.diff(stolen[n - 5:n + 200, 0]))
    assert diff.max() < 0.05                            # and left without a click


def test_offline_render_output_is_bounded_and_finite(kit):
    rng = np.random.default_rng(0)
    hits = [(float(t), int(d), 127) for t, d in zip(rng.uniform(0, 0.5, 60), rng.integers(0, 9, 60))]
    audio = render(hits, kit, polyphony=64)
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


def _random_patch(rng) -> Patch:
    from rolypoly.synth.patch import SPECS
    d = {}
    for k, (lo, hi, kind) in SPECS.items():
        if kind == "choice":
            d[k] = int(rng.integers(int(lo), int(hi) + 1))
        elif kind in ("hz", "ms"):
            lo2 = max(lo, 0.1)
            d[k] = float(np.exp(rng.uniform(np.log(lo2), np.log(min(hi, 20000.0 if kind == "hz" else 800.0)))))
        elif kind == "db":
            d[k] = float(rng.uniform(-30, 24))
        else:
            d[k] = float(rng.uniform(lo, hi))
    return Patch.from_dict(d)


def test_random_patches_never_nan_or_beyond_unity():
    rng = np.random.default_rng(1)
    for _ in range(40):
        p = _random_patch(rng)
        x = render_voice(p.to_array(), int(rng.integers(1, 128)), seed=int(rng.integers(1, 1000)))
        assert np.isfinite(x).all(), p
        assert np.abs(x).max() <= 1.0, p


def test_morph_interpolates():
    a = Patch(oscFreq=50.0, oscDcy=100.0, mix=20.0, oscWave=0, level=-math.inf)
    b = Patch(oscFreq=200.0, oscDcy=400.0, mix=80.0, oscWave=2, level=0.0)
    m = morph(a, b, 0.5)
    assert m.oscFreq == pytest.approx(100.0)                     # geometric for Hz
    assert m.oscDcy == pytest.approx(math.sqrt(101 * 401) - 1)    # geometric (offset) for ms
    assert m.mix == pytest.approx(50.0)
    assert m.oscWave == 2 and morph(a, b, 0.49).oscWave == 0     # choices switch at 0.5
    assert morph(a, b, 0.0).oscFreq == pytest.approx(50.0) and morph(a, b, 1.0).oscDcy == pytest.approx(400.0)
    assert math.isfinite(m.level)
    with pytest.raises(SynthError):
        morph(a, b, 1.5)


def test_bad_patch_values():
    with pytest.raises(SynthError, match="bogus"):
        Patch.from_dict({"bogus": 1})
    with pytest.raises(SynthError, match="NaN"):
        Patch.from_dict({"oscFreq": float("nan")})
    with pytest.raises(SynthError, match="oscWave"):
        Patch.from_dict({"oscWave": 5})
    with pytest.warns(UserWarning, match="mix"):
        p = Patch.from_dict({"mix": 150})
    assert p.mix == 100.0


def test_bad_hits(kit):
    for bad in ([(0.0, 9, 100)], [(0.0, 0, 0)], [(-1.0, 0, 100)], [(float("nan"), 0, 100)], [("x", 0)]):
        with pytest.raises(SynthError):
            render(bad, kit)
    r = BlockRenderer(kit)
    with pytest.raises(SynthError):
        r.trigger(0, 12, 100)


def test_kit_toml_round_trip(tmp_path, kit):
    path = save_kit(kit, tmp_path / "k.toml")
    back = load_kit(path)
    assert back.name == kit.name and back.mapping == kit.mapping and back.tune == kit.tune
    for a, b in zip(kit.channels, back.channels):
        assert a.patch.to_dict() == b.patch.to_dict() and a.pan == b.pan and a.choke == b.choke
    x = render([(0.0, 5, 100)], kit)
    y = render([(0.0, 5, 100)], back)
    np.testing.assert_array_equal(x, y)


def test_bad_kit_files(tmp_path, kit):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(SynthError, match="bad.toml"):
        load_kit(bad)
    text = (tmp_path / "ok.toml")
    save_kit(kit, text)
    t = text.read_text()
    for old, new, msg in (("oscFreq = ", "oscFrequency = ", "oscFrequency"),
                          ("kick = 1", "kick = 12", "mapping"),
                          ("pan = 0.0", "pan = 3.0", "pan")):
        p = tmp_path / "x.toml"
        p.write_text(t.replace(old, new, 1))
        with pytest.raises(SynthError, match=msg):
            load_kit(p)
    with pytest.raises(SynthError, match="does not exist"):
        load_kit(tmp_path / "missing.toml")


def test_tuned_class_shares_a_channel(kit):
    # mid tom plays the low tom channel a few semitones up
    assert kit.class_channel(DRUMS.index("midtom")) == kit.class_channel(DRUMS.index("lowtom"))
    assert kit.class_patch(DRUMS.index("midtom")).oscFreq > kit.class_patch(DRUMS.index("lowtom")).oscFreq


def test_blocks_allocate_nothing(kit):
    import tracemalloc
    r = BlockRenderer(kit, block_frames=128)
    out = np.zeros((128, 2), np.float32)
    for d in range(9):
        r.trigger(d * 3, d, 100)
    r.process(out)
    tracemalloc.start()
    try:
        for b in range(300):
            if b % 10 == 0:
                r.trigger(b % 128, b % 9, 90)
            r.process(out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one array per block would be >= 300 kB; Python ints for the triggers are all we allow
    assert peak < 16_000
