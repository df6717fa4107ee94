"""Free mode: events, the event model (incremental, exported), sampling, modes, statistics, CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rolypoly.errors import EngineError, ModelError, RolypolyError
from rolypoly.free import encode as enc
from rolypoly.free import stats as st

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo.mid"
EVENTS_PT = REPO / "models" / "events.pt"


# ----------------------------------------------------------------------------- events

def test_events_merge_rows_on_the_16th_grid_and_keep_the_louder_hit():
    vel = np.zeros((4, 9))
    vel[0, 0] = 100
    vel[1, 0] = 30          # 0.01 bar later: the same 16th as row 0, softer
    vel[2, 1] = 70
    vel[3, 2] = 120         # next bar's downbeat
    ev = enc.events_from_rows(vel, np.array([0.0, 0.01, 0.25, 0.0]), np.array([0, 0, 0, 1]))
    assert ev.abs_step.tolist() == [0, 4, 16]
    assert ev.mask.tolist() == [1, 2, 4]
    assert ev.vcls[0, 0] == 2 and ev.vcls[1, 1] == 1 and ev.vcls[2, 2] == 2
    assert (ev.vcls[0, 1:] == -1).all()


def test_style_counts_hits_per_bar_and_odd_16ths():
    vel = np.zeros((3, 9))
    vel[0, [0, 2]] = 90
    vel[1, 2] = 90
    vel[2, 1] = 90
    ev = enc.events_from_rows(vel, np.array([0, 3, 8]) / 16, np.zeros(3))
    density, complexity = enc.style_of(ev, 0, 16)
    assert density == pytest.approx(4 / enc.DENSITY_SCALE)
    assert complexity == pytest.approx(1 / 4)       # one hit (step 3) of four is on an odd 16th


def test_encoded_inputs_hold_position_gap_drums_and_classes():
    vel = np.zeros((2, 9))
    vel[0, 0] = 40
    vel[1, [1, 2]] = [100, 70]
    ev = enc.events_from_rows(vel, np.array([0.125, 0.5]), np.array([0, 0]))
    x = enc.encode_events(ev, np.array([[0.5, 0.25], [0.5, 0.25]]))
    assert np.flatnonzero(x[0, enc.POS0:enc.POS1]).tolist() == [2]
    assert np.flatnonzero(x[1, enc.POS0:enc.POS1]).tolist() == [8]
    assert x[0, enc.DELTA0] == 1.0                 # first event: the "start" gap
    assert x[1, enc.DELTA0 + 6] == 1.0             # 6 steps after the first
    assert x[1, enc.MASK0:enc.MASK1].tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0]
    assert x[1, enc.VCLS0 + 1 * 3 + 2] == 1 and x[1, enc.VCLS0 + 2 * 3 + 1] == 1
    assert x[1, enc.STYLE0:enc.STYLE1].tolist() == [0.5, 0.25]
    g, q, _, _ = enc.targets(ev)
    assert g.tolist() == [5] and np.flatnonzero(q[0]).tolist() == [8, enc.STEPS + 5]


# ----------------------------------------------------------------------------- the network

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small untrained event model, exported to TorchScript."""
    import torch

    from rolypoly.free.network import EventConfig, EventNet, export_events
    torch.manual_seed(0)
    net = EventNet(EventConfig(d_model=16, hidden=16, n_layers=1, dropout=0.5))
    path = tmp_path_factory.mktemp("events") / "tiny.pt"
    export_events(net, {"version": "tiny-test"}, path)
    return net, path


def test_incremental_steps_match_the_whole_sequence(tiny):
    import torch
    net, _ = tiny
    net.eval()
    x = torch.rand(1, 12, enc.N_FEAT)
    with torch.no_grad():
        whole, _, _ = net(x, net.initial_state(1))
        h = net.initial_state(1)
        steps = []
        for t in range(12):
            g, _, h = net(x[:, t:t + 1], h)
            steps.append(g)
    assert torch.allclose(whole, torch.cat(steps, dim=1), atol=1e-5)


def test_exported_model_loads_and_has_no_dropout_noise(tiny):
    from rolypoly.free.runtime import load_events
    rt = load_events(tiny[1])
    x = np.random.default_rng(0).random((5, enc.N_FEAT)).astype(np.float32)
    a = rt.run(x, rt.initial_state())[0]
    b = rt.run(x, rt.initial_state())[0]
    assert rt.version == "tiny-test" and np.array_equal(a, b)


def test_loading_something_else_is_a_clear_error(tmp_path):
    from rolypoly.free.runtime import load_events
    with pytest.raises(ModelError, match="not found"):
        load_events(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a TorchScript"):
        load_events(bad)
    with pytest.raises(ModelError, match="not an event model"):
        load_events(REPO / "models" / "swing.pt")


# ----------------------------------------------------------------------------- sampling

@pytest.fixture(scope="module")
def tiny_joint(tmp_path_factory):
    """A small untrained event model with the joint drum head, exported to TorchScript."""
    import torch

    from rolypoly.free.network import EventConfig, export_events, make_net
    torch.manual_seed(0)
    net = make_net(EventConfig(d_model=16, hidden=16, n_layers=1, dropout=0.5, drum_head="joint"))
    path = tmp_path_factory.mktemp("events") / "tiny_joint.pt"
    export_events(net, {"version": "tiny-joint"}, path)
    return net, path


def test_joint_model_exports_both_heads_and_matches_the_eager_net(tiny_joint):
    import torch

    from rolypoly.free.runtime import load_events
    net, path = tiny_joint
    net.eval()
    rt = load_events(path)
    assert rt.joint and rt.n_drum_out == enc.N_MASKS
    x = np.random.default_rng(1).random((3, enc.N_FEAT)).astype(np.float32)
    _, out, _ = rt.run(x, rt.initial_state())
    q = enc.next_query(0, 4)
    bits = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0], np.float32)
    with torch.no_grad():
        _, eager_out, _ = net(torch.from_numpy(x)[None], net.initial_state(1))
        want_drums = net.drum_head(eager_out[:, -1:], torch.from_numpy(q)[None, None])[0, 0].numpy()
        want_vels = net.vel_head(eager_out[:, -1:], torch.from_numpy(q)[None, None],
                                 torch.from_numpy(bits)[None, None])[0, 0].numpy().reshape(9, 3)
    assert np.allclose(rt.drums(out, q), want_drums, atol=1e-5)
    assert np.allclose(rt.vels(out, q, bits), want_vels, atol=1e-5)


def test_joint_training_steps_lower_the_loss_on_a_batch():
    import torch

    from rolypoly.free.network import EventConfig, make_net
    from rolypoly.free.train import batch, event_data, losses
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    steps = np.sort(rng.choice(400, 120, replace=False))
    vel = np.zeros((120, 9))
    vel[:, 2] = 80
    vel[steps % 4 == 0, 0] = 110                      # kick with the hi-hat on beats: drums that go together
    ev = enc.events_from_rows(vel, (steps % 16) / 16, steps // 16)
    data = event_data([ev], window=32)
    b = [torch.from_numpy(a) for a in batch(data, data.starts[:8], 32)]
    net = make_net(EventConfig(d_model=16, hidden=16, n_layers=1, dropout=0.0, drum_head="joint"))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss, parts = losses(net, b[0], net.initial_state(8), b[1], b[2], b[3], b[4], 0.5)
        first = loss.item() if first is None else first
        opt.zero_grad(); loss.backward(); opt.step()
    assert torch.isfinite(loss) and loss.item() < 0.7 * first and float(parts[1]) > 0


class _FakeJoint:
    """A joint runtime whose next event is kick alone or hi-hat alone, never both (half each)."""
    joint = True
    n_layers, hidden = 1, 1

    def initial_state(self):
        return None

    def knob_to_style(self, d, c):
        return np.array([d, c])

    def run(self, x, h):
        return np.where(np.arange(enc.MAX_DELTA) == 3, 0.0, -50.0), None, None   # always 4 steps on

    def drums(self, out, q):
        y = np.full(enc.N_MASKS, -50.0)
        y[[1, 4]] = 0.0
        return y

    def vels(self, out, q, bits):
        return np.tile([0.0, 0.0, 1.0], (9, 1))   # loud a little likelier


def test_joint_sampling_keeps_drums_that_go_together_and_never_plays_nothing():
    from rolypoly.free.runtime import EventSampler
    s = EventSampler(_FakeJoint(), temperature=1.0, generate_vels=(0.0, 1.0), seed=0)
    s.feed(0, 1, [1] + [-1] * 8)
    ev = s.generate_until(4 * 400)
    assert len(ev) == 399 and (np.diff(ev.abs_step) == 4).all()
    assert set(ev.mask.tolist()) == {1, 4}              # independent draws at 0.5 each would give 5 and nothing
    assert 0.4 < float(np.mean(ev.mask == 1)) < 0.6
    # the window acts on each drum's marginal (0.5 here): a floor above it rules out both, and the
    # likeliest single drum plays; a top at it forces both together (the floor keeps out the rest)
    s = EventSampler(_FakeJoint(), generate_vels=(0.6, 1.0), seed=0)
    s.feed(0, 1, [1] + [-1] * 8)
    assert len(set(s.generate_until(400).mask.tolist())) == 1
    s = EventSampler(_FakeJoint(), generate_vels=(0.01, 0.5), seed=0)
    s.feed(0, 1, [1] + [-1] * 8)
    assert set(s.generate_until(400).mask.tolist()) == {5}


class _FakeLeaning(_FakeJoint):
    """Kick alone a little likelier than hi-hat alone."""

    def drums(self, out, q):
        y = np.full(enc.N_MASKS, -50.0)
        y[1], y[4] = 0.0, -0.5
        return y


def _fed(sampler, bars: int, vary: bool):
    """Feed ``bars`` bars of 8th-note hi-hats (a kick on the downbeat; with ``vary``, a snare that moves)."""
    for b in range(bars):
        for k in range(8):
            mask = 4 | (1 if k == 0 else 0) | (2 if vary and k == 1 + b % 7 else 0)
            sampler.feed(b * 16 + 2 * k, mask, [2 if mask >> d & 1 else -1 for d in range(9)])
    return sampler


def test_repeated_bars_are_measured_and_cool_the_draws():
    from rolypoly.free.runtime import EventSampler
    loop = _fed(EventSampler(_FakeLeaning(), loop_temperature=0.05, seed=0), 4, vary=False)
    assert loop.repetition(64) == 1.0
    varied = _fed(EventSampler(_FakeLeaning(), loop_temperature=0.05, seed=0), 4, vary=True)
    assert varied.repetition(64) == 0.0
    off = _fed(EventSampler(_FakeLeaning(), seed=0), 4, vary=False)     # no loop temperature: no cooling
    masks = {}
    for name, s in (("loop", loop), ("varied", varied), ("off", off)):
        s.freeze_style(64)
        masks[name] = s.generate_until(64 + 4 * 300).mask
    assert set(masks["loop"].tolist()) == {1}                  # a looped groove: the likeliest draw every time
    for name in ("varied", "off"):                             # otherwise the model's own odds (about 62:38)
        assert 0.5 < float(np.mean(masks[name] == 1)) < 0.75, name


def test_joint_generate_vels_window_and_per_head_temperatures(tiny_joint):
    from rolypoly.free.runtime import EventSampler, load_events
    rt = load_events(tiny_joint[1])
    one = _sampler(tiny_joint[1], seed=1, generate_vels=(1.0, 1.0)).generate_until(48)
    assert len(one) and all(int(m).bit_count() == 1 for m in one.mask)
    every = _sampler(tiny_joint[1], seed=1, generate_vels=(0.0, 0.0)).generate_until(48)
    assert len(every) and (every.mask == (1 << 9) - 1).all()
    s = EventSampler(rt, temperature=0.8, drum_temperature=1.3, vel_temperature=0.5)
    assert (s.temperature, s.drum_temperature, s.vel_temperature) == (0.8, 1.3, 0.5)
    assert EventSampler(rt, temperature=0.8).vel_temperature == 0.8
    with pytest.raises(ModelError, match="loop_temperature"):
        EventSampler(rt, loop_temperature=9.0)
    with pytest.raises(ModelError, match="drum_temperature"):
        EventSampler(rt, drum_temperature=0.0)
    # the velocity temperature reaches the class draws: cold, always the likeliest class; hot, all three
    for t, want in ((0.05, {2}), (5.0, {0, 1, 2})):
        s = EventSampler(_FakeJoint(), vel_temperature=t, seed=3)
        s.feed(0, 1, [1] + [-1] * 8)
        got = s.generate_until(4 * 200).vcls
        assert set(got[got >= 0].tolist()) == want



def _sampler(path, **kw):
    from rolypoly.free.runtime import EventSampler, load_events
    s = EventSampler(load_events(path), **kw)
    s.feed(0, 1, [1] + [-1] * 8)
    return s


def test_sampling_is_reproducible_with_a_seed_and_varies_without(tiny):
    draws = [_sampler(tiny[1], seed=7).generate_until(64) for _ in range(2)]
    assert np.array_equal(draws[0].abs_step, draws[1].abs_step) and np.array_equal(draws[0].mask, draws[1].mask)
    other = _sampler(tiny[1], seed=8).generate_until(64)
    assert not (len(other) == len(draws[0]) and np.array_equal(other.mask, draws[0].mask)
                and np.array_equal(other.abs_step, draws[0].abs_step))


def test_generate_vels_window_gates_drum_probabilities(tiny):
    # lo = 1: no drum reaches the window, so each event plays only its most probable drum
    one = _sampler(tiny[1], seed=1, generate_vels=(1.0, 1.0)).generate_until(48)
    assert len(one) and all(int(m).bit_count() == 1 for m in one.mask)
    # hi = 0: every drum is at or above the window's top, so every drum plays
    every = _sampler(tiny[1], seed=1, generate_vels=(0.0, 0.0)).generate_until(48)
    assert len(every) and (every.mask == (1 << 9) - 1).all()


def test_sampling_respects_where_an_event_may_land(tiny):
    s = _sampler(tiny[1], seed=3)
    step, mask, vcls = s.sample(min_step=20, max_step=22)
    assert 20 <= step <= 22 and mask > 0 and ((vcls >= 0) == ((mask >> np.arange(9)) & 1).astype(bool)).all()
    assert s.sample(min_step=100) is None      # beyond the largest gap from the last event


def test_bad_sampling_settings_are_rejected(tiny):
    from rolypoly.free.runtime import EventSampler, load_events
    rt = load_events(tiny[1])
    with pytest.raises(ModelError, match="temperature"):
        EventSampler(rt, temperature=0.0)
    with pytest.raises(ModelError, match="generate_vels"):
        EventSampler(rt, generate_vels=(0.8, 0.2))
    with pytest.raises(ModelError, match="density"):
        EventSampler(rt, density=1.5)
    s = EventSampler(rt)
    with pytest.raises(ModelError, match="at least one event"):
        s.sample()
    s.feed(4, 1, [1] + [-1] * 8)
    with pytest.raises(ModelError, match="forward"):
        s.feed(4, 1, [1] + [-1] * 8)


# ----------------------------------------------------------------------------- modes

def _score_with_empty_bar():
    """Four bars of 8ths on the hi-hat with kick and snare; bar 2 left empty."""
    from rolypoly.free.generate import empty_score
    from rolypoly.score.drums import N_DRUMS
    from rolypoly.score.midi import Score
    base = empty_score(100.0)
    bars, phases = [], []
    for b in (0, 1, 3):
        for s in range(8):
            bars.append(b); phases.append(s / 8)
    bars, phases = np.array(bars), np.array(phases)
    n = len(bars)
    vel = np.zeros((n, N_DRUMS), np.int16)
    vel[:, 2] = 80
    vel[np.isin(phases, (0.0, 0.25)), 0] = 100
    vel[phases == 0.5, 1] = 100
    bar_ms = 2400.0
    return Score((bars + phases) * bar_ms, vel, np.zeros((n, N_DRUMS)), np.full(n, 100.0), np.ones(n), phases,
                 bars, np.zeros(n), base.tempo)


def test_continue_keeps_the_score_and_plays_on_after_it_at_its_tempo(tiny):
    from rolypoly.free.generate import generate
    from rolypoly.free.runtime import load_events
    sc = _score_with_empty_bar()
    out = generate(load_events(tiny[1]), sc, "continue", bars=4, seed=0)
    kept = ~out.generated
    assert kept.sum() == sc.n_rows and np.allclose(out.score.times_ms[kept], sc.times_ms)
    gen_bars = out.score.bar[out.generated]
    assert out.generated.any() and gen_bars.min() >= 3 and gen_bars.max() < 8
    after = out.score.bar >= 4
    assert after.any() and after[out.generated].sum() == after.sum()
    # tempo carries on: a generated row sits at (bar + phase) bars of 2400 ms
    t = out.score.times_ms[out.generated]
    assert np.allclose(t, (gen_bars + out.score.phase[out.generated]) * 2400.0)
    assert (np.diff(out.score.times_ms) > 0).all()


def test_fill_improvises_only_in_the_empty_bar_and_every_nth_bar(tiny):
    from rolypoly.free.generate import generate
    from rolypoly.free.runtime import load_events
    rt = load_events(tiny[1])
    sc = _score_with_empty_bar()
    out = generate(rt, sc, "fill", seed=0)
    assert set(out.score.bar[out.generated].tolist()) == {2}
    assert out.n_score_rows == sc.n_rows
    fills = generate(rt, sc, "fill", fill_every=2, seed=0)
    assert set(fills.score.bar[fills.generated].tolist()) <= {1, 2, 3} and 2 in fills.score.bar[fills.generated]
    # a fill bar replaces the score's rows there
    gen_bars = set(fills.score.bar[fills.generated].tolist())
    assert not np.isin(fills.score.bar[~fills.generated], sorted(gen_bars)).any()


def test_free_keeps_only_the_first_bar_and_can_start_from_nothing(tiny):
    from rolypoly.free.generate import generate
    from rolypoly.free.runtime import load_events
    rt = load_events(tiny[1])
    sc = _score_with_empty_bar()
    out = generate(rt, sc, "free", bars=2, seed=0)
    assert (out.score.bar[~out.generated] == 0).all() and out.n_score_rows == 8
    assert out.score.bar.max() <= 5
    alone = generate(rt, None, "free", bars=3, seed=0)
    assert alone.score.n_rows > 1 and alone.score.bar.max() <= 3 and alone.score.vel[0, 0] > 0


def test_joint_model_continues_fills_and_improvises(tiny_joint):
    from rolypoly.free.generate import generate
    from rolypoly.free.runtime import load_events
    rt = load_events(tiny_joint[1])
    sc = _score_with_empty_bar()
    cont = generate(rt, sc, "continue", bars=3, seed=0, loop_temperature=0.5)
    assert cont.generated.any() and cont.score.bar[cont.generated].max() < 7 and (cont.score.bar >= 4).any()
    fill = generate(rt, sc, "fill", seed=0)
    assert set(fill.score.bar[fill.generated].tolist()) == {2}
    alone = generate(rt, None, "free", bars=2, seed=0)
    assert alone.score.n_rows > 1 and (alone.events.mask > 0).all()


def test_bad_modes_and_bars_are_rejected(tiny):
    from rolypoly.free.generate import GenerateError, generate
    from rolypoly.free.runtime import load_events
    rt = load_events(tiny[1])
    with pytest.raises(GenerateError, match="mode"):
        generate(rt, _score_with_empty_bar(), "jam")
    with pytest.raises(GenerateError, match="bars"):
        generate(rt, _score_with_empty_bar(), "continue", bars=-1)
    with pytest.raises(GenerateError, match="needs a score"):
        generate(rt, None, "continue")


def test_performance_model_gives_generated_rows_velocities_and_offsets(tiny):
    from rolypoly.free.generate import generate, perform
    from rolypoly.free.runtime import load_events
    from rolypoly.model.export import load_runtime
    out = generate(load_events(tiny[1]), _score_with_empty_bar(), "continue", bars=2, seed=0)
    played = perform(out.score, load_runtime(REPO / "models" / "swing.pt"))
    hit = out.score.vel > 0
    assert ((played.vel > 0) == hit).all()
    # the swing model pushes off-beat 8ths late: generated rows on an off-beat 8th get its offset
    gen_off8 = out.generated & np.isclose(out.score.phase % 0.25, 0.125)
    if gen_off8.any():
        assert np.allclose(played.off[gen_off8][hit[gen_off8]], 0.04)


# ----------------------------------------------------------------------------- live attributes

def test_free_mode_attributes_are_checked():
    from rolypoly.free.live import FreeMode, check_attribute
    assert check_attribute("generate", ["FILL", 4, 2]) == ("fill", 4, 2)
    with pytest.raises(EngineError, match="not one of"):
        check_attribute("generate", ["loop"])
    with pytest.raises(EngineError, match="whole number"):
        check_attribute("generate", ["continue", "2.5"])
    with pytest.raises(EngineError, match="outside"):
        check_attribute("density", ["1.2"])
    fm = FreeMode("nowhere.pt")
    sc = _score_with_empty_bar()
    assert fm.prepare(sc) is sc                        # off: the score itself, no model needed
    fm.set("generate", "continue", 2)
    with pytest.raises(RolypolyError, match="not found"):
        fm.prepare(sc)


def test_free_mode_prepares_a_longer_score_each_take(tiny):
    from rolypoly.free.live import FreeMode
    fm = FreeMode(str(tiny[1]), mode="continue", bars=2, seed=5)
    sc = _score_with_empty_bar()
    a = fm.prepare(sc)
    b = fm.prepare(a)                 # handed back its own output: it starts again from the score
    assert a.n_rows > sc.n_rows and b.n_rows > sc.n_rows and fm.last.first_bar == 4
    assert b.bar.max() < 6 and (b.bar[~fm.last.generated] <= 3).all()
    fm.set("generate", "off")
    assert fm.prepare(b) is sc        # off again: the score as read


# ----------------------------------------------------------------------------- statistics

def test_bar_statistics_on_hand_made_bars():
    vel = np.zeros((6, 9))
    vel[:, 2] = 64
    steps = np.array([0, 4, 16, 20, 32, 35])       # bars 0 and 1 alike, bar 2 differs
    seq = (steps, vel)
    s = st.bar_stats([seq], [(0, 3)], known={tuple([0, 0, (1 | 16)] + [0] * 6)})
    assert s["repetition"] == pytest.approx(0.5)
    assert s["hits_per_bar"][2] == pytest.approx(2.0) and s["offbeat_share"] == pytest.approx(1 / 6)
    assert s["ioi"][3] == pytest.approx(2 / 5) and s["ioi"][11] == pytest.approx(2 / 5)
    assert s["novelty"] == pytest.approx(1 / 3)
    c = st.compare(s, s)
    assert c["velocity_intersection"] == pytest.approx(1.0) and c["ioi_tv"] == 0.0


# ----------------------------------------------------------------------------- CLI and the trained model

def test_generate_cli_writes_midi_and_never_overwrites(tiny, tmp_path):
    from rolypoly.cli import main
    from rolypoly.score.midi import read_score
    out = tmp_path / "out.mid"
    args = ["generate", str(DEMO), "--bars", "2", "--mode", "continue", "-o", str(out),
            "--events-model", str(tiny[1]), "--seed", "0"]
    assert main(args) == 0
    src, got = read_score(DEMO), read_score(out)
    assert got.bar.max() > src.bar.max()
    before = out.read_bytes()
    assert main(args) == 2 and out.read_bytes() == before
    assert main(args + ["--force"]) == 0
    assert main(["generate", "--mode", "fill", "-o", str(tmp_path / "x.mid"), "--events-model", str(tiny[1])]) == 2
    # the per-head temperatures of the config reach the sampler (a bad one is refused)
    bad = ["generate", str(DEMO), "--bars", "2", "-o", str(tmp_path / "y.mid"), "--events-model", str(tiny[1]),
           "generate.loop_temperature=9"]
    assert main(bad) == 2 and not (tmp_path / "y.mid").exists()


@pytest.mark.skipif(not EVENTS_PT.is_file(), reason="models/events.pt not trained yet")
def test_trained_model_density_knob_steers_hits_per_bar():
    from rolypoly.free.generate import generate
    from rolypoly.free.runtime import load_events
    from rolypoly.score.midi import read_score
    rt = load_events(EVENTS_PT)
    sc = read_score(DEMO)

    def hits_per_bar(d):
        n = 0
        for seed in range(3):
            out = generate(rt, sc, "free", bars=0, density=d, seed=seed)
            n += int((out.score.vel[out.generated] > 0).sum())
        return n / (3 * (int(sc.bar[-1]) + 1 - 1))
    assert hits_per_bar(0.9) > 1.2 * hits_per_bar(0.1)


def test_engine_plays_on_after_the_score_in_continue_mode(tiny, tmp_path):
    from rolypoly.config import load_config
    from rolypoly.live.drivers import perform_offline
    from rolypoly.live.engine import Rolypoly
    from rolypoly.score.midi import read_score
    cfg = load_config([f"takes_dir={tmp_path / 'takes'}", f"models_dir={tmp_path / 'models'}", "engine.enable=false",
                       f"generate.events_model={tiny[1]}", "generate.seed=1"])
    eng = Rolypoly(cfg, offline=True)
    assert eng.message("read", str(DEMO))
    src = read_score(DEMO)
    assert not eng.message("set", "generate", "jam")            # a bad mode: error outlet, nothing changes
    assert eng.message("set", "generate", "continue", 2) and eng.message("set", "density", "0.7")
    res = perform_offline(eng)
    assert res.rows > src.n_rows
    last_hit_s = max(h["sample"] for h in res.hits) / eng.sr
    assert last_hit_s > src.times_ms[-1] / 1000.0                # it kept playing after the score's last row
    assert eng.message("set", "generate", "off")
    again = perform_offline(eng)
    assert again.rows == src.n_rows                              # off: the score as read, not the last generation


def test_generated_velocities_follow_the_scores_own_dynamics(tiny):
    from rolypoly.free.generate import generate
    from rolypoly.free.runtime import load_events
    out = generate(load_events(tiny[1]), _score_with_empty_bar(), "continue", bars=8, seed=2, generate_vels=(0.0, 0.0))
    vel, cls = out.drawn, out.events.vcls
    loud_kick, medium_hat = cls[:, 0] == 2, cls[:, 2] == 1
    assert loud_kick.any() or medium_hat.any()
    # the score's kicks are all 100 (loud) and its hi-hats all 80 (medium): so are the generated ones
    assert (vel[loud_kick, 0] == 100).all() and (vel[medium_hat, 2] == 80).all()
    # classes the score never plays come from GMD train's velocities of that class
    soft = cls >= 0
    soft &= cls == 0
    assert ((vel[soft] >= 1) & (vel[soft] < 64)).all()
    # the score holds, per drum and bar position, the mean of what was drawn there up to that bar
    written = out.score.vel[out.generated].astype(float)
    steps = out.events.abs_step
    for i in range(len(steps)):
        for d in np.flatnonzero(vel[i] > 0):
            same = (steps <= (steps[i] // 16) * 16 + 15) & (steps % 16 == steps[i] % 16) & (vel[:, d] > 0)
            assert written[i, d] == np.clip(np.rint(vel[same, d].mean()), 1, 127)
    assert (written > 0).sum() == (vel > 0).sum()


def _live_continue(tiny, tmp_path, seed=1):
    """An offline take in continue mode with the performance model on; every append_rows seen."""
    from rolypoly.config import load_config
    from rolypoly.live.drivers import perform_offline
    from rolypoly.live.engine import Rolypoly
    from rolypoly.live.schedule import Schedule
    cfg = load_config([f"takes_dir={tmp_path / 'takes'}", f"models_dir={tmp_path / 'models'}",
                       f"generate.events_model={tiny[1]}", f"generate.seed={seed}"])
    eng = Rolypoly(cfg, offline=True)
    assert eng.message("read", str(DEMO))
    assert eng.message("set", "generate", "continue", 3)
    appends, scheds = [], []
    real = Schedule.append_rows

    def spy(sched, part):
        appends.append((sched.sample, float(part.times_ms[0]) if part.n_rows else None, sched.N))
        scheds.append(sched)
        return real(sched, part)
    Schedule.append_rows = spy
    try:
        res = perform_offline(eng)
    finally:
        Schedule.append_rows = real
    return eng, res, appends, scheds[-1]


def test_continue_is_drawn_on_the_worker_a_bar_ahead_of_the_playhead(tiny, tmp_path):
    from rolypoly.live.takes import load_take
    from rolypoly.score.midi import read_score
    src = read_score(DEMO)
    eng, res, appends, sched = _live_continue(tiny, tmp_path)
    assert appends and appends[0][2] == src.n_rows          # the take started with the score's rows only
    bar_s = src.bar_ms[-1] * eng.sr / 1000.0
    for sample, first_ms, _ in appends:                       # each bar written while the playhead is a bar away
        if first_ms is not None:
            assert first_ms * eng.sr / 1000.0 - sample > 0.9 * bar_s
    assert sched.N > src.n_rows and res.rows == sched.N and res.late_rows == 0
    assert sched.score.n_rows == sched.N and int(sched.score.bar[-1]) <= int(src.bar[-1]) + 3
    take = load_take(res.take_dir)
    rows = take.rows
    new = rows["k"] >= src.n_rows
    assert new.any() and (rows["score_vel"][new] > 0).any(axis=1).all()     # generated rows hold hits
    assert (rows["real_vel"][new] > 0).any()                                # and they played
    # the model gave them its own velocities (not the score's) and micro-timing
    played = rows["real_vel"][new] > 0
    assert not np.array_equal(rows["real_vel"][new][played], rows["score_vel"][new][played])
    assert np.abs(rows["real_off"][new][played]).max() > 0


def test_live_generation_repeats_with_its_seed(tiny, tmp_path):
    _, _, _, a = _live_continue(tiny, tmp_path / "a", seed=4)
    _, _, _, b = _live_continue(tiny, tmp_path / "b", seed=4)
    _, _, _, c = _live_continue(tiny, tmp_path / "c", seed=5)
    assert np.array_equal(a.score_vel[:a.N], b.score_vel[:b.N])
    assert a.N != c.N or not np.array_equal(a.score_vel[:a.N], c.score_vel[:c.N])
