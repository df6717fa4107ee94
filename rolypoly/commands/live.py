"""``rolypoly perform`` (offline duet), ``rolypoly play`` (real time), ``rolypoly takes``."""
from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser("perform", parents=[common], help="play a score with a recorded take, offline",
                       description="Run the whole duet offline from a recorded take (or silence), faster than real "
                                   "time and deterministically. Writes drums.wav, mix.wav, performance.mid and the "
                                   "take record into OUTDIR. Example: rolypoly perform data/demo.mid --input take.wav "
                                   "-o outputs/duet")
    p.add_argument("score", help="a MIDI score")
    p.add_argument("--input", default=None, help="the musician's recording (WAV/FLAC); silence when omitted")
    p.add_argument("-o", "--out", default=None, help="output folder (default: outputs_dir/perform)")
    p.add_argument("--force", action="store_true", help="write over the files of a non-empty output folder")
    p.set_defaults(func=perform)

    p = sub.add_parser("play", parents=[common], help="play a score live with the sound card (duplex)",
                       description="Play the drums and listen to the input in real time: through JACK when a "
                                   "server runs or audio.device=jack (the audio callback is compiled code, no "
                                   "Python), else a PortAudio stream on audio.device; ends at the score's end or on "
                                   "Ctrl-C, saving the take either way.")
    p.add_argument("score", help="a MIDI score")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.set_defaults(func=play)

    p = sub.add_parser("takes", parents=[common], help="list, show or recover recorded takes")
    tsub = p.add_subparsers(dest="takes_command", metavar="<action>")
    p.set_defaults(subparser=p)
    lp = tsub.add_parser("list", parents=[common], help="list the takes under takes_dir (every command saves there)",
                         description="List the takes under takes_dir, and the hidden folders of takes cut short by "
                                     "a crash (status crashed: rolypoly takes recover makes takes of them) or being "
                                     "recorded now (status recording). --json: {takes: [{take, status, score, rows, "
                                     "onsets, late_rows, model, audio_s}], takes_dir}; status is complete, recovered, "
                                     "crashed or recording.")
    lp.set_defaults(func=takes_list)
    rp = tsub.add_parser("recover", parents=[common], help="make takes of the takes a crash cut short",
                         description="Turn the hidden folder of a take cut short by a crash into a normal take "
                                     "(the rows, onsets and hits journaled up to the crash, and all the audio on "
                                     "disk), named by when it started; settings.json says recovered: true. A folder "
                                     "whose process still runs is left alone. --json: {recovered: [{partial, result, "
                                     "take, rows, onsets, hits, audio_s, why}]}; result is recovered, skipped (still "
                                     "recording) or failed (why says what is unreadable). Exit 2 if any failed. "
                                     "Example: rolypoly takes recover --all")
    rp.add_argument("folder", nargs="?", help="a .partial-* folder (a path, or its name under takes_dir)")
    rp.add_argument("--all", action="store_true", help="every crashed take under takes_dir")
    rp.set_defaults(func=takes_recover)
    sp = tsub.add_parser("show", parents=[common], help="show one take (path or name under takes_dir)")
    sp.add_argument("take", help="take folder or its name")
    sp.set_defaults(func=takes_show)


def _engine(cfg, offline: bool):
    import sys

    from rolypoly.live.engine import Rolypoly
    eng = Rolypoly(cfg, offline=offline)
    eng.connect("error", lambda text: print(f"rolypoly: {text}", file=sys.stderr))
    return eng


def perform(args, cfg) -> int:
    from pathlib import Path

    from rolypoly.errors import RolypolyError
    from rolypoly.io import check_output_dir, copy_file, read_audio, write_wav
    from rolypoly.live.drivers import perform_offline
    from rolypoly.report import Table, emit
    out = check_output_dir(args.out or Path(cfg.outputs_dir) / "perform", args.force)
    audio = read_audio(args.input, int(cfg.audio.sample_rate)) if args.input else None
    eng = _engine(cfg, offline=True)
    if not eng.message("read", args.score):
        raise RolypolyError(eng.last_errors()[-1])
    _require_model(eng)
    res = perform_offline(eng, audio)
    write_wav(out / "drums.wav", res.drums, eng.sr)
    write_wav(out / "mix.wav", res.mix, eng.sr)
    if res.take_dir is not None:
        copy_file(res.take_dir / "performance.mid", out / "performance.mid")
    t = Table(f"perform {args.score}", ["what", "value"], key="performance")
    for k, v in (("rows", res.rows), ("late rows", res.late_rows), ("onsets matched", res.onsets),
                 ("hits", len(res.hits)), ("audio s", round(len(res.drums) / eng.sr, 2)),
                 ("wall s", round(res.seconds, 2)), ("x real time", round(len(res.drums) / eng.sr / res.seconds, 1)),
                 ("take", str(res.take_dir)), ("outputs", str(out))):
        t.add(k, v)
    figures = {"rows": res.rows, "late_rows": res.late_rows, "onsets_matched": res.onsets, "hits": len(res.hits),
               "audio_s": round(len(res.drums) / eng.sr, 3), "wall_s": round(res.seconds, 3),
               "take_path": str(res.take_dir), "output_dir": str(out)}
    emit([] if args.json else t, as_json=args.json, extra=figures if args.json else None)
    return 0


def _require_model(eng) -> None:
    """With the model on, a model that does not load is an error, not a quiet quantised take."""
    from rolypoly.errors import ModelError
    if eng.enable and eng.runtime is None:
        errs = eng.last_errors()
        why = errs[-1].replace("; playing the score as written", "") if errs else f"model {eng.model_path} did not load"
        raise ModelError(f"{why} (engine.enable=false plays the score as written)")


def play(args, cfg) -> int:
    import sys

    from rolypoly.errors import RolypolyError
    from rolypoly.live.drivers import play_realtime
    from rolypoly.errors import AudioError
    from rolypoly.report import Table, emit
    if args.list_devices:
        try:
            import sounddevice as sd
            devices = sd.query_devices()
        except (ImportError, OSError) as exc:
            raise AudioError(f"no audio system available ({exc})") from None
        t = Table("audio devices", ["index", "name", "inputs", "outputs", "default_sample_rate_hz"], key="devices")
        for i, d in enumerate(devices):
            t.add(i, d["name"], d["max_input_channels"], d["max_output_channels"], d["default_samplerate"])
        emit(t, as_json=args.json)
        return 0
    if args.seconds is not None and not (0 < args.seconds <= 24 * 3600):
        raise AudioError(f"--seconds: {args.seconds} is outside (0, 86400]")
    eng = _engine(cfg, offline=False)
    eng.connect("status", lambda text: print(f"rolypoly: {text}", file=sys.stderr))
    if not eng.message("read", args.score):
        raise RolypolyError(eng.last_errors()[-1])
    _require_model(eng)
    stats = play_realtime(eng, duration_s=args.seconds)
    t = Table("play", ["driver", "blocks", "blocks_due", "xruns", "take"], key="play")
    t.add(stats.driver, stats.blocks, stats.blocks_due, stats.xruns, str(eng.last_take))
    emit(t, as_json=args.json)
    return 0


def resolve_take(cfg, name):
    """A take folder given as a path, or as a name under ``takes_dir``."""
    from pathlib import Path

    from rolypoly.errors import TakeError
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    q = Path(cfg.takes_dir) / name
    if q.is_dir():
        return q
    raise TakeError(f"{name}: no such take (a folder, or a name listed by: rolypoly takes list)")


_resolve_take = resolve_take


def takes_list(args, cfg) -> int:
    import json

    from rolypoly.live.takes import list_takes, partial_takes
    from rolypoly.report import Table, emit
    t = Table(f"takes in {cfg.takes_dir}", ["take", "status", "score", "rows", "onsets", "late rows", "model",
                                            "audio s"], key="takes")
    for p in list_takes(cfg.takes_dir):
        try:
            s = json.loads((p / "settings.json").read_text())
            if not isinstance(s, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as exc:
            t.notes.append(f"{p.name}: unreadable settings.json ({exc})")
            continue
        frames = s.get("input_frames", s.get("samples"))
        sr = s.get("sample_rate")
        audio_s = round(frames / sr, 3) if isinstance(frames, (int, float)) and isinstance(sr, (int, float)) and sr \
            else None
        t.add(p.name, "recovered" if s.get("recovered") else "complete", s.get("score"), s.get("rows_played"),
              s.get("onsets"), s.get("late_rows"), s.get("model_version"), audio_s)
    partial = partial_takes(cfg.takes_dir)
    for q in partial:
        s = {}
        try:
            s = json.loads((q.path / "settings.json").read_text())
        except (OSError, ValueError):
            pass
        s = s if isinstance(s, dict) else {}
        t.add(q.path.name, "recording" if q.alive else "crashed", s.get("score"), q.rows, None, None,
              s.get("model_version"), None if q.input_s is None else round(q.input_s, 3))
        if not q.alive and not q.recoverable:
            t.notes.append(f"{q.path.name}: cannot be recovered: {q.why}")
    if any(q.recoverable for q in partial):
        t.notes.append("crashed takes: rolypoly takes recover --all makes takes of them")
    emit(t, as_json=args.json, extra={"takes_dir": str(cfg.takes_dir)})
    return 0


def takes_recover(args, cfg) -> int:
    from pathlib import Path

    from rolypoly.errors import RolypolyError, TakeError
    from rolypoly.live.takes import load_take, partial_takes, recover_take
    from rolypoly.report import Table, emit
    if bool(args.folder) == bool(args.all):
        raise TakeError("takes recover: give one .partial-* folder, or --all (see: rolypoly takes list)")
    if args.all:
        folders = [q.path for q in partial_takes(cfg.takes_dir)]
    else:
        p = Path(args.folder).expanduser()
        p = p if p.is_dir() else Path(cfg.takes_dir) / args.folder
        if not p.is_dir():
            raise TakeError(f"{args.folder}: no such folder (the crashed takes are listed by: rolypoly takes list)")
        folders = [p]
    t = Table(f"recovered into {cfg.takes_dir}", ["partial", "result", "take", "rows", "onsets", "hits", "audio s",
                                                  "why"], key="recovered")
    failed = 0
    for p in folders:
        try:
            took = load_take(recover_take(p, cfg.takes_dir))
        except RolypolyError as exc:
            if not args.all:
                raise
            skipped = "still running" in str(exc)
            failed += not skipped
            t.add(p.name, "skipped" if skipped else "failed", None, None, None, None, None, str(exc))
            continue
        s = took.settings
        frames, sr = s.get("input_frames"), s.get("sample_rate")
        t.add(p.name, "recovered", str(took.path), took.n_rows, len(took.onsets), len(took.hits),
              round(frames / sr, 3) if frames is not None and sr else None, None)
    if not folders:
        t.notes.append(f"no crashed takes under {cfg.takes_dir}")
    emit(t, as_json=args.json)
    return 2 if failed else 0


def takes_show(args, cfg) -> int:
    import numpy as np

    from rolypoly.live.takes import load_take
    from rolypoly.report import Table, emit
    take = load_take(_resolve_take(cfg, args.take))
    t = Table(f"take {take.path}", ["setting", "value"], key="settings")
    for k, v in take.settings.items():
        t.add(k, v if not isinstance(v, dict) else ", ".join(f"{a}={b}" for a, b in v.items()))
    r = take.rows
    both = r["has_onset"] & (r["real_vel"] > 0).any(1)
    tau_ms = r["tau_g"] * r["bar_ms"]
    t.add("mean tau_g (ms) on matched rows", float(np.mean(tau_ms[r["has_onset"]])) if r["has_onset"].any() else None)
    t.add("rows with drum and onset", int(both.sum()))
    emit(t, as_json=args.json)
    return 0
