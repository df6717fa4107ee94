"""``rolypoly box [PRESET.mtpreset | PROJECT.toml | KIT.toml]``: the drum machine in a terminal."""
from __future__ import annotations

import argparse

_EPILOG = """\
examples:
  rolypoly box                                   # our default kit, empty patterns
  rolypoly box ../shared/data/presets/chonk.mtpreset --morph blue.mtpreset
  rolypoly box mybeat.toml                       # a saved project
  rolypoly box --headless --script keys.txt --json
  rolypoly box chonk.mtpreset --export-midi a.mid --export-wav a.wav --pattern a

Keys: press ? in the box (or see rolypoly.box.app.KEYS).
"""


def register(sub, common) -> None:
    p = sub.add_parser("box", parents=[common], help="the drum machine: a step sequencer in the terminal",
                       description="Eight synthesized channels, patterns a..l of up to 32 steps, chains, swing, "
                                   "fills, mixer, kit morph, introspection (generate a channel from another), "
                                   "played through the rolypoly engine. Opens a .mtpreset (kit + patterns), "
                                   "a box project (.toml) or a kit.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", default=None, help="a .mtpreset, a box project .toml or a kit .toml")
    p.add_argument("--morph", metavar="KIT", help="a second kit or preset to morph toward (keys o / O)")
    p.add_argument("--headless", action="store_true", help="no terminal: replay --script and report the state")
    p.add_argument("--script", metavar="FILE", help="keystrokes to replay (see rolypoly.box.script)")
    p.add_argument("--no-audio", action="store_true", help="no sound (edit only)")
    p.add_argument("--driver", default="auto", choices=("auto", "jack", "portaudio", "clock"),
                   help="audio driver (clock = silent, paced by the clock)")
    p.add_argument("--midi-in", metavar="PORT", help="follow MIDI clock and start/stop from this input port")
    p.add_argument("--midi-out", metavar="PORT", help="send clock, start/stop and the hits (channel 10) to this port")
    p.add_argument("--no-synth", action="store_true",
                   help="with --midi-out: the hits go out as MIDI notes only, the synth stays silent")
    p.add_argument("--midi-api", default=None, choices=("default", "alsa", "jack", "core", "windows"),
                   help="MIDI API of the ports (default: the system's)")
    p.add_argument("--pattern", default=None, help="with --export-*: the pattern whose chain is exported")
    p.add_argument("--export-midi", metavar="OUT.mid", help="write the pattern's chain as MIDI and exit")
    p.add_argument("--export-wav", metavar="OUT.wav", help="render the pattern's chain through the engine and exit")
    p.add_argument("--force", action="store_true", help="exports may replace existing files")
    p.add_argument("--seed", type=int, default=None, help="seed of generate (introspection) draws")
    p.set_defaults(func=run)


def _open(args):
    from rolypoly.box.project import open_any
    from rolypoly.synth import load_kit
    box, channel_map = open_any(args.file)
    if args.morph:
        box.kit_b = load_kit(args.morph)
    box._undo.clear()
    return box, channel_map


def _state_tables(box, channel_map):
    from rolypoly.report import Table
    from rolypoly.score.drums import DRUMS
    grids = Table("box patterns", ["pattern", "channel", "drum", "length", "chained", "triggers", "accents", "fills"],
                  key="patterns")
    drums = box.channel_drums
    for name, p in box.patterns.items():
        if p.empty:
            continue
        for ch in range(8):
            if p.triggers[ch, :p.length].any() or p.fills[ch, :p.length].any():
                grids.add(name, ch + 1, DRUMS[drums[ch]] if drums[ch] >= 0 else "-", p.length, p.chained,
                          p.grid(ch), p.grid(ch, "accent"), p.grid(ch, "fill"))
    settings = Table("box settings", ["key", "value"], key="settings")
    for k, v in (("kit", box.kit_name), ("current", box.current), ("chain", "+".join(box.chain())),
                 ("bpm", box.bpm), ("step_rate", box.step_rate), ("swing", box.swing), ("fill_rate", box.fill_rate),
                 ("humanize", box.humanize), ("morph", box.morph)):
        settings.add(k, v)
    tables = [grids, settings]
    if channel_map:
        cm = Table("channel mapping", ["channel", "name", "category", "drum", "how"], key="channel_map")
        for r in channel_map:
            cm.add(r.channel, r.name, r.category, r.drum, r.how)
        tables.append(cm)
    return tables


def run(args, cfg) -> int:
    from rolypoly.box.model import BoxError
    from rolypoly.report import emit
    box, channel_map = _open(args)
    box.synth = not args.no_synth
    if args.pattern:
        box.select(args.pattern)
    if args.export_midi or args.export_wav:
        from rolypoly.box.project import export_midi, export_wav
        outs = {}
        if args.export_midi:
            outs["midi"] = str(export_midi(box, args.export_midi, force=args.force))
        if args.export_wav:
            outs["wav"] = str(export_wav(box, cfg, args.export_wav, force=args.force))
        emit(_state_tables(box, channel_map), as_json=args.json, extra={"outputs": outs})
        return 0
    from rolypoly.box.app import BoxApp
    if args.headless:
        if not args.script:
            raise BoxError("--headless needs --script FILE (the keys to replay)")
        from rolypoly.box.script import run_script
        app = BoxApp(box, cfg, audio=False, channel_map=channel_map, seed=args.seed)
        summary = run_script(app, args.script, cfg)
        emit(_state_tables(app.box, channel_map), as_json=args.json,
             extra={"keys": summary["keys"], "outputs": [p for _, p in summary["outputs"]],
                    "message": summary["message"]})
        return 0
    project = None
    if args.file and args.file.lower().endswith(".toml"):
        import tomllib
        from pathlib import Path
        if "patterns" in tomllib.loads(Path(args.file).expanduser().read_text()):
            project = args.file     # ctrl+s saves back here; a kit file is never overwritten
    app = BoxApp(box, cfg, audio=not args.no_audio, channel_map=channel_map, seed=args.seed,
                 project_path=project, driver=args.driver)
    sync = None
    if args.midi_in or args.midi_out:
        from rolypoly.bridges.midi import BoxSync
        sync = app.sync = BoxSync(app, args.midi_in, args.midi_out, api=args.midi_api)
    try:
        app.run()
    finally:
        if sync is not None:
            sync.close()
    return 0
