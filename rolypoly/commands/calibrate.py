"""``rolypoly calibrate``: measure the round-trip latency with clicks (see :mod:`rolypoly.live.calibrate`)."""
from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser("calibrate", parents=[common], help="measure the audio round trip with clicks; sets latency",
                       description="Play a click every beat through JACK and listen to it come back (a loopback "
                                   "cable, a microphone near the speaker, or --loopback to connect rolypoly's own "
                                   "ports in software); prints the round trip to use as the latency attribute "
                                   "(listen.latency_ms=... or /rolypoly/set latency ...). Example: "
                                   "rolypoly calibrate --loopback --json")
    p.add_argument("--clicks", type=int, default=12, help="clicks to play (default 12)")
    p.add_argument("--loopback", action="store_true", help="connect rolypoly's output to its input inside JACK")
    p.add_argument("--start-jack", action="store_true",
                   help="start a JACK dummy server for the run when none answers (testing without a sound card)")
    p.set_defaults(func=calibrate)


def calibrate(args, cfg) -> int:
    from rolypoly.errors import RolypolyError
    from rolypoly.live.calibrate import calibrate as run
    from rolypoly.live.engine import Rolypoly
    from rolypoly.report import Table, emit
    jack = None
    if args.start_jack:
        from rolypoly.live.jack import start_jack
        jack = start_jack(int(cfg.audio.sample_rate), period=int(cfg.audio.block_frames))
    try:
        if args.clicks < 2:
            raise RolypolyError("calibrate: --clicks must be at least 2")
        eng = Rolypoly(cfg, offline=False)
        res = run(eng, n_clicks=args.clicks, loopback=args.loopback)
    finally:
        if jack is not None:
            jack.terminate()
            jack.wait(5)
    t = Table("latency calibration", ["what", "value"])
    t.add("latency ms (median round trip)", round(res["latency_ms"], 2))
    t.add("spread ms (interquartile)", round(res["spread_ms"], 2))
    t.add("clicks heard", f"{res['heard']} of {res['played']}")
    t.add("detector latency ms (included)", round(res["detector_latency_ms"], 2))
    t.notes.append(f"use it: rolypoly play ... listen.latency_ms={res['latency_ms']:.1f}  "
                   f"or /rolypoly/set latency {res['latency_ms']:.1f}")
    emit(t, as_json=args.json, extra={k: v for k, v in res.items()})
    return 0
