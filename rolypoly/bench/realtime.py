"""The real-time duet against a JACK dummy server: xruns, callback time, late rows, start latency.

One run measures three phases on the same server (``jackd -R -d dummy -r 48000 -p 128``,
started here when none answers):

(a) a C client doing nothing but copying its input (``jack_thru`` from jackd2's
    examples; compiled here with gcc when that is missing): what the machine and the
    server cost on their own;
(b) the duet: a groove score with a virtual musician fed in, the model ticking, the
    drums synthesised in the compiled JACK callback;
(c) the duet while another thread of this process holds the GIL for about 200 ms
    every 0.5 s (one ``json.dumps`` of a long take's hit list).

Xruns are the server's (JACK's xrun callback), counted by a client of ours in every
phase.  Callback durations are measured inside the compiled callback (JACK's
microsecond clock) into a histogram.
"""
from __future__ import annotations

HELP = "real-time duet on a JACK dummy server: a C client, the duet, the duet with a GIL-holding thread"

C_CLIENT = r"""
#include <jack/jack.h>
#include <string.h>
#include <unistd.h>
static jack_port_t *in, *out;
static int process(jack_nframes_t n, void *arg) {
    memcpy(jack_port_get_buffer(out, n), jack_port_get_buffer(in, n), n * sizeof(float));
    return 0;
}
int main(void) {
    jack_client_t *c = jack_client_open("rolypoly-c-baseline", JackNoStartServer, 0);
    if (!c) return 1;
    in = jack_port_register(c, "in", JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    out = jack_port_register(c, "out", JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, 0);
    jack_set_process_callback(c, process, 0);
    if (jack_activate(c)) return 1;
    for (;;) sleep(1);
}
"""


def add_arguments(p) -> None:
    p.add_argument("--seconds", type=float, default=300.0, help="length of each phase in seconds (default 300)")
    p.add_argument("--phases", default="abc", help="which phases to run: any of a, b, c (default abc)")
    p.add_argument("--hold-ms", type=float, default=200.0, help="GIL hold of phase (c) in ms (default 200)")
    p.add_argument("--every-s", type=float, default=0.5, help="period of the GIL hold in s (default 0.5)")


def _c_client(work):
    """A command line for a do-nothing C JACK client: jack_thru, else one compiled here."""
    import shutil
    import subprocess
    if shutil.which("jack_thru"):
        return ["jack_thru"], "jack_thru (jackd2 example client)"
    src = work / "baseline.c"
    src.write_text(C_CLIENT)
    exe = work / "baseline"
    r = subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), "-ljack"], capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"no C client: gcc failed ({r.stderr.strip()[:200]})"
    return [str(exe)], "C client compiled with gcc"


class XrunMonitor:
    """A JACK client of ours that only counts the server's xruns (compiled callback)."""

    def __init__(self):
        import ctypes

        import numpy as np

        from rolypoly.live import block as blk
        from rolypoly.live.drivers import _JACK_NO_START_SERVER, _libjack
        self.lib = _libjack()
        self.ctl = np.zeros(blk.N_CTL, np.int64)
        _, xrun, _ = blk.jack_callbacks()
        status = ctypes.c_int(0)
        self.client = self.lib.jack_client_open(b"rolypoly-xrun-monitor", _JACK_NO_START_SERVER, ctypes.byref(status))
        if not self.client:
            from rolypoly.errors import AudioError
            raise AudioError("no JACK server answers for the xrun monitor")
        self.lib.jack_set_xrun_callback(self.client, xrun.address, ctypes.c_void_p(self.ctl.ctypes.data))
        self.lib.jack_activate(self.client)

    @property
    def xruns(self) -> int:
        from rolypoly.live import block as blk
        return int(self.ctl[blk.XRUNS])

    def close(self) -> None:
        self.lib.jack_deactivate(self.client)
        self.lib.jack_client_close(self.client)


class GilHog:
    """A thread that holds the GIL with one C call (``json.dumps``) of about ``hold_ms`` every ``every_s``."""

    def __init__(self, hold_ms: float, every_s: float):
        import json
        import threading
        import time
        self.every_s = float(every_s)
        n = 20000
        while True:  # size the list so one dump takes the hold asked for
            data = [{"sample": i * 100, "drum": i % 9, "velocity": 90, "offset_ms": 1.25} for i in range(n)]
            t0 = time.perf_counter()
            json.dumps(data)
            dt = 1000.0 * (time.perf_counter() - t0)
            if dt >= 0.8 * hold_ms or n > 5_000_000:
                break
            n = int(n * min(8.0, max(1.2, hold_ms / max(dt, 1e-3))))
        self.data, self.n = data, n
        self.holds_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gil-hog", daemon=True)

    def _run(self) -> None:
        import json
        import time
        while not self._stop.wait(self.every_s):
            t0 = time.perf_counter()
            json.dumps(self.data)
            self.holds_ms.append(1000.0 * (time.perf_counter() - t0))

    def start(self) -> "GilHog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _duet(cfg, work, seconds: float, hog=None) -> dict:
    import numpy as np

    from rolypoly.config import with_values
    from rolypoly.live.drivers import JackDriver, play_realtime
    from rolypoly.live.engine import Rolypoly
    from rolypoly.live.takes import late_rows, load_take
    from rolypoly.sim.corpus import groove_score
    from rolypoly.sim.duet import virtual_take
    import math
    bars = max(1, int(math.ceil(seconds / 2.0)))  # 120 bpm: 2 s a bar
    score = groove_score(bars, 120.0)
    path = score.write_midi(work / f"groove-{bars}.mid")
    audio, rows, _ = virtual_take(score, "laid_back", seed=5, sr=int(cfg.audio.sample_rate))
    eng = Rolypoly(with_values(cfg, takes_dir=str(work / "takes")), offline=False)
    errors = []
    eng.connect("error", errors.append)
    if not eng.message("read", str(path)):
        raise RuntimeError("; ".join(eng.last_errors()))
    drv = JackDriver(eng, input_audio=audio, client_name="rolypoly-bench").start()
    if hog is not None:
        hog.start()
    try:
        stats = play_realtime(eng, duration_s=seconds + 3.0, driver=drv)
    finally:
        if hog is not None:
            hog.stop()
        drv.close()
    take = load_take(eng.last_take)
    s = take.settings
    block_ms = 1000.0 * eng.block_frames / eng.sr
    minutes = max(stats.blocks * block_ms / 60000.0, 1e-9)
    late_at = late_rows(eng.last_take)
    out = {"seconds": round(stats.blocks * block_ms / 1000.0, 1), "xruns": stats.xruns,
           "xruns_per_minute": stats.xruns / minutes,
           "callback_p50_share": stats.callback_p.get(50, 0.0) / block_ms,
           "callback_p99_share": stats.callback_p.get(99, 0.0) / block_ms,
           "callback_p99_ms": stats.callback_p.get(99, 0.0),
           "blocks_delivered": stats.blocks, "blocks_due": stats.blocks_due,
           "late_rows": s.get("late_rows"), "early_rows": s.get("early_rows"), "late_rows_at": [{"k": k, "time_ms": ms} for k, ms in late_at[:20]],
           "rows_played": s.get("rows_played"), "onsets_matched": s.get("onsets"), "onsets_played": len(rows),
           "tick_ms_p50": s.get("tick_ms_p50"), "tick_ms_p99": s.get("tick_ms_p99"),
           "lookahead_ms": s.get("lookahead_ms"), "lookahead_effective_ms": s.get("lookahead_effective_ms"),
           "start_to_first_hit_ms": stats.first_hit_ms, "model_version": s.get("model_version"),
           "model_step": s.get("model_step"), "outlets_dropped": s.get("outlets_dropped"),
           "errors": errors[:3]}
    if hog is not None:
        h = np.array(hog.holds_ms) if hog.holds_ms else np.zeros(1)
        out.update({"gil_holds": len(hog.holds_ms), "gil_hold_ms_median": float(np.median(h)),
                    "gil_hold_ms_max": float(h.max())})
    return out


def _baseline(work, seconds: float) -> dict:
    import subprocess
    import time
    cmd, what = _c_client(work)
    if cmd is None:
        return {"client": what}
    mon = XrunMonitor()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        x0 = mon.xruns
        time.sleep(seconds)
        xr = mon.xruns - x0
    finally:
        proc.terminate()
        proc.wait(5)
        mon.close()
    return {"client": what, "seconds": seconds, "xruns": xr, "xruns_per_minute": xr / (seconds / 60.0),
            "alive": proc.returncode in (None, -15, 0)}


def run(cfg, args):
    import os
    import tempfile
    from pathlib import Path

    from rolypoly.live.jack import start_jack
    from rolypoly.report import Table
    sr, period = int(cfg.audio.sample_rate), int(cfg.audio.block_frames)
    jack = start_jack(sr, period=period)
    work = Path(tempfile.mkdtemp(prefix="rolypoly-bench-rt-"))
    res: dict = {"block_frames": period, "sample_rate": sr, "block_ms": 1000.0 * period / sr,
                 "jack": ("started by the bench, " + ("real-time" if getattr(jack, "realtime", False) else
                          "not real-time")) if jack else "an existing server", "cpu_count": os.cpu_count()}
    try:
        if "a" in args.phases:
            res["a_c_client"] = _baseline(work, args.seconds)
        if "b" in args.phases:
            res["b_duet"] = _duet(cfg, work, args.seconds)
        if "c" in args.phases:
            hog = GilHog(args.hold_ms, args.every_s)
            res["c_duet_gil_held"] = _duet(cfg, work, args.seconds, hog=hog)
    finally:
        if jack is not None:
            jack.terminate()
            jack.wait(5)
    t = Table("real-time duet on the JACK dummy server", ["metric", "(a) C client", "(b) duet", "(c) duet + GIL held",
                                                          "target"])
    a, b, c = res.get("a_c_client", {}), res.get("b_duet", {}), res.get("c_duet_gil_held", {})

    def row(name, key, target="", fmt=None):
        vals = [d.get(key) for d in (a, b, c)]
        if fmt:
            vals = [None if v is None else fmt(v) for v in vals]
        t.add(name, *vals, target)

    row("seconds", "seconds")
    row("xruns", "xruns", "0 in (b), (c)")
    row("xruns per minute", "xruns_per_minute", "within 1/min of (a)", lambda v: round(v, 2))
    row("callback p50 / block", "callback_p50_share", "", lambda v: round(v, 4))
    row("callback p99 / block", "callback_p99_share", "< 0.10", lambda v: round(v, 4))
    row("blocks delivered", "blocks_delivered")
    row("blocks due", "blocks_due")
    row("late rows", "late_rows", "0")
    row("rows on their early prediction", "early_rows", "")
    row("model tick p99 ms", "tick_ms_p99", "", lambda v: round(v, 2))
    row("lookahead ms (set, effective)", "lookahead_ms")
    row("lookahead effective ms", "lookahead_effective_ms", "", lambda v: round(v, 1))
    row("start to first hit ms", "start_to_first_hit_ms", "< one block + lookahead", lambda v: round(v, 2))
    row("onsets matched", "onsets_matched")
    t.notes.append(f"block {period} frames at {sr} Hz ({res['block_ms']:.2f} ms); JACK {res['jack']}; "
                   f"(a) {a.get('client', 'not run')}")
    if c:
        t.notes.append(f"(c): {c.get('gil_holds')} GIL holds, median {c.get('gil_hold_ms_median', 0):.0f} ms, "
                       f"max {c.get('gil_hold_ms_max', 0):.0f} ms")
    for name, d in (("b", b), ("c", c)):
        if d.get("late_rows_at"):
            t.notes.append(f"({name}) late rows (k, s): " + ", ".join(f"{x['k']} at {x['time_ms'] / 1000:.1f}"
                                                                     for x in d["late_rows_at"][:8]))
        if d.get("errors"):
            t.notes.append(f"({name}) errors: {d['errors']}")
    return [t], res
