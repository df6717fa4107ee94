"""``rolypoly render`` and ``rolypoly kit``: the supertonic drum engine from the command line."""
from __future__ import annotations

from pathlib import Path


def register(sub, common) -> None:
    p = sub.add_parser(
        "render", parents=[common], help="render a MIDI drum score to a WAV file with a kit",
        description="Render the drum part of SCORE.mid through the supertonic engine. "
                    "The kit is synth.kit (default data/default_kit.toml); any .toml kit or "
                    ".mtpreset works, e.g. `rolypoly render song.mid synth.kit=my.mtpreset -o song.wav`.")
    p.add_argument("score", help="MIDI file (.mid) holding the drum part")
    p.add_argument("-o", "--output", required=True, help="WAV file to write (stereo float32 -> PCM_24; name ends in .wav)")
    p.add_argument("--force", action="store_true", help="replace OUTPUT when it exists")
    p.add_argument("--sr", type=int, default=None, help="sample rate in Hz (default: audio.sample_rate)")
    p.add_argument("--tail", type=float, default=None,
                   help="seconds kept after the last hit (default: until every voice has ended)")
    p.set_defaults(func=render_cmd)

    k = sub.add_parser("kit", parents=[common], help="drum kits: import .mtpreset files, show kits")
    ksub = k.add_subparsers(dest="kit_command", metavar="<action>")
    k.set_defaults(subparser=k)
    imp = ksub.add_parser("import", parents=[common], help="convert a Microtonic .mtpreset to a kit file",
                          description="Convert FILE.mtpreset (8 drum patches) into our TOML kit format, "
                                      "usable wherever a kit is expected (synth.kit=KIT.toml).")
    imp.add_argument("preset", help="the .mtpreset file")
    imp.add_argument("-o", "--output", required=True, help="kit file to write (.toml is added when missing)")
    imp.add_argument("--force", action="store_true", help="replace OUTPUT when it exists")
    imp.set_defaults(func=kit_import)
    show = ksub.add_parser("show", parents=[common], help="list a kit's channels, mapping and main parameters",
                           description="Show a kit (default: synth.kit). Accepts .toml kits and .mtpreset files.")
    show.add_argument("kit", nargs="?", default=None, help="kit file (default: synth.kit)")
    show.set_defaults(func=kit_show)


def _sr(args, cfg) -> int:
    if args.sr is None:
        return int(cfg.audio.sample_rate)
    from rolypoly.config import check_value
    return int(check_value("audio.sample_rate", args.sr, label="--sr"))


def render_cmd(args, cfg) -> int:
    from rolypoly.io import check_output, write_wav
    from rolypoly.report import Table, emit
    from rolypoly.score.midi import read_score
    from rolypoly.synth import load_kit, render

    out = check_output(args.output, args.force, suffixes=(".wav",))
    if args.tail is not None and not (0 <= args.tail <= 600):
        from rolypoly.errors import ConfigError
        raise ConfigError(f"--tail: {args.tail} s is outside [0, 600]")
    score = read_score(args.score)
    kit = load_kit(cfg.synth.kit)
    sr = _sr(args, cfg)
    hits = score.hit_list()
    audio = render(hits, kit, sr=sr, tail_s=args.tail, polyphony=int(cfg.synth.polyphony),
                   steal_fade_ms=float(cfg.synth.steal_fade_ms))
    write_wav(out, audio, sr)
    t = Table("render", ["output", "kit", "hits", "seconds", "peak"])
    t.add(str(out), kit.name, len(hits), round(len(audio) / sr, 3), float(abs(audio).max()) if len(audio) else 0.0)
    emit(t, as_json=args.json)
    return 0


def kit_import(args, cfg) -> int:
    from rolypoly.report import Table, emit
    from rolypoly.synth.kit import save_kit
    from rolypoly.synth.mtpreset import read_mtpreset

    from rolypoly.io import check_output
    out = Path(args.output)
    if out.suffix.lower() != ".toml":
        out = out.with_suffix(".toml")
    out = check_output(out, args.force, what="kit file")
    preset = read_mtpreset(args.preset)
    save_kit(preset.kit, out)
    t = Table("kit import", ["kit", "file", "channels", "patterns"], key="kit_import")
    t.add(preset.kit.name, str(out), len(preset.kit.channels), len(preset.patterns))
    emit(t, as_json=args.json)
    return 0


def kit_show(args, cfg) -> int:
    from rolypoly.report import Table, emit
    from rolypoly.synth import DRUMS, load_kit

    kit = load_kit(args.kit or cfg.synth.kit)
    t = Table(f"kit {kit.name}", key="channels", columns=["channel", "name", "drums", "pan", "choke", "osc Hz", "osc ms", "noise ms", "mix", "level dB"])
    for i, ch in enumerate(kit.channels):
        drums = ",".join(d for j, d in enumerate(DRUMS) if kit.class_channel(j) == i) or "-"
        p = ch.patch
        t.add(i + 1, ch.name or p.name, drums, ch.pan, ch.choke, round(p.oscFreq, 1), round(p.oscDcy, 1),
              round(p.nEnvDcy, 1), round(p.mix, 1), round(p.level, 2))
    if kit.tune:
        t.notes.append("tuning: " + ", ".join(f"{k} {v:+g} st" for k, v in kit.tune.items()))
    emit(t, as_json=args.json)
    return 0
