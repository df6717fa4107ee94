"""``.mtpreset`` reading, kit import/render commands, and fidelity to the original engine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rolypoly.errors import PresetError, SynthError
from rolypoly.synth import load_kit
from rolypoly.synth.mtpreset import read_mtpreset

from conftest import SHARED_DATA as SHARED, need

PRESETS = SHARED / "presets"
REFERENCE = SHARED / "supertonic_reference"


PATCH_LINES = """\
\t\t"{slot}": {{
\t\t\tName: "p{slot}"
\t\t\tOscWave: {wave}
\t\t\tOscFreq: "55.5 Hz"
\t\t\tOscAtk: "0.0 ms"
\t\t\tOscDcy: "300 ms"
\t\t\tModMode: "Decay"
\t\t\tModRate: "{rate}"
\t\t\tModAmt: "-12.5 sm"
\t\t\tNFilMod: "BP"
\t\t\tNFilFrq: "1000 Hz"
\t\t\tNFilQ: "2"
\t\t\tNStereo: "Off"
\t\t\tNEnvMod: "Mod"
\t\t\tNEnvAtk: "5.0 ms"
\t\t\tNEnvDcy: "{dcy}"
\t\t\tMix: "60.0 / 40.0"
\t\t\tDistAmt: "+10"
\t\t\tEQFreq: "500.0 Hz"
\t\t\tEQGain: "-3 dB"
\t\t\tLevel: "{level}"
\t\t\tPan: "-50.0"
\t\t\tOutput: "A"
\t\t\tChoke: "{choke}"
\t\t\tOscVel: "10%"
\t\t\tNVel: "20%"
\t\t\tModVel: "30%"
\t\t}}
"""


def make_preset(order=range(1, 9), crlf=False, **over) -> str:
    patches = ""
    for slot in order:
        kw = dict(slot=slot, wave='"Saw"' if slot == 2 else "Triangle", rate="inf ms" if slot == 3 else "250 ms",
                  dcy="inf ms" if slot == 4 else "100 ms", level="-inf dB" if slot == 5 else "-2 dB",
                  choke="On" if slot in (3, 4) else "Off")
        kw.update(over)
        patches += PATCH_LINES.format(**kw)
    text = ("MicrotonicPresetV3: {\n\tPattern: \"a\"\n\tTempo: 120\n\tMutes: { \"Off\", \"Off\" }\n"
            "\tDrumPatches: {\n" + patches + "\t}\n\tPatterns: {\n\t\ta: {\n\t\t\tLength: 16\n\t\t\tChained: false\n"
            "\t\t\t\"2\": {\n\t\t\t\tTriggers: \"#---#---#---#---\"\n\t\t\t\tAccents:  \"#---------------\"\n"
            "\t\t\t\tFills:    \"----------------\"\n\t\t\t}\n\t\t}\n\t}\n}\n")
    return text.replace("\n", "\r\n") if crlf else text


def test_all_shared_presets_parse():
    files = sorted(need(PRESETS).glob("*.mtpreset"))
    assert len(files) == 5
    for f in files:
        preset = read_mtpreset(f)
        assert len(preset.kit.channels) == 8
        assert set(preset.patterns) == set("abcdefghijkl")
        for pat in preset.patterns.values():
            assert pat.triggers.shape == (8, 16) and pat.triggers.dtype == bool
        assert load_kit(f).channels[0].patch.to_dict() == preset.kit.channels[0].patch.to_dict()


def test_preset_values_match_the_reference_manifest():
    # the manifest's parameters were converted independently from the same presets
    manifest = json.loads((need(REFERENCE) / "manifest.json").read_text())
    kits = {}
    checked = 0
    for r in manifest["renders"]:
        if r["preset"] not in kits:
            kits[r["preset"]] = read_mtpreset(need(PRESETS / f"{r['preset']}.mtpreset")).kit
        ours = kits[r["preset"]].channels[r["slot"] - 1].patch.to_dict()
        for key, want in r["params"].items():
            if key == "name":
                assert ours["name"] == want
            else:
                assert ours[key] == pytest.approx(want, rel=1e-9, abs=1e-9), (r["name"], key)
        checked += 1
    assert checked == 72


def test_format_variants(tmp_path):
    a = tmp_path / "a.mtpreset"
    b = tmp_path / "b.mtpreset"
    a.write_text(make_preset())
    b.write_bytes(make_preset(order=[5, 3, 8, 1, 2, 7, 6, 4], crlf=True).encode())
    ka, kb = read_mtpreset(a).kit, read_mtpreset(b).kit
    for x, y in zip(ka.channels, kb.channels):
        assert x.patch.to_dict() == y.patch.to_dict() and x.pan == y.pan and x.choke == y.choke
    ch = ka.channels
    assert ch[0].patch.oscWave == 1 and ch[1].patch.oscWave == 2          # bare Triangle, quoted Saw
    assert ch[0].patch.modRate == pytest.approx(4.0)                      # 250 ms decay -> 4 Hz
    assert ch[2].patch.modRate == 0.0                                     # inf ms: never decays
    assert ch[3].patch.nEnvDcy > 10000                                    # inf ms decay: longest allowed
    assert ch[4].patch.level == -np.inf                                   # -inf dB
    assert ch[0].patch.modAmt == -12.5 and ch[0].patch.distAmt == 10.0    # signed numbers
    assert ch[0].patch.nEnvMod == 2 and ch[0].patch.nFilMod == 1
    assert ch[0].pan == -0.5 and ch[2].choke == 1 and ch[0].choke == 0
    pat = read_mtpreset(a).patterns["a"]
    assert pat.triggers[1].tolist() == [c == "#" for c in "#---#---#---#---"]
    assert pat.accents[1, 0] and not pat.accents[1, 1:].any() and not pat.triggers[0].any()
    # a silent channel renders silence, others do not
    from rolypoly.synth import render
    assert np.abs(render([(0.0, 4, 100)], ka, tail_s=0.1)).max() == 0      # drum 4 -> channel 5 (-inf dB)
    assert np.abs(render([(0.0, 0, 100)], ka, tail_s=0.1)).max() > 0


@pytest.mark.parametrize("mutate, line_hint", [
    (lambda t: t.replace('OscFreq: "55.5 Hz"', 'OscFreq: "fast Hz"', 1), "OscFreq"),
    (lambda t: t.replace('OscWave: Triangle', 'OscWave: Square', 1), "OscWave"),
    (lambda t: t.replace('OscDcy: "300 ms"', 'OscDcy: "300 Hz"', 1), "OscDcy"),
    (lambda t: t.replace('Mix: "60.0 / 40.0"', 'Mix: "60.0"', 1), "Mix"),
    (lambda t: t.replace('\t\t\tNFilQ: "2"\n', '\t\t\tNFilQ "2"\n', 1), "Key: value"),
    (lambda t: t.replace('OscFreq: "55.5 Hz"', 'OscFreq: "55.5 Hz', 1), "quotes"),
    (lambda t: t.replace('OscFreq: "55.5 Hz"', 'OscFreq: "nan Hz"', 1), "OscFreq"),
])
def test_malformed_presets_name_the_line(tmp_path, mutate, line_hint):
    text = mutate(make_preset())
    bad_line = next(i for i, (x, y) in enumerate(zip(make_preset().splitlines(), text.splitlines())) if x != y) + 1
    f = tmp_path / "bad.mtpreset"
    f.write_text(text)
    with pytest.raises(PresetError) as exc:
        read_mtpreset(f)
    assert f"bad.mtpreset:{bad_line}:" in str(exc.value) and line_hint in str(exc.value)


def test_structurally_broken_presets(tmp_path):
    f = tmp_path / "x.mtpreset"
    for text, msg in (("", "empty"), ("Hello: {\n}\n", "header"), (make_preset()[:-3], "ends inside"),
                      (make_preset(order=range(1, 8)), "lacks channel"),
                      (make_preset().replace('\t\t\tOscAtk: "0.0 ms"\n', "", 1), "lacks OscAtk")):
        f.write_text(text)
        with pytest.raises(PresetError, match=msg):
            read_mtpreset(f)
    with pytest.raises(SynthError):
        load_kit(tmp_path / "nope.mtpreset")


def test_kit_import_and_render_commands(tmp_path, capsys):
    from rolypoly.cli import main
    src = tmp_path / "p.mtpreset"
    src.write_text(make_preset())
    out = tmp_path / "kit.toml"
    assert main(["kit", "import", str(src), "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kit_import"][0]["channels"] == 8
    kit = load_kit(out)
    assert kit.channels[1].patch.oscWave == 2
    assert main(["kit", "show", str(out)]) == 0
    capsys.readouterr()
    from conftest import note, write_midi
    mid = write_midi(tmp_path / "s.mid", [note(0, 36) + note(480, 38) + note(960, 42)])
    wav = tmp_path / "s.wav"
    assert main(["render", str(mid), f"synth.kit={out}", "-o", str(wav), "--json"]) == 0
    import soundfile as sf
    audio, sr = sf.read(wav)
    assert sr == 48000 and audio.shape[1] == 2 and np.abs(audio).max() > 0
    assert main(["render", str(mid), "synth.kit=/nonexistent.toml", "-o", str(tmp_path / "t.wav")]) == 2
    assert "nonexistent" in capsys.readouterr().err


@pytest.mark.slow
def test_fidelity_to_the_original_engine():
    need(REFERENCE / "manifest.json")
    from rolypoly.synth.fidelity import fidelity_table
    rows = fidelity_table()
    d = np.array([r["db"] for r in rows])
    assert len(d) == 72
    assert np.median(d) <= 3.0, f"median {np.median(d):.2f} dB"
    worst = rows[int(d.argmax())]
    assert d.max() <= 6.0, f"{worst['name']}: {worst['db']:.2f} dB"


def test_fidelity_metric_tells_patches_apart():
    # the metric itself: a different patch must score far worse than the same one
    need(REFERENCE / "manifest.json")
    import soundfile as sf

    from rolypoly.synth.fidelity import mel_distance
    kick, sr = sf.read(REFERENCE / "default_1_v127.flac")
    hat, _ = sf.read(REFERENCE / "default_3_v127.flac")
    assert mel_distance(kick, kick, sr) == 0.0
    assert mel_distance(kick, hat, sr) > 10.0          # a kick scored against a hi-hat reference


def test_channels_map_by_name_then_sound_position_last():
    from rolypoly.synth.kit import Channel
    from rolypoly.synth.mtpreset import map_channels, patch_category
    from rolypoly.synth.patch import Patch
    assert patch_category("VT-MRK BD To Tom Tom") == "kick"          # the first instrument word wins
    assert patch_category("HT Ping") == "tom" and patch_category("SC HH Lemon") == "hihat"
    assert patch_category("RD GSn", "./By Category/Snare Drum Patches/RD GSn.mtdrum") == "snare"
    names = ["SC BD Blue", "VT-808 CP", "LT Deep", "SC CH Gringo", "HT Ping", "VT-DMX Ride", "MT Mid", "SC SD Crack"]
    freqs = [50.0, 600.0, 90.0, 9000.0, 300.0, 2000.0, 150.0, 200.0]
    chans = [Channel(patch=Patch(oscFreq=f, name=n), name=n) for n, f in zip(names, freqs)]
    mapping, rows = map_channels(chans)
    drum = {r.channel: r.drum for r in rows}
    assert drum[1] == "kick" and drum[8] == "snare" and drum[4] == "hihat" and drum[6] == "ride"
    assert (drum[3], drum[7], drum[5]) == ("lowtom", "midtom", "hightom")    # toms ordered by pitch
    assert len(set(drum.values())) == 8                                      # every channel playable
    assert all(1 <= mapping[d] <= 8 for d in mapping) and len(mapping) == 9
    assert rows[1].category == "clap" and all(r.how == "name" for r in rows)


def test_chonk_toms_are_not_clap_snare_ride():
    from conftest import shared
    preset = read_mtpreset(shared("presets", "chonk.mtpreset"))
    cats = {r.channel: r.category for r in preset.channel_map}
    assert cats[1] == "kick" and cats[5] == "clap" and cats[7] == "ride"
    assert preset.kit.mapping["kick"] == 1 and preset.kit.mapping["snare"] == 2
    assert preset.kit.mapping["ride"] == 7 and preset.kit.mapping["hihat"] == 3
