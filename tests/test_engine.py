"""The rolypoly object and its schedule: sample-accurate hits, fallback, loop, listening, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO, meter, note, tempo, write_midi

from rolypoly.config import load_config
from rolypoly.live.engine import Rolypoly
from rolypoly.live.schedule import Schedule
from rolypoly.score.midi import read_score

PPQ = 480


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small random model exported under the real contract."""
    import torch

    from rolypoly.model.export import export_torchscript
    from rolypoly.model.transformer import ModelConfig, RolypolyModel, save_checkpoint
    torch.manual_seed(0)
    model = RolypolyModel(ModelConfig(n_enc_layers=1, n_dec_layers=1, n_heads=2, d_model=16, d_ff=32)).eval()
    d = tmp_path_factory.mktemp("model")
    meta = {"version": "tiny", "offset_mu": -0.002, "offset_sigma": 0.009}
    save_checkpoint(model, meta, d / "tiny.ckpt")
    return export_torchscript(model, meta, d / "tiny.pt")


def make_engine(tmp_path, model=None, offline=True, extra=()):
    over = [f"takes_dir={tmp_path / 'takes'}", f"models_dir={tmp_path / 'models'}"]
    over += [f"engine.model_path={model}"] if model else ["engine.enable=false"]
    eng = Rolypoly(load_config(over + list(extra)), offline=offline)
    return eng


def sparse_score(tmp_path, name="s.mid", bpm=120, extra_events=()):
    ev = [tempo(0, bpm), meter(0, 4, 4)]
    for i, p in enumerate([36, 38, 42, 36, 38]):
        ev += note(i * 2 * PPQ, p, vel=60 + 10 * i)   # one hit every half bar
    ev += note(10 * PPQ, 36, vel=100) + note(10 * PPQ, 42, vel=70)  # two drums on the last row
    return write_midi(tmp_path / name, [ev + list(extra_events)])


def run_offline(eng, audio=None):
    from rolypoly.live.drivers import perform_offline
    return perform_offline(eng, audio)


def test_every_hit_starts_exactly_where_scheduled(tmp_path, tiny_model):
    eng = make_engine(tmp_path, tiny_model)
    triggered = []
    assert eng.message("read", str(sparse_score(tmp_path)))
    res = run_offline(eng)
    assert res.late_rows == 0
    rows = eng.schedule if eng.schedule is not None else None
    take_rows = np.load(res.take_dir / "rows.npz")
    score = read_score(tmp_path / "s.mid")
    expected = []
    for k in range(score.n_rows):
        for d in np.nonzero(take_rows["real_vel"][k])[0]:
            t = score.times_ms[k] / 1000 * eng.sr + take_rows["real_off"][k, d] * score.bar_ms[k] / 1000 * eng.sr
            expected.append((max(0, int(round(t))), int(d)))
    got = sorted((h["sample"], h["drum"]) for h in res.hits)
    assert got == sorted(expected)
    # every drum of every row plays, first and last rows included
    assert len(got) == int((score.vel > 0).sum())
    # the audio of an isolated hit starts at its sample
    mono = np.abs(res.drums).sum(1)
    for sample, drum in got[1:4]:
        assert mono[sample] > 0 and np.all(mono[sample - 200:sample] == 0)


def test_offline_is_deterministic(tmp_path, tiny_model):
    outs = []
    for i in range(2):
        eng = make_engine(tmp_path / str(i), tiny_model)
        eng.message("read", str(REPO / "data" / "demo.mid"))
        noise = np.random.default_rng(1).normal(0, 0.01, 48000 * 5).astype(np.float32)
        outs.append(run_offline(eng, noise).drums.tobytes())
    assert outs[0] == outs[1]


def test_an_armed_take_plays_what_a_fresh_start_plays(tmp_path, tiny_model):
    # arm() makes the next take ahead of time (the box's MIDI start only hands it over)
    outs, preds = [], []
    noise = np.random.default_rng(1).normal(0, 0.01, 48000 * 5).astype(np.float32)
    for armed in (False, True):
        eng = make_engine(tmp_path / str(armed), tiny_model)
        eng.message("read", str(REPO / "data" / "demo.mid"))
        if armed:
            assert eng.arm()
            assert len(list((tmp_path / "True" / "takes").glob(".partial-*"))) == 1
        res = run_offline(eng, noise)
        outs.append(res.drums.tobytes())
        preds.append(np.load(res.take_dir / "rows.npz")["pred"])
    assert outs[0] == outs[1]
    assert np.array_equal(preds[0], preds[1])
    takes = tmp_path / "True" / "takes"
    # an armed take made stale (an attribute changed) is made again at start; one never
    # started leaves no hidden folder behind
    assert eng.arm()
    eng.set("lookahead", 120)
    eng.start()
    assert eng.schedule is not None and eng.take_settings["lookahead_ms"] == 120
    eng.stop()
    assert eng.arm()
    eng.disarm()
    assert not list(takes.glob(".partial-*"))
    assert len(list(takes.iterdir())) == 2      # the performance and the short take after it


def test_tempo_change_is_followed(tmp_path):
    ev = [tempo(0, 120), tempo(4 * PPQ, 60)] + note(0, 36) + note(4 * PPQ, 36) + note(6 * PPQ, 38)
    eng = make_engine(tmp_path)
    eng.message("read", str(write_midi(tmp_path / "t.mid", [ev])))
    res = run_offline(eng)
    assert sorted(h["sample"] for h in res.hits) == [0, 2 * 48000, 4 * 48000]


def test_slow_model_never_stalls_the_playhead(tmp_path):
    """Rows the model has not predicted in time play as written and are counted."""
    eng = make_engine(tmp_path, offline=True)
    eng.message("read", str(sparse_score(tmp_path)))

    class NeverReady:
        version = "never"

    eng.runtime = NeverReady()
    eng.enable = True
    eng._tick = lambda horizon: 0  # the worker never delivers
    res = run_offline(eng)
    score = read_score(tmp_path / "s.mid")
    assert res.late_rows == score.n_rows
    assert len(res.hits) == int((score.vel > 0).sum())
    assert all(h["offset_ms"] == 0.0 for h in res.hits)


def test_loop_repeats_seamlessly(tmp_path):
    eng = make_engine(tmp_path, extra=["engine.loop=true"])
    eng.message("read", str(sparse_score(tmp_path)))
    score = read_score(tmp_path / "s.mid")
    L = int(round(score.length_ms * 48))
    from rolypoly.live.drivers import perform_offline
    silence = np.zeros(int(2.5 * L), np.float32)
    res = perform_offline(eng, silence, tail_s=0)
    samples = sorted(h["sample"] for h in res.hits)
    first = [s for s in samples if s < L]
    second = [s - L for s in samples if L <= s < 2 * L]
    assert first == second and len(first) == int((score.vel > 0).sum())


def test_onset_matching_rule():
    class S:  # a minimal score: rows at 0, 500, 1000, 2000 ms, 4/4 at 120 bpm
        n_rows = 4
        times_ms = np.array([0.0, 500.0, 1000.0, 2000.0])
        bar_ms = np.full(4, 2000.0)
        length_ms = 4000.0
        vel = np.zeros((4, 9), np.int16)
        bpm = np.full(4, 120.0)
        tsig = np.ones(4)
        phase = np.array([0, 0.25, 0.5, 0.0])
    sched = Schedule(S(), 1000)  # 1 sample = 1 ms
    assert sched.match_onset(510.0) == 1 and sched.tau_g[1] == pytest.approx(10 / 2000)
    assert sched.match_onset(505.0) == -1  # one onset per row
    assert sched.match_onset(1160.0) == 2  # late side: gap to the next row 1000 ms, a third is 333
    assert sched.tau_g[2] == pytest.approx(160 / 2000)
    assert sched.match_onset(1400.0) == -1  # nearest is row 2, but 400 > 333
    early = Schedule(S(), 1000)
    assert early.match_onset(840.0) == 2  # early side: gap back to row 1 is 500 ms, a third is 166.7
    assert early.tau_g[2] == pytest.approx(-160 / 2000)
    too_early = Schedule(S(), 1000)
    assert too_early.match_onset(830.0) == -1  # 170 > 166.7
    assert too_early.match_onset(-5.0) == -1


def test_stop_and_new_read_leave_no_stale_state(tmp_path, tiny_model):
    eng = make_engine(tmp_path, tiny_model)
    eng.message("read", str(REPO / "data" / "demo.mid"))
    from rolypoly.live.drivers import perform_offline
    first = perform_offline(eng, np.zeros(48000, np.float32))
    eng.message("read", str(sparse_score(tmp_path)))
    second = perform_offline(eng)
    assert len(second.hits) == int((read_score(tmp_path / "s.mid").vel > 0).sum())
    assert second.take_dir != first.take_dir and second.rows == 6


def test_bad_messages_go_to_the_error_outlet(tmp_path):
    eng = make_engine(tmp_path)
    errors = []
    eng.connect("error", errors.append)
    assert not eng.message("read", str(tmp_path / "missing.mid"))
    assert not eng.message("start")  # no score
    assert not eng.message("frobnicate")
    assert not eng.message("set", "lookahead", "-5")
    assert not eng.message("set", "filter_hits", "sometimes")
    assert not eng.message("set", "nope", 1)
    assert not eng.message("load", str(tmp_path / "missing.pt"))
    assert not eng.message("train", "a", "b", "c")
    assert len(errors) == 8 and "missing.mid" in errors[0] and "lookahead" in errors[3]
    assert eng.message("set", "generate_vels", 0.2, 0.9) and eng.generate_vels == (0.2, 0.9)


def test_filter_modes(tmp_path, tiny_model):
    vels = {}
    for mode in ("score_notes", "score_notes_and_vels"):
        eng = make_engine(tmp_path / mode, tiny_model)
        eng.message("read", str(sparse_score(tmp_path)))
        eng.message("set", "filter_hits", mode)
        vels[mode] = sorted((h["sample"], h["drum"], h["velocity"]) for h in run_offline(eng).hits)
    score = read_score(tmp_path / "s.mid")
    assert sorted(v for _, _, v in vels["score_notes_and_vels"]) == sorted(score.vel[score.vel > 0].tolist())
    assert [d for _, d, _ in vels["score_notes"]] == [d for _, d, _ in vels["score_notes_and_vels"]]


def test_onset_storm_and_silence_do_not_break_a_take(tmp_path):
    from rolypoly.live.drivers import perform_offline
    from rolypoly.live.takes import load_take
    score_path = sparse_score(tmp_path)
    rng = np.random.default_rng(0)
    for name, audio in (("noise", rng.uniform(-1, 1, 48000 * 7).astype(np.float32)),
                        ("silence", np.zeros(48000 * 7, np.float32)),
                        ("broken", np.full(48000 * 7, np.nan, np.float32))):
        eng = make_engine(tmp_path / name)
        eng.message("read", str(score_path))
        res = perform_offline(eng, audio)
        take = load_take(res.take_dir)
        assert take.settings["rows_played"] == 6
        assert take.n_onsets <= 6  # one onset per row at most, whatever the input
        assert np.all(np.isfinite(res.drums))


def test_model_that_fails_to_load_plays_the_score(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 definitely not a model")
    eng = make_engine(tmp_path, model=bad)
    errors = []
    eng.connect("error", errors.append)
    eng.message("read", str(sparse_score(tmp_path)))
    res = run_offline(eng)
    assert any("bad.pt" in e for e in errors)
    assert len(res.hits) == 7 and res.take_dir is not None


def test_introspect_message_rewrites_the_loaded_score(tmp_path, gmd_cfg):
    from rolypoly.config import load_config
    cfg = load_config([f"data.root={gmd_cfg.data.root}", f"cache_dir={gmd_cfg.cache_dir}",
                       f"takes_dir={tmp_path}", "engine.enable=false", "introspect.seed=3",
                       f"introspect.db={tmp_path / 'patterns.sqlite'}", "introspect.max_takes=8"])
    eng = Rolypoly(cfg, offline=True)
    errors = []
    eng.connect("error", errors.append)
    assert eng.message("read", str(REPO / "data" / "demo.mid"))
    def kick_hits(score):
        on = score.vel[:, 0] > 0
        return list(zip(np.round(score.times_ms[on], 3), score.vel[on, 0]))

    kick_before = eng.score.vel[:, 0].copy()
    kick_hits_before = kick_hits(eng.score)
    snare_before = eng.score.vel[:, 1].copy()
    assert eng.message("introspect", "kick", "snare"), errors
    assert kick_hits(eng.score) == kick_hits_before   # the source drum keeps every hit, time and velocity
    assert (eng.score.vel[:, 1] > 0).any()
    assert len(snare_before) != eng.score.n_rows or not np.array_equal(snare_before, eng.score.vel[:, 1])
    assert not eng.message("introspect", "kick")  # no target
    assert not eng.message("introspect", "kick", "tuba")
    assert "tuba" in errors[-1]
    assert int((kick_before > 0).sum()) == int((eng.score.vel[:, 0] > 0).sum())


def test_model_history_only_carries_offsets_of_drums_that_play(tmp_path):
    """Decoder history matches training data: silent drums have zero offset, played or predicted."""
    class S:
        n_rows = 3
        times_ms = np.array([0.0, 250.0, 500.0])
        bar_ms = np.full(3, 2000.0)
        length_ms = 2000.0
        vel = np.zeros((3, 9), np.int16)
        bpm = np.full(3, 120.0)
        tsig = np.ones(3)
        phase = np.array([0, 0.125, 0.25])
    S.vel[:, 0] = 100
    sched = Schedule(S(), 1000)
    k, _ = sched.next_window()
    sched.set_prediction(k, np.full(19, 0.3, np.float32))   # predicts offsets for every drum
    sched.commit_until(1.0)                                    # row 0 is played
    k, _ = sched.next_window()
    sched.set_prediction(k, np.full(19, 0.2, np.float32))    # row 1 predicted, not yet played
    k, x = sched.next_window()
    assert k == 2
    assert x[0, 9] == pytest.approx(0.3) and np.all(x[0, 10:18] == 0)
    assert x[1, 9] == pytest.approx(0.2) and np.all(x[1, 10:18] == 0)
    assert np.all(x[2, 9:18] == 0)


def test_soundcheck_message_sets_listener_settings_saved_with_the_take(tmp_path):
    from rolypoly.live.drivers import perform_offline
    from rolypoly.live.takes import load_take
    from rolypoly.sim.duet import virtual_take
    from rolypoly.sim.corpus import groove_score
    score = groove_score(2, 120.0)
    audio, _, _ = virtual_take(score, "on_grid", seed=4, level_db=-30.0)
    eng = make_engine(tmp_path)
    statuses, errors = [], []
    eng.connect("status", statuses.append)
    eng.connect("error", errors.append)
    assert eng.message("soundcheck", 2.0, "bass")
    out = np.zeros((128, 2), np.float32)
    for b0 in range(0, 2 * 48000 + 128, 128):  # the musician plays before the take starts
        block = np.zeros(128, np.float32)
        seg = audio[b0:b0 + 128]
        block[:len(seg)] = seg
        eng.process(block, out)
    eng.pump()
    assert not errors and any(s.startswith("soundcheck: {") for s in statuses)
    eng.message("read", str(score.write_midi(tmp_path / "g.mid")))
    res = perform_offline(eng, audio)
    settings = load_take(res.take_dir).settings["listener"]
    assert settings == eng.listener.settings and settings  # what the sound check chose is in the take record
    from rolypoly.ears.listener import Listener
    assert settings != Listener.from_config(eng.cfg.listen, eng.sr).settings  # and it differs from the defaults


def _late_musician(follow: float, late_ms: float = 30.0, bars: int = 6):
    """A schedule whose rows play as written while a musician is ``late_ms`` behind every row."""
    from rolypoly.sim.corpus import groove_score
    sched = Schedule(groove_score(bars, 120.0), 48000)
    sched.follow = follow
    for k in range(sched.N):
        sched.commit_until(sched.row_time(k) + 1.0)
        assert sched.is_committed(k)
        sched.match_onset(sched.row_time(k) + late_ms * 48.0)
    return sched


def _row_offsets_ms(sched):
    played = sched.real_vel[:sched.N] > 0
    return np.array([sched.real_off[k][played[k]].mean() for k in range(sched.N)]) * 2000.0  # bar = 2 s


def test_the_drums_lean_towards_a_late_musician_from_the_next_row():
    off = _row_offsets_ms(_late_musician(0.25))
    assert off[0] == 0.0                 # fixed before the musician's first onset could be heard
    assert off[1] > 5.0                  # the next row already moves
    assert np.all(np.abs(off[-8:] - 30.0) < 2.0)   # and settles where the musician plays
    assert np.all(_row_offsets_ms(_late_musician(0.0)) == 0.0)   # follow 0: as written


def test_each_drum_leans_its_own_way_with_follow_drums():
    """A model that puts the kick 10 ms early of the row's other drums while the musician plays
    every row 20 ms late: the row lean meets the musician on average only, the kick stays
    early; with follow_drums each drum's own lean closes its gap too."""
    from rolypoly.score import features as feat
    from rolypoly.sim.corpus import groove_score

    def kick_gap_ms(follow_drums):
        sched = Schedule(groove_score(8, 120.0), 48000)
        sched.follow, sched.follow_drums = 0.25, follow_drums
        y = np.zeros(19, np.float32)
        y[feat.OUT_VEL] = 0.7
        y[9] = feat.scale_off(-0.010 / 2.0)       # the kick 10 ms early (bar = 2 s)
        gaps = []
        for k in range(sched.N):
            sched.next_window()
            sched.set_prediction(k, y)
            sched.commit_until(sched.row_time(k) + 1.0)
            onset = sched.row_time(k) + 20.0 * 48.0
            s = k % sched.capacity
            if sched.real_vel[s][0] > 0:
                gaps.append(20.0 - sched.real_off[s][0] * 2000.0)
            sched.match_onset(onset)
        return np.array(gaps)

    assert np.all(np.abs(kick_gap_ms(0.0)[-8:]) > 4.0)        # the kick stays early of the musician
    assert np.all(np.abs(kick_gap_ms(0.2)[-8:]) < 1.5)        # its own lean closes the gap


def test_follow_min_averages_the_musicians_jitter_out_once_the_lean_has_settled():
    """A musician 20 ms late on every row with 4 ms of jitter: a constant gain follows each note's
    jitter; a gain falling to follow_min meets the same 20 ms with less scatter, as fast at first
    (the change test, at the engine's 4 ms, now and then restarts the fall on jitter alone)."""
    from rolypoly.sim.corpus import groove_score

    def row_offsets(follow_min, reset_ms=4.0):
        rng = np.random.default_rng(3)
        sched = Schedule(groove_score(24, 120.0), 48000)
        sched.follow, sched.follow_min, sched.follow_reset_ms = 0.25, follow_min, reset_ms
        for k in range(sched.N):
            sched.commit_until(sched.row_time(k) + 1.0)
            sched.match_onset(sched.row_time(k) + (20.0 + 4.0 * rng.standard_normal()) * 48.0)
        return _row_offsets_ms(sched)

    constant, settling, never_reset = row_offsets(1.0), row_offsets(0.1), row_offsets(0.1, reset_ms=100.0)
    assert np.all(constant[:2] == settling[:2])                 # the first onset moves it as much
    late = slice(len(constant) // 2, None)
    for o in (constant, settling, never_reset):
        assert abs(o[late].mean() - 20.0) < 1.5
    assert settling[late].std() < 0.8 * constant[late].std()    # later onsets average the jitter out
    assert never_reset[late].std() < 0.65 * constant[late].std()


def test_a_change_of_feel_restarts_the_fall_of_the_follow_gain():
    """On the beat for 12 bars, then 30 ms late: a lean whose gain has settled to follow_min would
    take bars to get there; the change test restarts its fall and it gets there as fast as the
    constant gain does."""
    from rolypoly.sim.corpus import groove_score

    def after_change(follow_min, reset_ms):
        rng = np.random.default_rng(5)
        sched = Schedule(groove_score(16, 120.0), 48000)
        sched.follow, sched.follow_min, sched.follow_reset_ms = 0.25, follow_min, reset_ms
        change = int(np.searchsorted(sched.row_samples[:sched.N], 12 * 2.0 * 48000))
        for k in range(sched.N):
            sched.commit_until(sched.row_time(k) + 1.0)
            late = 30.0 if k >= change else 0.0
            sched.match_onset(sched.row_time(k) + (late + 2.0 * rng.standard_normal()) * 48.0)
        return _row_offsets_ms(sched)[change:change + 16]

    constant, restarted, settled = after_change(1.0, 6.0), after_change(0.05, 6.0), after_change(0.05, 100.0)
    assert constant[8:].mean() > 22.0 and restarted[8:].mean() > 22.0   # most of the way within 8 rows
    assert settled[8:].mean() < 15.0                                    # without the test: far behind


def test_the_follow_settings_reach_the_take(tmp_path):
    from rolypoly.sim.corpus import groove_score
    eng = make_engine(tmp_path, extra=["engine.follow_min=0.1", "engine.follow_reset_ms=4"])
    sched = Schedule(groove_score(2, 120.0), 48000)
    eng._apply_attributes(sched)        # what start does to every take's schedule
    assert (sched.follow, sched.follow_min, sched.follow_reset_ms) == (0.25, 0.1, 4.0)
    settings = eng._settings()          # what each take records of how it was played
    assert (settings["follow_min"], settings["follow_reset_ms"], settings["follow_drums"]) == (0.1, 4.0, 0.1)


def test_the_model_hears_the_musician_against_the_leaned_grid():
    from rolypoly.score import features as feat
    sched = _late_musician(0.25)
    j = sched.N - 2
    out = np.zeros(feat.N_IN, np.float32)
    sched.history_row(j, j + 1, out)
    s = j % sched.capacity
    assert abs(sched.tau_g[s] * 2000.0 - 30.0) < 1.0        # the onset itself is 30 ms late
    assert abs(out[feat.TAU_G]) < abs(feat.scale_off(sched.tau_g[s])) / 5   # little of it is news
    played = sched.real_vel[s] > 0
    assert np.all(np.abs(out[feat.OFF][played]) < abs(feat.scale_off(sched.real_off[s][played])).min() / 5)


def test_the_lean_is_bounded_under_a_storm_of_far_onsets():
    from rolypoly.live.schedule import MAX_LEAN
    from rolypoly.score import features as feat
    sched = _late_musician(1.0, late_ms=80.0)     # each onset just inside a third of the row gap
    assert abs(sched.lean) <= MAX_LEAN and np.all(np.abs(sched.pos_lean) <= MAX_LEAN)
    assert np.all(np.abs(sched.real_off[:sched.N]) <= feat.OFF_CLIP * feat.OFF_SCALE + 1e-12)


def test_model_off_is_the_quantised_machine_whatever_follow_says():
    from rolypoly.sim.corpus import groove_score
    sched = Schedule(groove_score(4, 120.0), 48000)
    sched.follow, sched.use_model = 1.0, False
    for k in range(sched.N):
        sched.commit_until(sched.row_time(k) + 1.0)
        sched.match_onset(sched.row_time(k) + 30.0 * 48.0)
    assert np.all(sched.real_off[:sched.N] == 0.0)


def test_rows_appended_to_a_growing_take_play_once_published_and_only_then():
    """Free mode's worker appends rows: the audio side sees a row only once it is written whole
    (the row count is published last), onsets match on it, and bad appends are refused."""
    from rolypoly.sim.corpus import groove_score
    full = groove_score(4, 120.0)
    first = full.bar < 2
    head = full.copy()
    for name in ("times_ms", "vel", "off", "bpm", "tsig", "phase", "bar", "tau_g"):
        setattr(head, name, getattr(full, name)[first])
    tail = full.copy()
    for name in ("times_ms", "vel", "off", "bpm", "tsig", "phase", "bar", "tau_g"):
        setattr(tail, name, getattr(full, name)[~first])
    sr = 48000
    sched = Schedule(head, sr, extra_rows=int((~first).sum()), length_ms=full.length_ms)
    sched.use_model = False
    assert sched.length_samples == pytest.approx(full.length_ms * sr / 1000.0)
    end = full.length_ms * sr / 1000.0
    assert sched.commit_until(end) == head.n_rows           # nothing past the published rows
    assert not sched.finished(end - 1)
    lo = sched.append_rows(tail)
    assert lo == head.n_rows and sched.N == full.n_rows
    assert sched.commit_until(end) == tail.n_rows             # the new rows now play
    assert np.array_equal(sched.real_vel[:sched.N], full.vel.astype(np.int16))
    k = sched.match_onset(full.times_ms[lo + 1] * sr / 1000.0 + 48)   # 1 ms late on an appended row
    assert k == lo + 1
    rec = sched.row_record(np.arange(sched.N))
    assert np.array_equal(rec["score_vel"], full.vel) and np.allclose(rec["phase"], full.phase)
    with pytest.raises(ValueError, match="do not fit"):
        sched.append_rows(tail)
    again = Schedule(head, sr, extra_rows=100)
    with pytest.raises(ValueError, match="after the last"):
        again.append_rows(head)
    with pytest.raises(ValueError, match="does not loop"):
        Schedule(head, sr, loop=True, extra_rows=4)
    assert head.followed_by(tail).n_rows == full.n_rows
