"""``rolypoly onsets`` and ``rolypoly soundcheck``: the listener from the command line."""
from __future__ import annotations

import json
import warnings

from rolypoly.errors import AudioError
from rolypoly.io import atomic_path, read_audio


def register(sub, common) -> None:
    p = sub.add_parser(
        "onsets", parents=[common],
        help="print the onset times the listener hears in a recording",
        description="Run the live engine's listener (same detector, same settings: the listen.* config) "
                    "over a recording and print the latency-compensated onset times in seconds. "
                    "Example: rolypoly onsets take.wav listen.method=hfc --json")
    p.add_argument("audio", help="audio file (wav, flac, ...); any channel count; resampled to "
                                 "sample_rate when it differs")
    p.set_defaults(func=_onsets)

    s = sub.add_parser(
        "soundcheck", parents=[common],
        help="listen to the musician for a few seconds and choose listener settings",
        description="Sound check: from a recording (--input) or the live input device, measure the "
                    "player's level and the room, and choose the listener's trim, silence floor and "
                    "threshold, starting from an instrument preset. Prints the settings as listen.* "
                    "overrides; --out saves them as JSON (the engine stores them with each take).")
    s.add_argument("--input", default=None, help="a recording of the musician; default: record from "
                                                 "the input device (config key device)")
    s.add_argument("--instrument", default=None,
                   help="preset to start from: guitar, bass, keys, voice, wind, percussion "
                        "(default: config listen.instrument)")
    s.add_argument("--seconds", type=float, default=6.0, help="how long to listen live (default 6)")
    s.add_argument("--out", default=None, help="write the chosen settings to this JSON file (.json)")
    s.add_argument("--force", action="store_true", help="replace --out when it exists")
    s.set_defaults(func=_soundcheck)


def _warn_to_stderr():
    import sys

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"rolypoly: warning: {message}", file=sys.stderr)
    warnings.showwarning = show


def _onsets(args, cfg):
    from rolypoly.ears.listener import Listener, detect_onsets
    _warn_to_stderr()
    sr = int(cfg.audio.sample_rate)
    x = read_audio(args.audio, sr)
    lis = Listener.from_config(cfg.listen, sr)
    times = detect_onsets(x, sr, lis.hop, block=int(cfg.audio.block_frames), listener=lis)
    if args.json:
        print(json.dumps({"audio": args.audio, "onsets_s": [round(float(t), 5) for t in times],
                          "settings": lis.settings}, indent=1))
    else:
        print(f"# {len(times)} onsets in {args.audio} ({x.size / sr:.2f} s), method {lis.settings['method']}, "
              f"latency compensation {lis.latency_s * 1000:.2f} ms")
        for t in times:
            print(f"{t:.4f}")
    return 0


def _record(cfg, seconds: float):
    import numpy as np
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise AudioError(f"soundcheck: no audio input available ({exc}); use --input FILE") from None
    sr = int(cfg.audio.sample_rate)
    try:
        x = sd.rec(int(seconds * sr), samplerate=sr, channels=int(cfg.audio.input_channels), dtype="float32",
                   device=cfg.audio.device)
        sd.wait()
    except Exception as exc:  # PortAudio reports device problems with its own types
        raise AudioError(f"soundcheck: cannot record from input device {cfg.audio.device!r}: {exc}") from None
    return np.asarray(x)


def _soundcheck(args, cfg):
    from rolypoly.ears.listener import soundcheck
    _warn_to_stderr()
    sr = int(cfg.audio.sample_rate)
    if not (0 < args.seconds <= 600):
        raise AudioError("soundcheck: --seconds must be in (0, 600]")
    if args.out:
        from rolypoly.io import check_output
        args.out = check_output(args.out, args.force, suffixes=(".json",), what="--out")
    x = read_audio(args.input, sr) if args.input else _record(cfg, args.seconds)
    instrument = args.instrument or cfg.listen.get("instrument")
    settings = soundcheck(x, sr, instrument=instrument, hop=int(cfg.listen.hop))
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(settings, indent=1))
    if args.json:
        print(json.dumps(settings, indent=1))
    else:
        print(f"sound check ({instrument or 'no preset'}): use these overrides")
        print(" ".join(f"listen.{k}={v}" for k, v in settings.items() if v is not None and k != "method"))
    return 0
