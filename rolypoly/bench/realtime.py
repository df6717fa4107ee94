"""A real-time duet through PortAudio: xruns, callback time, late rows, model ticks.

Plays a groove score in real time through sounddevice (a JACK server with the dummy
backend stands in for a sound card: the benchmark starts one when none is running),
with a virtual musician's take fed in as the input block by block.
"""
from __future__ import annotations

HELP = "real-time duet via sounddevice/JACK: xruns, callback p99, late rows, tick p99"


def add_arguments(p) -> None:
    p.add_argument("--seconds", type=float, default=300.0, help="duet length in seconds (default 300)")
    p.add_argument("--no-jack", action="store_true", help="use the current default device, do not start JACK")
    p.add_argument("--baseline-seconds", type=float, default=60.0,
                   help="length of the do-nothing stream measured first as the machine's own xrun rate (default 60)")


def empty_callback_xruns(sr: int, block: int, seconds: float) -> tuple[int, int]:
    """Xrun events and blocks of a do-nothing duplex stream: what the machine itself costs."""
    import time

    import sounddevice as sd
    state = {"blocks": 0, "events": 0, "last": -2}

    def callback(indata, outdata, frames, t, status):
        state["blocks"] += 1
        if status.input_overflow or status.output_underflow:
            if state["blocks"] - state["last"] > 1:  # one event may flag consecutive blocks
                state["events"] += 1
            state["last"] = state["blocks"]
        outdata.fill(0)

    with sd.Stream(samplerate=sr, blocksize=block, channels=(1, 2), dtype="float32", callback=callback,
                   latency="low"):
        time.sleep(seconds)
    return state["events"], state["blocks"]


def run(cfg, args):
    import math
    import tempfile
    from pathlib import Path

    import numpy as np

    from rolypoly.live.drivers import play_realtime
    from rolypoly.live.engine import Rolypoly
    from rolypoly.live.jack import start_jack
    from rolypoly.live.takes import late_rows
    from rolypoly.report import Table
    from rolypoly.sim.duet import virtual_take
    from rolypoly.sim.corpus import groove_score
    jack = None if args.no_jack else start_jack(int(cfg.audio.sample_rate))
    if jack is not None:
        import sounddevice as sd
        sd._terminate()
        sd._initialize()  # PortAudio looks for JACK servers when it initialises
    try:
        work = Path(tempfile.mkdtemp(prefix="rolypoly-bench-rt-"))
        bars = max(1, int(math.ceil(args.seconds / 2.0)))  # 120 bpm: 2 s a bar
        score = groove_score(bars, 120.0)
        path = score.write_midi(work / "groove.mid")
        audio, rows, onsets = virtual_take(score, "laid_back", seed=5, sr=int(cfg.audio.sample_rate))
        base_events, base_blocks = empty_callback_xruns(int(cfg.audio.sample_rate), int(cfg.audio.block_frames),
                                                        args.baseline_seconds) if args.baseline_seconds > 0 else (0, 0)
        from rolypoly.config import with_values
        eng = Rolypoly(with_values(cfg, takes_dir=str(work / "takes")), offline=False)
        errors = []
        eng.connect("error", errors.append)
        eng.message("read", str(path))
        stats = play_realtime(eng, duration_s=args.seconds + 3.0, input_audio=audio)
        import json
        settings = json.loads((eng.last_take / "settings.json").read_text()) if eng.last_take else {}
        cb = np.array(stats.callback_ms) if stats.callback_ms else np.zeros(1)
        block_ms = 1000.0 * eng.block_frames / eng.sr
        t = Table("real-time duet", ["metric", "value", "target"])
        t.add("duration s", round(stats.blocks * block_ms / 1000.0, 1), "")
        t.add("blocks", stats.blocks, "")
        minutes = max(stats.blocks * block_ms / 60000.0, 1e-9)
        base_minutes = max(base_blocks * block_ms / 60000.0, 1e-9)
        t.add("xrun events (duet)", stats.xruns, "0")
        t.add("xrun events per minute (duet)", stats.xruns / minutes, "")
        t.add("xrun events per minute (empty callback, same run)", base_events / base_minutes if base_blocks else None,
              "baseline")
        t.add("callback p50 ms", float(np.percentile(cb, 50)), "")
        t.add("callback p99 ms", float(np.percentile(cb, 99)), "")
        t.add("callback p99 / block", float(np.percentile(cb, 99)) / block_ms, "")
        t.add("late rows", settings.get("late_rows"), "0")
        late_at = late_rows(eng.last_take)
        if late_at:
            # which rows: the first rows (before the first tick) and a stalled worker look different
            t.notes.append("late rows (k, time s): " + ", ".join(f"{k} at {ms / 1000.0:.1f}" for k, ms in late_at[:10]))
        t.add("rows played", settings.get("rows_played"), "")
        t.add("onsets matched", settings.get("onsets"), f"of {len(rows)} played")
        t.add("model tick p50 ms", settings.get("tick_ms_p50"), "")
        t.add("model tick p99 ms", settings.get("tick_ms_p99"), "")
        t.add("lookahead ms (effective)", settings.get("lookahead_effective_ms"), "")
        t.notes.append(f"block {eng.block_frames} frames at {eng.sr} Hz ({block_ms:.2f} ms); device: "
                       f"{'JACK dummy started by the bench, ' + ('real-time' if getattr(jack, 'realtime', False) else 'not real-time') if jack else 'existing server/default device'}")
        t.notes.append("an xrun event = PortAudio flagging input overflow/output underflow (consecutive flagged blocks "
                       "count once); the empty-callback stream shows what the machine and server cost without rolypoly")
        if errors:
            t.notes.append(f"errors: {errors[:3]}")
        return [t], {"xruns": stats.xruns, "xruns_empty_callback": base_events, "late_rows": settings.get("late_rows"),
                     "late_rows_at": [{"k": k, "time_ms": ms} for k, ms in late_at],
                     "callback_p99_share": float(np.percentile(cb, 99)) / block_ms}
    finally:
        if jack is not None:
            import sounddevice as sd
            sd._terminate()  # let go of JACK before the server goes away
            jack.terminate()
            jack.wait(5)
