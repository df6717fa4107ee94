"""The listener: accuracy on virtual takes, streaming invariance, bad input, sound check, CLI."""
import json
from pathlib import Path

import numpy as np
import pytest

from rolypoly.ears.listener import Listener, detect_onsets, soundcheck
from rolypoly.metrics import onset_f_measure
from rolypoly.errors import AudioError, ConfigError
from rolypoly.sim.musician import play, rhythm

SR = 48000
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def take():
    t, ph, bar = rhythm(6, bpm=112, seed=21)
    return play(t, ph, bar, "laid_back", sr=SR, seed=22, level_db=-18)


def test_f_measure_pairs_one_to_one():
    r = onset_f_measure([0.50, 0.51, 1.0], [0.5, 1.02, 2.0], 0.025)
    assert r["tp"] == 2 and r["n_detected"] == 3 and r["n_true"] == 3
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert sorted(np.round(r["delays"], 6)) == [-0.02, 0.0]
    assert onset_f_measure([0.3], [], 0.05)["precision"] == 0.0


def test_f_measure_is_mir_evals_exactly():
    # random onset sets, crowded so that greedy nearest-first pairing would lose matches
    mir_eval = pytest.importorskip("mir_eval")
    import warnings
    rng = np.random.default_rng(0)
    for trial in range(300):
        truth = np.sort(rng.uniform(0, 3, int(rng.integers(0, 40))))
        kept = truth[rng.random(truth.size) < 0.8]
        det = np.sort(np.concatenate([kept + rng.normal(0, 0.02, kept.size),
                                      rng.uniform(0, 3, int(rng.integers(0, 10)))]))
        for window in (0.025, 0.05):
            ours = onset_f_measure(det, truth, window)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = mir_eval.onset.f_measure(truth, det, window)
            assert (ours["f"], ours["precision"], ours["recall"]) == pytest.approx(ref, abs=0.0)
    # the case nearest-first pairing gets wrong: one pair taken greedily blocks two
    assert onset_f_measure([0.03, 0.08], [0.0, 0.05], 0.05)["tp"] == 2


def test_detects_virtual_plucks(take):
    audio, truth = take
    lis = Listener(SR, 128)
    det = detect_onsets(audio, SR, listener=lis)
    r = onset_f_measure(det, truth, 0.025)
    assert r["f"] >= 0.95
    assert np.median(np.abs(r["delays"])) < 0.008
    assert lis.latency_s >= 0.0
    # the delay that matters live: true onset to the end of the 128-frame block that reported it
    det, at = detect_onsets(audio, SR, block=128, listener=Listener(SR, 128), reported=True)
    assert np.median(onset_f_measure(det, truth, 0.025, reported=at)["report_delays"]) <= 0.012


def test_f_measure_report_delays_follow_the_pairs():
    # detections out of order: each report moment stays with its detection
    r = onset_f_measure([1.03, 0.49, 3.0], [0.5, 1.0], 0.05, reported=[1.04, 0.5032, 3.01])
    assert np.allclose(r["delays"], [-0.01, 0.03])
    assert np.allclose(r["report_delays"], [0.0032, 0.04])
    assert "report_delays" not in onset_f_measure([0.49], [0.5], 0.05)
    from rolypoly.errors import RolypolyError
    with pytest.raises(RolypolyError, match="reported"):
        onset_f_measure([0.49, 1.0], [0.5], 0.05, reported=[0.5])


def _clicks(times, n):
    rng = np.random.default_rng(5)
    x = np.zeros(n, np.float32)
    for t in times:
        i = int(round(t * SR))
        x[i:i + 480] += (0.5 * rng.standard_normal(480) * np.exp(-np.arange(480) / 100)).astype(np.float32)
    return x


def test_clicks_reported_after_they_begin_within_a_few_hops():
    truth = [0.5003, 1.0171, 1.5099]
    x = _clicks(truth, 2 * SR)
    det, at = detect_onsets(x, SR, block=128, reported=True)
    assert np.array_equal(det, detect_onsets(x, SR, block=128))   # the default return is unchanged
    assert np.allclose(at * SR % 128, 0.0)                        # report moments are block ends
    r = onset_f_measure(det, truth, 0.025, reported=at)
    assert r["tp"] == 3
    rd = r["report_delays"]
    assert np.all(rd >= 0.0) and np.all(rd <= 3 * 128 / SR)       # never before the click, within 3 hops
    assert np.all(rd >= r["delays"])                              # reported no earlier than the time it gives
    # a larger block changes when an onset is reported, never what it is
    det4, at4 = detect_onsets(x, SR, block=4096, reported=True)
    assert np.array_equal(det4, det) and np.all(at4 >= at) and np.allclose(at4 * SR % 4096, 0.0)


def test_block_size_does_not_matter(take):
    audio, _ = take
    a = detect_onsets(audio, SR, block=128)
    b = detect_onsets(audio, SR, block=1000)
    lis = Listener(SR, 128)
    rng = np.random.default_rng(0)
    c, i = [], 0
    while i < audio.size:
        n = int(rng.integers(1, 700))
        c += lis.process(audio[i:i + n])
        i += n
    assert np.array_equal(a, b) and np.array_equal(a, np.asarray(c))


def test_large_blocks_match_small_blocks(take):
    # the offline duet feeds 4096-frame blocks, the live engine 128: same onsets, bit for bit
    audio, _ = take
    assert np.array_equal(detect_onsets(audio, SR, block=128), detect_onsets(audio, SR, block=4096))


def test_kernel_fft_matches_numpy():
    from rolypoly.ears.kernel import State, Tables, rfft_mag
    from rolypoly.ears.listener import DEFAULTS
    tab = Tables(SR, 128, DEFAULTS)
    st = State(tab)
    rng = np.random.default_rng(5)
    frame = rng.standard_normal(tab.n_fft)
    mag = np.zeros(tab.n_fft // 2 + 1)
    t = tab.fft_tabs
    rfft_mag(frame, tab.window, st.re, st.im, tab.rev, t[0], t[1], t[2], t[3], mag)
    assert np.allclose(mag, np.abs(np.fft.rfft(frame * tab.window)), atol=1e-9)


def test_multichannel_input_is_averaged(take):
    audio, _ = take
    quad = np.stack([audio, audio, audio, audio], axis=1)
    assert np.array_equal(detect_onsets(quad, SR), detect_onsets(audio, SR))


def test_tabla_and_wind_players():
    # ringing strokes under new ones, damped ghost strokes; breath before the tone
    t, ph, bar = rhythm(4, bpm=100, seed=31)
    audio, truth = play(t, ph, bar, "laid_back", sr=SR, seed=32, style="tabla", level_db=-18)
    assert onset_f_measure(detect_onsets(audio, SR), truth, 0.025)["f"] >= 0.95
    audio, truth = play(t, ph, bar, "laid_back", sr=SR, seed=33, style="wind", level_db=-18)
    r = onset_f_measure(detect_onsets(audio, SR), truth, 0.05)
    assert r["precision"] >= 0.8 and r["recall"] >= 0.6   # slurred notes have no attack: some are missed


def test_quiet_clicks_under_playing_are_gated():
    # a key click 40 dB under the playing, between notes, is not a note (it is without the gate)
    t, ph, bar = rhythm(2, bpm=100, steps_per_bar=4, fill=1.0, seed=6)
    audio, truth = play(t, ph, bar, "on_grid", sr=SR, seed=6, level_db=-12, tail_s=2.0)
    click_at = truth[-1] + 1.0
    i = int(click_at * SR)
    rng = np.random.default_rng(2)
    audio[i:i + 96] += (rng.uniform(-1, 1, 96) * 10 ** (-52 / 20)).astype(np.float32)
    det = detect_onsets(audio, SR)
    assert not np.any(np.abs(det - click_at) < 0.05)
    assert onset_f_measure(det, truth, 0.025)["f"] >= 0.95


def test_reset_restarts_time(take):
    audio, _ = take
    lis = Listener(SR, 128)
    first = detect_onsets(audio, SR, listener=lis)
    lis.reset()
    second = detect_onsets(audio, SR, listener=lis)
    assert np.array_equal(first, second)


def test_stereo_is_downmixed(take):
    audio, _ = take
    stereo = np.stack([audio, audio], axis=1)
    assert np.array_equal(detect_onsets(stereo, SR), detect_onsets(audio, SR))


def test_quiet_player_is_heard():
    t, ph, bar = rhythm(4, bpm=100, seed=4)
    audio, truth = play(t, ph, bar, "on_grid", sr=SR, seed=4, level_db=-30)
    assert onset_f_measure(detect_onsets(audio, SR), truth, 0.025)["f"] >= 0.95


def test_silence_and_noise_make_no_storm():
    rng = np.random.default_rng(1)
    assert detect_onsets(np.zeros(SR * 3, np.float32), SR).size == 0
    noise = (rng.standard_normal(SR * 5) * 0.1).astype(np.float32)
    assert detect_onsets(noise, SR).size <= 5   # at most one a second in steady noise


def test_nan_inf_dc_clipping_warn_once_and_no_storm(take):
    audio, truth = take
    bad = audio.copy()
    bad[SR:SR + 5000] = np.nan
    bad[2 * SR:2 * SR + 100] = np.inf
    msgs = []
    lis = Listener(SR, 128, on_warning=msgs.append)
    det = detect_onsets(bad, SR, listener=lis)
    assert sum("NaN" in m for m in msgs) == 1
    assert det.size <= truth.size + 3
    msgs.clear()
    dc = np.full(SR * 2, 0.5, np.float32)
    det = detect_onsets(dc, SR, listener=Listener(SR, 128, on_warning=msgs.append))
    assert det.size <= 1 and any("DC" in m for m in msgs)
    msgs.clear()
    clipped = np.clip(audio * 100, -1, 1).astype(np.float32)
    det = detect_onsets(clipped, SR, listener=Listener(SR, 128, on_warning=msgs.append))
    assert any("clipping" in m for m in msgs)
    assert onset_f_measure(det, truth, 0.025)["f"] >= 0.9


def test_default_warning_goes_through_warnings():
    with pytest.warns(RuntimeWarning):
        Listener(SR, 128).process(np.full(256, np.nan, np.float32))


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        Listener(SR, 128, method="psychic")
    with pytest.raises(ConfigError):
        Listener(SR, 128, thresold=0.2)
    with pytest.raises(ConfigError):
        Listener(SR, 128, instrument="theremin")
    with pytest.raises(ConfigError):
        Listener(100, 128)


def test_from_config_and_settings_roundtrip():
    from rolypoly.config import load_config
    cfg = load_config(["listen.threshold=0.25"])
    lis = Listener.from_config(cfg.listen, SR)
    assert lis.settings["threshold"] == 0.25 and lis.settings["hop"] == 128
    s = {k: v for k, v in lis.settings.items() if k not in ("sr", "hop")}
    again = Listener(SR, 128, **s)
    assert again.settings == lis.settings


def test_aubio_baseline_runs(take):
    pytest.importorskip("aubio")
    audio, truth = take
    lis = Listener(SR, 128, method="hfc")
    det = detect_onsets(audio, SR, listener=lis)
    assert onset_f_measure(det, truth, 0.05)["f"] > 0.8


def test_soundcheck_sets_gain_and_threshold():
    t, ph, bar = rhythm(3, bpm=110, seed=8)
    quiet, truth = play(t, ph, bar, "on_grid", sr=SR, seed=8, level_db=-40, noise_db=-80)
    s = soundcheck(quiet, SR, instrument="guitar")
    assert s["gain_db"] > 10 and s["instrument"] == "guitar"
    lis = Listener(SR, 128, **s)
    assert onset_f_measure(detect_onsets(quiet, SR, listener=lis), truth, 0.025)["f"] >= 0.95
    with pytest.raises(AudioError):
        soundcheck(np.zeros(SR * 2), SR)
    with pytest.raises(ConfigError):
        soundcheck(quiet, SR, instrument="theremin")


def test_onsets_command_json(tmp_path, capsys, take):
    import soundfile as sf

    from rolypoly.cli import main
    audio, truth = take
    path = tmp_path / "take.wav"
    sf.write(path, audio, SR)
    assert main(["onsets", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert onset_f_measure(out["onsets_s"], truth, 0.025)["f"] >= 0.95
    assert main(["onsets", str(tmp_path / "missing.wav")]) == 2


@pytest.mark.slow
def test_real_recordings_beat_plain_aubio():
    pytest.importorskip("aubio")
    manifest = DATA / "real_onsets" / "manifest.json"
    if not manifest.is_file():
        pytest.skip("../shared/data/real_onsets is not here")
    from math import gcd

    import soundfile as sf
    from scipy.signal import resample_poly
    pooled = {}
    for entry in json.loads(manifest.read_text())["files"]:
        x, sr = sf.read(str(manifest.parent / entry["audio"]), dtype="float32")
        g = gcd(SR, sr)
        x = resample_poly(x, SR // g, sr // g).astype(np.float32)
        truth = np.loadtxt(manifest.parent / entry["onsets"], ndmin=1)
        for method in ("default", "hfc", "complex", "specflux", "energy"):
            r = onset_f_measure(detect_onsets(x, SR, method=method), truth, 0.05)
            acc = pooled.setdefault(method, [0, 0, 0])
            acc[0] += r["tp"]; acc[1] += r["n_detected"]; acc[2] += r["n_true"]
    f = {m: 2 * tp / (nd + nt) for m, (tp, nd, nt) in pooled.items()}
    assert f["default"] >= max(v for m, v in f.items() if m != "default")


def test_slur_cue_hears_slurs():
    # wind phrases (the wind preset: breath between notes): pure slurs change pitch with no
    # new attack; the slur cue finds them
    tp = {False: [0, 0, 0], True: [0, 0, 0]}
    for seed in (41, 43, 45, 47):
        t, ph, bar = rhythm(4, bpm=100, seed=seed)
        audio, truth = play(t, ph, bar, "laid_back", sr=SR, seed=seed + 1, style="wind", level_db=-18)
        for slur in (False, True):
            r = onset_f_measure(detect_onsets(audio, SR, instrument="wind", slur=slur), truth, 0.025)
            tp[slur][0] += r["tp"]; tp[slur][1] += r["n_detected"]; tp[slur][2] += r["n_true"]
    f = {k: 2 * a / (b + c) for k, (a, b, c) in tp.items()}
    assert tp[True][0] > tp[False][0] + 5 and f[True] >= 0.95 > f[False]


def test_slur_cue_ignores_glides_and_vibrato():
    sr = SR
    t = np.arange(int(1.5 * sr)) / sr

    def tone(f0_track):
        ph = 2 * np.pi * np.cumsum(f0_track) / sr
        y = sum(h ** -1.0 * np.sin(h * ph) for h in range(1, 8))
        env = np.clip((t - 0.2) / 0.02, 0, 1) * np.clip((t[-1] - t) / 0.05, 0, 1)
        return (0.2 * env * y / np.max(np.abs(y))).astype(np.float32)

    steady = np.full(t.size, 220.0)
    # a wide, slow bend (a drum's falling pitch, a guitar bend): 3 semitones over 150 ms
    bend = 220.0 * 2 ** (-3 / 12 * np.clip((t - 0.6) / 0.15, 0, 1))
    vibrato = 220.0 * 2 ** (0.35 / 12 * np.sin(2 * np.pi * 5.5 * t))
    for f0 in (steady, bend, vibrato):
        assert detect_onsets(tone(f0), sr).size == 1
    # the same tone slurred up one semitone over 25 ms at 0.8 s: no attack for the flux,
    # a second onset from the slur cue, dated near it
    slur = 220.0 * 2 ** (np.clip((t - 0.8) / 0.025, 0, 1) / 12)
    assert detect_onsets(tone(slur), sr, slur=False).size == 1
    found = detect_onsets(tone(slur), sr)
    assert found.size == 2 and abs(found[1] - 0.8) < 0.025


def test_tonal_cue_is_block_size_invariant_and_keeps_plucks(take):
    audio, truth = take
    a = detect_onsets(audio, SR, block=128, tonal=True)
    b = detect_onsets(audio, SR, block=4096, tonal=True)
    assert np.array_equal(a, b)
    assert onset_f_measure(a, truth, 0.025)["f"] >= 0.95


def test_tonal_settings_are_checked():
    with pytest.raises(ConfigError):
        Listener(SR, 128, tonal="yes")
    with pytest.raises(ConfigError):
        Listener(SR, 128, slur_semitones=0)
    assert Listener(SR, 128, instrument="voice").settings["tonal"] is True


def test_soundcheck_never_lowers_the_floor_and_raises_it_in_a_noisy_room():
    # a take with exact digital silence between phrases: the floor must not sink to -90 dB
    t, ph, bar = rhythm(3, bpm=110, seed=9)
    x, truth = play(t, ph, bar, "on_grid", sr=SR, seed=9, level_db=-12)
    x = np.concatenate([np.zeros(SR * 2, np.float32), x, np.zeros(SR * 2, np.float32)])
    s = soundcheck(x, SR, instrument="guitar")
    assert s.get("silence_db", -70.0) >= -70.0
    # a noisy room (-45 dBFS): the floor goes up from the default, but stays 30 dB under the player
    rng = np.random.default_rng(1)
    noisy = x + (rng.standard_normal(x.size) * 10 ** (-45 / 20)).astype(np.float32)
    s = soundcheck(noisy, SR, instrument="guitar")
    fr = noisy[: noisy.size // 960 * 960].reshape(-1, 960).astype(np.float64)
    play_db = np.percentile(10 * np.log10(np.mean(fr ** 2, axis=1) + 1e-20), 95)
    assert -70.0 < s["silence_db"] <= play_db + s["gain_db"] - 30.0 + 0.1


def test_soundcheck_is_never_worse_than_the_default():
    # quiet, loud, noisy players: the sound check's settings hear at least as well as the defaults
    for k, (level, noise) in enumerate(((-40.0, None), (-12.0, None), (-24.0, -60.0), (-30.0, -75.0))):
        t, ph, bar = rhythm(3, bpm=104, seed=60 + k)
        x, truth = play(t, ph, bar, "laid_back", sr=SR, seed=70 + k, level_db=level, noise_db=noise)
        plain = onset_f_measure(detect_onsets(x, SR, instrument="guitar"), truth, 0.025)["f"]
        s = soundcheck(x, SR, instrument="guitar")
        checked = onset_f_measure(detect_onsets(x, SR, **s), truth, 0.025)["f"]
        assert checked >= plain - 1e-9, (level, noise, plain, checked)


def _breath_then_tone(rng, breath_s=0.12, tone_at=1.0, f0=220.0):
    """Silence, breath noise swelling in for ``breath_s``, then a tone (true onset ``tone_at``)."""
    n = int(2.0 * SR)
    x = np.zeros(n)
    a, b = int((tone_at - breath_s) * SR), int(tone_at * SR)
    x[a:b] = rng.standard_normal(b - a) * 0.003 * np.linspace(0.0, 1.0, b - a) ** 2
    k = np.arange(n - b) / SR
    tone = sum(np.sin(2 * np.pi * f0 * h * k) / h for h in range(1, 8))
    x[b:] = 0.1 * tone * (1.0 - np.exp(-k / 0.005)) + rng.standard_normal(n - b) * 0.003
    return x.astype(np.float32)


def test_breath_before_a_tone_is_not_an_onset():
    rng = np.random.default_rng(3)
    x = _breath_then_tone(rng)
    det = detect_onsets(x, SR)
    assert det.size == 1 and abs(det[0] - 1.0) < 0.025
    # without the hold the breath fires on its own, well before the tone
    early = detect_onsets(x, SR, hold_ms=0.0)
    assert np.any(early < 0.95)


def test_a_lone_quiet_onset_is_kept_with_its_time():
    # a ghost note 25 dB under the playing, with nothing after it: held back, then reported
    t, ph, bar = rhythm(2, bpm=100, steps_per_bar=4, fill=1.0, seed=6)
    audio, truth = play(t, ph, bar, "on_grid", sr=SR, seed=6, level_db=-12, tail_s=2.0)
    ghost_at = truth[-1] + 1.0
    g, _ = play([0.0], [0.0], 2.0, "on_grid", sr=SR, seed=7, level_db=-37, tail_s=0.5)
    i = int(ghost_at * SR)
    audio[i:i + g.size] += g[: audio.size - i]
    det = detect_onsets(audio, SR)
    assert np.sum(np.abs(det - ghost_at) < 0.01) == 1
    assert onset_f_measure(det, np.append(truth, ghost_at), 0.025)["f"] >= 0.95



def test_hold_flatness_reports_a_tonal_quiet_onset_at_once_and_still_holds_breath():
    """Held, a quiet note is reported only when the hold ends (the delay a wind or a voice
    player heard in the corpus); with ``hold_flatness`` a tonal one goes out at once, while
    breath (noise) is still held and dropped before its tone."""
    t, ph, bar = rhythm(2, bpm=100, steps_per_bar=4, fill=1.0, seed=6)
    audio, truth = play(t, ph, bar, "on_grid", sr=SR, seed=6, level_db=-12, tail_s=2.0)
    ghost_at = truth[-1] + 1.0
    k = np.arange(int(0.6 * SR)) / SR      # a soft tone, 25 dB under the playing (a quiet held note)
    tone = sum(np.sin(2 * np.pi * 220.0 * h * k) / h for h in range(1, 8)) * (1.0 - np.exp(-k / 0.005))
    peak = np.max(np.abs(audio))
    i = int(ghost_at * SR)
    audio[i:i + k.size] += (peak * 10 ** (-25 / 20) / np.max(np.abs(tone)) * tone)[: audio.size - i]
    for kw, lo, hi in (({"hold_flatness": 0.0}, 0.15, 0.3), ({}, 0.0, 0.03), ({"hold_flatness": 0.3}, 0.0, 0.03)):
        det, at = detect_onsets(audio, SR, block=128, reported=True, **kw)
        j = np.flatnonzero(np.abs(det - ghost_at) < 0.01)
        assert j.size == 1, kw
        assert lo <= at[j[0]] - ghost_at <= hi, (kw, at[j[0]] - ghost_at)
    x = _breath_then_tone(np.random.default_rng(3))
    for kw in ({}, {"hold_flatness": 0.3}):
        det = detect_onsets(x, SR, **kw)
        assert det.size == 1 and abs(det[0] - 1.0) < 0.025


def _hat_before_a_stroke(rng, gap_s=0.12):
    """Loud noise strokes every 0.5 s; a quiet one (a hat, 25 dB under them, dying away in
    10 ms) ``gap_s`` before the last.  Returns (audio, the hat's time)."""
    n = int(3.0 * SR)
    x = rng.standard_normal(n) * 1e-5

    def stroke(at, level, tau):
        i = int(at * SR)
        k = np.arange(min(n - i, int(0.3 * SR))) / SR
        x[i:i + k.size] += level * rng.standard_normal(k.size) * np.exp(-k / tau)
    for at in (0.5, 1.0, 1.5, 2.0):
        stroke(at, 0.3, 0.05)
    stroke(2.0 - gap_s, 0.3 * 10 ** (-25 / 20), 0.01)
    return x.astype(np.float32), 2.0 - gap_s


def test_a_quiet_stroke_that_died_away_before_the_next_is_a_note():
    x, hat = _hat_before_a_stroke(np.random.default_rng(4))
    det = detect_onsets(x, SR, stroke_decay_db=6.0)
    assert np.sum(np.abs(det - hat) < 0.01) == 1
    assert np.sum(np.abs(det - 2.0) < 0.01) == 1 and det.size == 5
    # without the decay test the hold takes it for the run-up of the loud stroke
    plain = detect_onsets(x, SR, stroke_decay_db=0.0)
    assert not np.any(np.abs(plain - hat) < 0.05) and plain.size == 4


def test_breath_swelling_into_a_tone_is_no_stroke():
    # breath grows on into the tone: the decay test leaves the hold to drop it
    x = _breath_then_tone(np.random.default_rng(3))
    det = detect_onsets(x, SR, stroke_decay_db=6.0, tonal_swell=True)
    assert det.size == 1 and abs(det[0] - 1.0) < 0.025


def _slow_bow(start=2.0, rise_s=0.25):
    """Two loud notes, then a quiet bow scrape at ``start`` growing into a tone over
    ``rise_s`` (a slow bowed attack): tonal from the scrape on."""
    t = np.arange(int(3.0 * SR)) / SR
    rng = np.random.default_rng(1)
    x = 3e-4 * rng.standard_normal(t.size)
    for at in (0.5, 1.0):
        x += 0.3 * np.clip((t - at) / 0.01, 0, 1) * np.clip((at + 0.4 - t) / 0.02, 0, 1) * np.sin(2 * np.pi * 220.0 * t)
    y = sum(np.sin(2 * np.pi * 147.0 * h * t) / h for h in range(1, 10))
    x += 0.5 * np.clip((t - start) / rise_s, 0, 1) ** 2 * np.clip((2.8 - t) / 0.05, 0, 1) * y / np.max(np.abs(y))
    x += 0.01 * rng.standard_normal(t.size) * np.exp(-np.clip(t - start, 0, None) / 0.01) * (t >= start)
    return x.astype(np.float32)


def test_a_slow_bow_is_dated_at_its_start():
    x = _slow_bow()
    det = detect_onsets(x, SR, tonal_swell=True)
    assert det.size == 3 and abs(det[2] - 2.0) < 0.02
    # without it the held onset is taken for a run-up and the note dated where it got loud
    late = detect_onsets(x, SR, tonal_swell=False)
    assert late.size == 3 and late[2] - 2.0 > 0.1

def test_a_reattacked_tone_is_dated_at_its_dip():
    # a held tone dips 20 dB and swells back over 40 ms (a repeated tongued wind note): it
    # starts at the bottom of the dip, not where the swell is noticed
    n = int(2.0 * SR)
    env = np.ones(n)
    a, bottom, c = int(0.98 * SR), int(1.0 * SR), int(1.04 * SR)
    env[a:bottom] = np.linspace(1.0, 0.1, bottom - a)
    env[bottom:c] = np.linspace(0.0, 1.0, c - bottom) ** 2 * 0.9 + 0.1
    phase = 2 * np.pi * 233.0 * np.arange(n) / SR   # the same note again: only the level says so
    tone = sum(np.sin(h * phase) / h ** 0.7 for h in range(1, 40))
    x = (0.03 * env * tone).astype(np.float32)
    det = detect_onsets(x, SR)
    near = det[np.abs(det - 1.0) < 0.1]
    assert near.size == 1 and abs(near[0] - 1.0) < 0.02
    # without dating at the dip (nor by its attack) it is reported where the flux noticed the swell
    late = detect_onsets(x, SR, dip_ms=0.1, attack_dating=False)
    assert np.all(np.abs(late[np.abs(late - 1.0) < 0.1] - 1.0) > abs(near[0] - 1.0) + 0.005)


def test_sliding_yin_difference_function_matches_direct_sums():
    from rolypoly.ears.kernel import yin_update as _yin_update
    rng = np.random.default_rng(5)
    w, tmax, nr = 40, 30, 128
    ring = np.zeros(nr)
    dsum = np.zeros(tmax + 2)
    y = rng.standard_normal(700)
    for n, v in enumerate(y):
        ring[n % nr] = v
        _yin_update(ring, n % nr, dsum, w, tmax, (n + 1) % 320 == 0)
    hist = np.concatenate([np.zeros(nr), y])
    end = hist.size
    direct = [np.sum((hist[end - w:end] - hist[end - w - t:end - t]) ** 2) for t in range(1, tmax + 1)]
    assert np.allclose(dsum[1:tmax + 1], direct, rtol=1e-9)


def test_tone_swelling_out_of_breath_is_dated_at_the_tone():
    # 120 ms of breath noise, then a tone swelling in over 80 ms: the note starts with the tone
    sr = SR
    rng = np.random.default_rng(3)
    t = np.arange(int(1.2 * sr)) / sr
    start = 0.5
    breath = 0.01 * rng.standard_normal(t.size) * ((t > start - 0.12) & (t < start + 0.3))
    env = np.clip((t - start) / 0.08, 0, 1) ** 2 * np.clip((1.1 - t) / 0.05, 0, 1)
    y = sum(h ** -1.0 * np.sin(2 * np.pi * 196.0 * h * t) for h in range(1, 8))
    x = (breath + 0.1 * env * y / np.max(np.abs(y))).astype(np.float32)
    found = detect_onsets(x, sr)
    assert found.size == 1 and abs(found[0] - start) < 0.025
    # without the pitch tracker the swell is only noticed once it is loud
    late = detect_onsets(x, sr, slur=False)
    assert late.size == 1 and late[0] - start > found[0] - start + 0.01


# --------------------------------------------------------------------------- bad input

def _warnings_of(x, sr=SR, **kw):
    msgs = []
    det = detect_onsets(x, sr, listener=Listener(sr, 128, on_warning=msgs.append, **kw))
    return det, msgs


def test_long_silence_warns_once_and_finds_nothing():
    det, msgs = _warnings_of(np.zeros(SR * 12, np.float32))
    assert det.size == 0 and sum("no input" in m for m in msgs) == 1
    # a short pause is no reason to warn
    det, msgs = _warnings_of(np.zeros(SR * 3, np.float32))
    assert not msgs


def test_all_noise_input_warns_and_makes_no_storm():
    rng = np.random.default_rng(4)
    white = (rng.standard_normal(SR * 8) * 0.05).astype(np.float32)
    det, msgs = _warnings_of(white)
    assert det.size <= 8 and any("noise" in m for m in msgs)
    # crackle (random clicks, 40 a second) from a broken cable: never a storm of onsets
    crackle = np.zeros(SR * 6, np.float32)
    crackle[rng.integers(0, crackle.size, 240)] = rng.uniform(-0.9, 0.9, 240).astype(np.float32)
    det, msgs = _warnings_of(crackle)
    from rolypoly.ears.listener import STORM_PER_S, STORM_S
    for t in det:
        assert np.sum((det > t - STORM_S) & (det <= t)) <= STORM_PER_S * STORM_S
    assert det.size <= STORM_PER_S * 6


def test_any_channel_count_and_integer_samples(take):
    audio, truth = take
    ref = detect_onsets(audio, SR)
    six = np.repeat(audio[:, None], 6, axis=1)
    assert np.array_equal(detect_onsets(six, SR), ref)
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    r = onset_f_measure(detect_onsets(pcm, SR), truth, 0.025)
    assert r["f"] >= 0.95
    lis = Listener(SR, 128, on_warning=lambda m: None)
    assert lis.process(np.zeros((128, 0), np.float32)) == []          # no channels: silence
    assert lis.process(np.zeros((128, 2, 2), np.float32)) == []       # (frames, 2, 2): 4 channels
    assert lis.process(np.zeros(0, np.float32)) == []


def test_other_sample_rates_hear_the_same_notes(take):
    from rolypoly.io import resample
    audio, truth = take
    for sr in (44100, 96000):
        x = resample(audio, SR, sr).astype(np.float32)
        r = onset_f_measure(detect_onsets(x, sr), truth, 0.025)
        assert r["f"] >= 0.95 and abs(np.median(r["delays"])) < 0.008


def test_onsets_command_warns_about_resampling(tmp_path, capsys, take):
    import soundfile as sf

    from rolypoly.cli import main
    from rolypoly.io import resample
    audio, truth = take
    path = tmp_path / "take44.wav"
    sf.write(path, resample(audio, SR, 44100), 44100)
    assert main(["onsets", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert "44100" in captured.err
    assert onset_f_measure(json.loads(captured.out)["onsets_s"], truth, 0.025)["f"] >= 0.95


# --------------------------------------------------------------------------- calibration

def test_latency_is_stored_not_measured(monkeypatch):
    from rolypoly.ears import calibration
    from rolypoly.ears.kernel import Tables
    from rolypoly.ears.listener import DEFAULTS

    def boom(*a, **k):
        raise AssertionError("measured at construction")
    monkeypatch.setattr(calibration, "measure", boom)
    lis = Listener(SR, 128)
    stored = calibration._table()[calibration.key(SR, 128, Tables(SR, 128, DEFAULTS).n_fft, DEFAULTS["lag"],
                                                  DEFAULTS["ref_frames"])]
    assert lis.latency_s == pytest.approx(stored / 1000.0)
    assert Listener(SR, 128, instrument="voice").latency_s == lis.latency_s   # a structure property


def test_detector_does_not_import_the_musician():
    import subprocess
    import sys
    code = ("import sys; from rolypoly.ears import Listener, detect_onsets; import numpy as np; "
            "detect_onsets(np.zeros(48000, np.float32), 48000); "
            "print('rolypoly.sim.musician' in sys.modules, 'rolypoly.sim' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_importing_ears_stays_light():
    import subprocess
    import sys
    code = "import sys, rolypoly.ears; print('numba' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_calibration_notes_have_their_onsets_where_the_sound_starts():
    from rolypoly.ears.calibration import test_notes
    x, onsets = test_notes(SR, seconds=3.0)
    i = int(round(onsets[0] * SR))
    assert np.max(np.abs(x[:i])) < 1e-3 < np.max(np.abs(x[i:i + 48]))   # silence, then the first note
    assert np.all(np.diff(onsets) >= 0.25) and onsets[-1] < 3.0
    # the latency is their median delay: the detector must find nearly all of them
    r = onset_f_measure(detect_onsets(x, SR, latency_ms=0.0), onsets, 0.05)
    assert r["recall"] >= 0.9


# --------------------------------------------------------------------------- leave one family out

def test_lofo_never_scores_a_family_with_a_choice_made_on_it():
    from rolypoly.bench.onsets import lofo
    # candidate "a" is perfect on x only; chosen without x, "b" must be reported for x
    s = {"a": {"x": (10, 10, 10), "y": (2, 10, 10), "z": (2, 10, 10)},
         "b": {"x": (5, 10, 10), "y": (8, 10, 10), "z": (8, 10, 10)}}
    out = lofo(s)
    assert out["x"] == ("b", 0.5)
    assert out["y"][0] == "b" and out["*"][0] == "b"


def test_a_candidate_must_keep_the_real_set_and_the_harder_takes():
    from rolypoly.bench.onsets import HARD_MUST, REAL_MUST, eligible_candidates, lofo
    real = {"a": REAL_MUST + 0.01, "b": REAL_MUST + 0.05, "c": REAL_MUST - 0.01}
    hard = {"a": HARD_MUST, "b": HARD_MUST - 0.01, "c": 1.0}
    assert eligible_candidates(real, hard) == {"a"}
    # b is best on every family but breaks the harder takes: a is chosen
    s = {"a": {"x": (5, 10, 10), "y": (5, 10, 10)}, "b": {"x": (9, 10, 10), "y": (9, 10, 10)},
         "c": {"x": (9, 10, 10), "y": (9, 10, 10)}}
    assert lofo(s, eligible_candidates(real, hard))["*"][0] == "a"


def test_every_preset_the_hold_rules_and_the_dating_are_reachable_from_the_config():
    from rolypoly.config import load_config
    from rolypoly.ears.listener import PRESETS
    for name in PRESETS:
        cfg = load_config([f"listen.instrument={name}"])
        assert Listener.from_config(cfg.listen, SR).instrument == name
    cfg = load_config(["listen.stroke_decay_db=0", "listen.tonal_swell=false"])
    s = Listener.from_config(cfg.listen, SR).settings
    assert s["stroke_decay_db"] == 0 and s["tonal_swell"] is False
    assert Listener.from_config(load_config().listen, SR).settings["stroke_decay_db"] == 6.0
    assert Listener.from_config(load_config().listen, SR).settings["attack_dating"] is True
    off = Listener.from_config(load_config(["listen.attack_dating=false"]).listen, SR)
    assert off.settings["attack_dating"] is False


# --------------------------------------------------------------------------- attack dating

def _clicks_and_ramps(ramp_s=0.01):
    """Alternating instant-attack tones and tones with a ``ramp_s`` linear fade-in, every
    0.5 s over a -80 dBFS noise floor; the truth of each is its first audible sample
    (1 ms level within 30 dB of its own peak, as in the onsets corpus)."""
    from rolypoly.ears.corpus import first_audible
    rng = np.random.default_rng(3)
    x = rng.standard_normal(12 * SR) * 1e-4
    truth = {"click": [], "ramp": []}
    m = int(0.3 * SR)
    tt = np.arange(m) / SR
    for k in range(23):
        i0 = int((0.4 + 0.5 * k) * SR)
        f0 = 220.0 * 2 ** (k % 5 / 12)
        y = np.sin(2 * np.pi * f0 * tt) + 0.5 * np.sin(4 * np.pi * f0 * tt)
        kind = "click" if k % 2 == 0 else "ramp"
        rise = 0.0 if kind == "click" else ramp_s
        y *= np.clip(tt / rise, 0, 1) if rise else 1.0
        y *= 0.3 * np.exp(-np.maximum(tt - rise, 0) / 0.15) * np.clip((0.3 - tt) / 0.05, 0, 1)
        seg = np.zeros(int(0.5 * SR))
        seg[:m] = y
        truth[kind].append((i0 + first_audible(seg, 0, seg.size)) / SR)
        x[i0:i0 + m] += y
    return x.astype(np.float32), {k: np.asarray(v) for k, v in truth.items()}


def _dating_errors(x, truth, **settings):
    det = detect_onsets(x, SR, 128, block=128, **settings)
    assert det.size == sum(v.size for v in truth.values())
    return {k: np.array([det[np.argmin(np.abs(det - t))] - t for t in v]) * 1000.0 for k, v in truth.items()}


def test_attack_dating_dates_a_click_and_a_ramp_by_their_own_attacks():
    x, truth = _clicks_and_ramps()
    dated = _dating_errors(x, truth)
    fixed = _dating_errors(x, truth, attack_dating=False)
    for kind in truth:
        # within 0.75 ms of the first audible sample, each note (hop: 2.7 ms)
        assert np.all(np.abs(dated[kind]) <= 0.75), (kind, dated[kind])
        # ... where the one stored latency is off by more than 1 ms
        assert abs(np.median(fixed[kind])) > 1.0, (kind, fixed[kind])
    # and the two attack shapes land closer together than one latency puts them
    gap = abs(np.median(dated["click"]) - np.median(dated["ramp"]))
    assert gap < abs(np.median(fixed["click"]) - np.median(fixed["ramp"]))


def test_without_attack_dating_flux_onsets_sit_on_the_hop_grid():
    x, truth = _clicks_and_ramps()
    hop_s = 128 / SR
    off = Listener(SR, 128, attack_dating=False)
    det = detect_onsets(x, SR, 128, block=128, listener=off)
    hops = (det + off.latency_s) / hop_s
    assert np.allclose(hops, np.round(hops), atol=1e-6)          # detection hop less one latency
    on = Listener(SR, 128)
    hops_on = (detect_onsets(x, SR, 128, block=128, listener=on) + on.latency_s) / hop_s
    assert np.mean(np.abs(hops_on - np.round(hops_on)) > 0.01) > 0.5   # dated between hops


def test_attack_dating_constants_are_stored_and_checked():
    import json as _json
    from rolypoly.ears import calibration, kernel as K
    stored = _json.loads(calibration.LATENCY_FILE.read_text())["attack_dating_ms"]
    lis = Listener(SR, 128)
    assert lis._tables.tp[K.K_ATTACK_OFFSET] == pytest.approx(stored["offset"] / 1000.0 * SR / 128)
    assert lis._tables.tp[K.K_ATTACK_SLOW] == pytest.approx(stored["slow"] / 1000.0 * SR / 128)
    assert Listener(SR, 128, latency_ms=0.0)._tables.tp[K.K_ATTACK] == 0.0   # raw times: no dating
    with pytest.raises(ConfigError, match="attack_rise_db"):
        Listener(SR, 128, attack_rise_db=-3.0)
    with pytest.raises(ConfigError, match="attack_dating"):
        Listener(SR, 128, attack_dating="yes")
