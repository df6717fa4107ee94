"""The drum machine in a box: sequencer model, keystrokes through textual's Pilot, sample-exact renders
through the engine, projects, presets, exports and the headless script runner."""
from __future__ import annotations

import asyncio
import json
from fractions import Fraction

import numpy as np
import pytest

from rolypoly.box.model import Box, BoxError
from rolypoly.synth.kit import Channel, Kit
from rolypoly.synth.patch import Patch

SR = 48000


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    from rolypoly.config import load_config, with_values
    return with_values(load_config([]), takes_dir=str(tmp_path_factory.mktemp("takes")))


def click_kit() -> Kit:
    """Eight very short voices: each hit is silent again long before the next step."""
    chans = [Channel(patch=Patch(oscFreq=200.0 + 100 * i, oscAtk=0.0, oscDcy=2.0, nEnvAtk=0.0, nEnvDcy=2.0,
                                 mix=90.0, distAmt=0.0, name=f"click{i + 1}"), name=f"click{i + 1}")
             for i in range(8)]
    return Kit(name="clicks", channels=chans)


def onsets(audio: np.ndarray, quiet: int = 200) -> list[int]:
    """First non-zero sample after at least ``quiet`` zero samples."""
    nz = np.abs(audio).max(axis=1) > 0
    idx = np.flatnonzero(nz)
    out = []
    last = -10 ** 9
    for i in idx:
        if i - last > quiet:
            out.append(int(i))
        last = i
    return out


def expected_starts(bpm: float, beats_per_step: Fraction, swing_percent: float, steps) -> list[int]:
    """Where each step must start, from the definition (not from the box's code)."""
    step = Fraction(60) / Fraction(bpm) * beats_per_step
    out = []
    for k in steps:
        t = k * step + (step * Fraction(swing_percent) / 100 / 2 if k % 2 else 0)
        x = t * SR
        out.append(int(x) + (1 if x - int(x) >= Fraction(1, 2) else 0))
    return out


class Answers:
    """A stand-in pattern table: each ask returns the next of a fixed list (records what was asked)."""

    steps = 16

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = []

    def ask(self, a, b, pattern, exclude=None, rng=None, greedy=False):
        from rolypoly.patterns.introspect import Answer
        self.asked.append((a, b, pattern, exclude))
        choices = [x for x in self.answers if x != exclude]
        return Answer(choices[len(self.asked) % len(choices)] if len(choices) > 1 else choices[0], "exact", 0.5)


def press(app, *groups, size=(132, 32)):
    """Press each group of keys in one headless session; a callable between groups checks the state."""
    async def go():
        async with app.run_test(headless=True, size=size) as pilot:
            for g in groups:
                if callable(g):
                    await pilot.pause()
                    g()
                    continue
                for k in g:
                    await pilot.press(k)
            await pilot.pause()
    asyncio.run(go())
    return app


# -- the model ------------------------------------------------------------------------------------
def test_toggle_accent_undo_redo():
    box = Box(click_kit())
    box.toggle(0, 0)
    box.toggle(0, 4, "accent")
    assert box.pattern.grid(0) == "x---x-----------" and box.pattern.grid(0, "accent") == "----x-----------"
    assert box.undo() == "toggle accent"
    assert box.pattern.grid(0) == "x---------------"
    box.redo()
    assert box.pattern.grid(0, "accent") == "----x-----------"
    box.toggle(0, 4)                                 # clearing the trigger clears its accent
    assert box.pattern.grid(0, "accent") == "-" * 16
    with pytest.raises(BoxError, match="step 17"):
        box.toggle(0, 16)


def test_chains_and_queued_switch():
    box = Box(click_kit())
    box.toggle_chain("a")
    box.toggle_chain("b")
    assert box.chain("a") == box.chain("b") == box.chain("c") == ["a", "b", "c"]
    assert box.chain("d") == ["d"]
    box.select("e", playing=True)
    assert box.queued == "e" and box.current == "e"
    with pytest.raises(BoxError, match="pattern l"):
        box.toggle_chain("l")


def test_step_times_exact_with_swing_and_rates():
    box = Box(click_kit())
    for bpm, rate, swing in ((120.0, "1/16", 0.0), (97.0, "1/16", 50.0), (133.0, "1/8T", 66.0), (87.5, "1/32", 25.0)):
        box.bpm, box.step_rate, box.swing = bpm, rate, swing
        from rolypoly.box.model import STEP_RATES
        assert box.step_samples(SR) == expected_starts(bpm, STEP_RATES[rate], swing, range(16))
    box.bpm, box.step_rate, box.swing = 120.0, "1/16", 50.0
    starts = box.step_samples(SR)
    assert starts[1] - starts[0] == 7500 and starts[2] - starts[1] == 4500     # 6000-sample steps split 5:3


def test_fills_play_on_every_nth_pass_or_when_held():
    box = Box(click_kit())
    box.toggle(2, 3, "fill")
    box.toggle(0, 0)
    box.set_fill_rate(2)
    hits = box.sequence_hits(["a", "a", "a", "a"], SR)
    fill_passes = sorted({h[0] // box.pass_samples(SR) for h in hits if h[1] == 2})
    assert fill_passes == [1, 3]                    # the 2nd and 4th pass
    box.set_fill_rate(0)
    assert not any(h[1] == 2 for h in box.sequence_hits(["a"], SR))
    box.fill = True
    assert any(h[1] == 2 for h in box.sequence_hits(["a"], SR))


def test_mute_solo():
    box = Box(click_kit())
    box.toggle(0, 0); box.toggle(1, 1); box.toggle(2, 2)
    box.set_mix("mute", 1, True)
    assert sorted({h[1] for h in box.sequence_hits(["a"], SR)}) == [0, 2]
    box.set_mix("solo", 2, True)
    assert sorted({h[1] for h in box.sequence_hits(["a"], SR)}) == [2]
    with pytest.raises(BoxError, match="level"):
        box.set_mix("level", 0, 40)


# -- keystrokes (textual Pilot) ------------------------------------------------------------------
def test_pilot_lay_down_erase_chain(cfg):
    from rolypoly.box.app import BoxApp
    app = BoxApp(Box(click_kit()), cfg, audio=False)
    keys = (["x"] + ["right"] * 4 + ["x"] + ["right"] * 4 + ["x"] + ["right"] * 4 + ["x"]   # kick on the beats
            + ["down", "right", "right", "shift+right", "shift+right", "shift+right"]          # paint 3 hats
            + ["down", "x", "backspace"]                                                    # set, then erase
            + ["up", "E", "u"]                                                              # erase hats, undo
            + ["c", "full_stop", "x"])                                                      # chain a->b, edit b
    press(app, keys)
    box = app.box
    a = box.patterns["a"]
    assert a.grid(0) == "x---x---x---x---"
    assert a.grid(1) == "x-------------xx"                  # painted 14, 15, then wrapped to 0
    assert a.grid(2) == "-" * 16                            # set, then erased
    assert a.chained and box.chain("a") == ["a", "b"]
    assert box.current == "b" and box.patterns["b"].grid(1) == "--x" + "-" * 13


def test_pilot_generate_from_basis_and_undo(cfg):
    from rolypoly.box.app import BoxApp
    from rolypoly.patterns.introspect import parse_pattern
    snare = [parse_pattern("----x-------x---"), parse_pattern("----x-------x-x-")]
    table = Answers(snare)
    app = BoxApp(Box(click_kit()), cfg, audio=False, table=table, seed=1)
    keys = ["x", "right", "right", "right", "right", "x", "right", "right", "right", "right", "x",
            "right", "right", "right", "right", "x", "b", "down", "g"]
    box = app.box
    seen = {}

    def first_answer():
        seen["first"] = box.pattern.grid(1)
        assert seen["first"] in ("----x-------x---", "----x-------x-x-")
        assert table.asked[0][:3] == (box.channel_drums[0], box.channel_drums[1], parse_pattern("x---x---x---x---"))

    def second_answer():                                # asking again varies the answer
        assert box.pattern.grid(1) != seen["first"] and table.asked[1][3] == parse_pattern(seen["first"])

    def undone_once():
        assert box.pattern.grid(1) == seen["first"]

    press(app, keys, first_answer, ["g"], second_answer, ["u"], undone_once, ["u"])
    assert box.pattern.grid(1) == "-" * 16               # the first answer undone too
    assert box.pattern.grid(0) == "x---x---x---x---"    # the basis is untouched


def test_pilot_generate_all_from_kick(cfg):
    from rolypoly.box.app import BoxApp
    from rolypoly.patterns.introspect import parse_pattern
    table = Answers([parse_pattern("x-x-x-x-x-x-x-x-")])
    app = BoxApp(Box(click_kit()), cfg, audio=False, table=table)
    box = app.box
    kick = box.channel_drums.index(0)

    def generated():
        assert box.basis == kick
        for ch in range(8):
            if ch != kick:
                assert box.pattern.grid(ch) == "x-x-x-x-x-x-x-x-"

    press(app, ["down", "down", "b", "up", "up", "x", "G"], generated, ["u"])
    assert all(box.pattern.grid(ch) == "-" * 16 for ch in range(8) if ch != kick)


def test_pilot_bar_renders_sample_exact_with_swing(cfg):
    """Keys lay down a bar; the engine's offline render starts every step on its exact sample."""
    from rolypoly.box.app import BoxApp
    from rolypoly.box.player import render_offline
    app = BoxApp(Box(click_kit()), cfg, audio=False)
    keys = []
    for k in range(16):                      # one hit per step, walking down and up the channels
        keys += ["x", "right"] + (["down"] if k % 2 == 0 else ["up"])
    keys += ["right_square_bracket"] * 8 + ["minus"] * 23      # swing 40 %, 97 bpm
    press(app, keys)
    box = app.box
    assert box.swing == 40.0 and box.bpm == 97.0
    assert sum(len(box.pattern.grid(ch).replace("-", "")) for ch in range(8)) == 16
    audio, hits, engine_hits = render_offline(box, cfg, sr=SR)
    want = expected_starts(97.0, Fraction(1, 4), 40.0, range(16))
    assert [h[0] for h in hits] == want
    assert onsets(audio) == want                                   # the audio itself
    assert sorted(h["sample"] for h in engine_hits) == want       # and what the engine reports
    # swing: the off-steps are late by the set ratio of half a step
    step = 60 / 97 / 4 * SR
    late = [(want[k] - k * step) / (step / 2) for k in range(1, 16, 2)]
    assert np.allclose(late, 0.40, atol=1.0 / (step / 2))


def test_chain_renders_in_order(cfg):
    from rolypoly.box.player import render_offline
    box = Box(click_kit())
    box.toggle(0, 0)
    box.toggle_chain("a")
    box.select("b")
    box.set_length(8)
    box.toggle(1, 4)
    box.select("a")
    audio, hits, engine_hits = render_offline(box, cfg, sr=SR)
    assert [(h[0], h[1]) for h in hits] == [(0, 0), (16 * 6000 + 4 * 6000, 1)]
    assert onsets(audio) == [0, 120000]


# -- projects, presets, exports ---------------------------------------------------------------------
def test_project_roundtrip_and_no_silent_overwrite(tmp_path):
    from rolypoly.box.project import load_project, save_project
    from rolypoly.errors import OutputError
    box = Box(click_kit())
    box.toggle(3, 5, "accent"); box.toggle(4, 7, "fill"); box.toggle_chain("c")
    box.set_swing(30); box.set_bpm(101.5); box.set_step_rate("1/16T"); box.set_mix("level", 2, -6.0)
    box.select("d"); box.set_length(24); box.toggle(0, 23)
    path = save_project(box, tmp_path / "p.toml")
    back = load_project(path)
    for n in "abcdefghijkl":
        p, q = box.patterns[n], back.patterns[n]
        assert (p.length, p.chained) == (q.length, q.chained)
        assert all(p.grid(c, k) == q.grid(c, k) for c in range(8) for k in ("trigger", "accent", "fill"))
    assert (back.bpm, back.swing, back.step_rate, back.mix.level[2], back.current) == (101.5, 30.0, "1/16T", -6.0, "d")
    assert back.kit.channels[2].patch == box.kit.channels[2].patch
    before = path.read_bytes()
    with pytest.raises(OutputError, match="exists"):
        save_project(back, path)
    assert path.read_bytes() == before
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("swing = 30.0", "swing = 300.0"))
    with pytest.raises(BoxError, match="bad.toml.*swing"):
        load_project(bad)


def test_preset_patterns_load_with_the_kit(tmp_path):
    from test_synth_presets import make_preset

    from rolypoly.box.project import box_from_preset
    src = tmp_path / "p.mtpreset"
    src.write_text(make_preset().replace('Pattern: "a"', 'Pattern: "a"\n\tStepRate: "1/8"\n\tSwing: "25.0%"'))
    box, channel_map = box_from_preset(src)
    assert box.patterns["a"].grid(1) == "x---x---x---x---" and box.patterns["a"].grid(1, "accent") == "x" + "-" * 15
    assert box.step_rate == "1/8" and box.swing == 25.0
    assert len(channel_map) == 8 and all(r.how == "position" for r in channel_map)   # names p1..p8 say nothing


def test_export_midi_matches_pattern(tmp_path):
    from rolypoly.box.project import export_midi
    from rolypoly.score.midi import read_score
    box = Box(click_kit())
    for k in (0, 4, 8, 12):
        box.toggle(0, k)
    box.toggle(1, 4, "accent")
    path = export_midi(box, tmp_path / "a.mid")
    score = read_score(path)
    hits = score.hit_list()
    kick, snare = box.channel_drums[0], box.channel_drums[1]
    assert [(round(t, 4), d) for t, d, _ in hits] == [(0.0, kick), (0.5, kick), (0.5, snare), (1.0, kick), (1.5, kick)]
    assert max(v for _, d, v in hits if d == snare) == 127


def test_headless_script_cli(tmp_path, capsys, cfg):
    from rolypoly.cli import main
    script = tmp_path / "keys.txt"
    script.write_text("# kick on the beats\n:repeat 4 x right right right right\nc\n"
                      f":save {tmp_path / 'beat.toml'}\n:midi {tmp_path / 'beat.mid'}\n"
                      f":screenshot {tmp_path / 'box.svg'}\n")
    assert main(["box", "--headless", "--script", str(script), "--json", f"takes_dir={tmp_path}"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {(r["pattern"], r["channel"]): r for r in out["patterns"]}
    assert rows[("a", 1)]["triggers"] == "x---x---x---x---" and rows[("a", 1)]["chained"] is True
    assert out["keys"] == 21
    for name in ("beat.toml", "beat.mid", "box.svg"):
        assert (tmp_path / name).is_file()
    script.write_text(":frobnicate now\n")
    assert main(["box", "--headless", "--script", str(script)]) == 2
    assert "frobnicate" in capsys.readouterr().err


def test_pilot_channel_page_edits_and_undoes_a_voice_parameter(cfg):
    from rolypoly.box.app import BoxApp, ChannelPage
    app = BoxApp(Box(click_kit()), cfg, audio=False)
    before = app.box.kit.channels[1].patch.oscFreq
    seen = {}

    def on_page():
        assert isinstance(app.screen, ChannelPage) and app.screen.channel == 1
        seen["after"] = app.box.kit.channels[1].patch.oscFreq

    # channel 2, open its page, go to oscFreq (2nd row), one semitone up twelve times = an octave
    press(app, ["down", "t", "down"] + ["right"] * 12, on_page, ["u"], ["escape"])
    assert seen["after"] == pytest.approx(2 * before)
    assert app.box.kit.channels[1].patch.oscFreq == pytest.approx(before * 2 ** (11 / 12))   # one step undone
    assert app.box.kit.channels[0].patch == click_kit().channels[0].patch


def test_morph_and_mixer_reach_the_playing_kit():
    box = Box(click_kit())
    other = click_kit()
    for ch in other.channels:
        ch.patch.oscFreq *= 4
    box.set_morph(0.5, other)
    box.set_mix("level", 3, -6.0)
    box.set_mix("pan", 3, -1.0)
    kit = box.playing_kit()
    assert kit.channels[0].patch.oscFreq == pytest.approx(2 * click_kit().channels[0].patch.oscFreq)  # geometric
    assert kit.channels[3].patch.level == pytest.approx(-6.0) and kit.channels[3].pan == -1.0
    box.undo(); box.undo(); box.undo()
    assert box.playing_kit().channels[0].patch.oscFreq == pytest.approx(click_kit().channels[0].patch.oscFreq)


def test_midi_notes_in_record_into_the_playing_pattern():
    from rolypoly.bridges.midi import BoxSync
    from rolypoly.score.drums import OUTPUT_PITCHES

    class FakePlayer:
        playing = True
        sequence = ["a"]
        dirty = False

        def position(self):
            return 0, 6

        def changed(self):
            self.dirty = True

        def prepare(self):
            pass

    class Host:
        box = Box(click_kit())
        player = FakePlayer()

    sync = BoxSync(Host())                       # no ports: messages fed by hand
    snare_pitch = OUTPUT_PITCHES[Host.box.channel_drums[1]]
    sync._message(bytes([0x99, snare_pitch, 100]), 0.0)
    sync._message(bytes([0x99, 99, 100]), 0.0)   # a pitch outside the map: ignored
    assert Host.box.pattern.grid(1) == "------x---------" and sync.recorded == 1 and Host.player.dirty
    assert Host.box.undo() == "record"


@pytest.mark.slow
def test_humanize_lets_the_model_play_the_pattern(cfg):
    from pathlib import Path

    from rolypoly.box.player import render_offline
    if not Path(cfg.engine.model_path).is_file():
        pytest.skip("no performance model")
    box = Box(click_kit())
    for k in range(0, 16, 2):
        box.toggle(2, k)
    for k in (0, 8):
        box.toggle(0, k)
    box.humanize = True
    _, grid, played = render_offline(box, cfg, sequence=["a", "a"], sr=SR)
    assert len(played) == len(grid)
    offsets = [h["offset_ms"] for h in played]
    assert max(abs(o) for o in offsets) > 0.5                    # micro-timing, not the grid
    assert len({h["velocity"] for h in played}) > 2              # its own velocities
    assert max(abs(o) for o in offsets) < 60                     # still the pattern


def test_midi_only_silences_the_synth_but_keeps_the_hits(cfg):
    from rolypoly.box.player import render_offline
    box = Box(click_kit())
    box.toggle(0, 0); box.toggle(1, 4)
    box.synth = False
    audio, grid, played = render_offline(box, cfg, sr=SR)
    assert not np.abs(audio).any()
    assert sorted(h["sample"] for h in played) == [0, 24000]


def test_pilot_channel_page_saves_the_edited_kit(cfg, tmp_path, monkeypatch):
    from rolypoly.box.app import BoxApp
    from rolypoly.synth.kit import read_kit
    monkeypatch.chdir(tmp_path)
    app = BoxApp(Box(click_kit()), cfg, audio=False)
    press(app, ["t"] + ["down"] * 3 + ["right"] * 12 + ["ctrl+s"], ["escape", "ctrl+s"])   # oscDcy up, save kit, project
    kit = read_kit(tmp_path / "clicks_box_kit.toml")
    assert kit.channels[0].patch.oscDcy > click_kit().channels[0].patch.oscDcy
    assert kit.channels[1].patch.to_array().tolist() == click_kit().channels[1].patch.to_array().tolist()
    assert kit.channels[1].name == "click2"
    assert (tmp_path / "box.toml").is_file()                      # the project saved too


def test_export_wav_is_the_engine_render(cfg, tmp_path):
    import soundfile as sf

    from rolypoly.box.project import export_wav
    from rolypoly.errors import OutputError
    box = Box(click_kit())
    box.toggle(0, 0); box.toggle(3, 6)
    path = export_wav(box, cfg, tmp_path / "a.wav", sr=SR)
    audio, sr = sf.read(path)
    assert sr == SR and audio.shape[1] == 2
    assert onsets(audio) == [0, 36000]
    with pytest.raises(OutputError, match="exists"):
        export_wav(box, cfg, path, sr=SR)
