"""Latency calibration: play clicks, listen to them come back, measure the round trip.

With a loopback cable (output into input), a microphone near the speaker, or JACK's
own ports connected back to back (``loopback=True``: the software loopback the tests
use), the engine plays a bar-long click pattern; the listener dates each click it
hears; the *latency* is the median of (heard, before the listener's own compensation)
minus (played).  Setting the engine's ``latency`` attribute to it makes the onsets of
a real musician line up with the drums' clock.

Examples
--------
>>> result = calibrate(engine, loopback=True)       # doctest: +SKIP
>>> result["latency_ms"]                             # doctest: +SKIP
8.0
"""
from __future__ import annotations

import numpy as np

from rolypoly.errors import AudioError

CLICK_DRUM = 1          # the snare: a sharp, broadband click every detector hears


def click_score(n_clicks: int = 12, bpm: float = 120.0):
    """A score of ``n_clicks`` snare hits, one every beat (from a plain groove, everything else removed)."""
    from rolypoly.sim.corpus import groove_score
    bars = max(1, (n_clicks + 1) // 2)
    sc = groove_score(bars, bpm)
    keep = sc.vel[:, CLICK_DRUM] > 0
    sc = sc.copy()
    sc.vel[:] = 0
    sc.vel[keep, CLICK_DRUM] = 110
    return sc


def calibrate(engine, n_clicks: int = 12, loopback: bool = False, timeout_s: float = 30.0, apply: bool = True) -> dict:
    """Play clicks through the engine's JACK driver and measure the round trip (see module docs).

    Returns ``latency_ms`` (median), ``spread_ms`` (interquartile range), the clicks
    ``played`` and ``heard``; with ``apply`` the engine's ``latency`` attribute is set.

    Raises
    ------
    AudioError
        No JACK server, or fewer than half the clicks came back (nothing connected?).
    """
    import time

    from rolypoly.live.drivers import JackDriver, play_realtime
    enable, latency = engine.enable, engine.latency_ms
    engine.enable, engine.latency_ms = False, None     # clicks as written; raw onset times
    drv = JackDriver(engine, client_name="rolypoly-calibrate", connect=not loopback)
    drv.start()
    try:
        if loopback:
            lib = drv.lib
            ctl = engine.stage.ctl
            from rolypoly.live import block as blk
            name_out = lib.jack_port_name(int(ctl[blk.PORT_OUT_L]))
            name_in = lib.jack_port_name(int(ctl[blk.PORT_IN]))
            if lib.jack_connect(drv.client, name_out, name_in) != 0:
                raise AudioError("could not connect rolypoly's output to its input for the software loopback")
        engine.read(click_score(n_clicks))
        t0 = time.monotonic()
        play_realtime(engine, duration_s=timeout_s, driver=drv)
        elapsed = time.monotonic() - t0
    finally:
        drv.close()
        engine.enable = enable
        engine.latency_ms = latency
    played = {h["sample"] for h in engine._hits}
    lst_latency = float(getattr(engine.listener, "latency_s", 0.0))
    heard = []
    sched_rows = engine.score.times_ms
    for o in engine._onsets:
        t_ms = 1000.0 * (o["time_s"] + lst_latency)
        heard.append(t_ms - float(sched_rows[o["row"] % len(sched_rows)]))
    n_played = len(played)
    if len(heard) < max(1, n_played // 2):
        raise AudioError(f"calibrate: heard {len(heard)} of {n_played} clicks in {elapsed:.1f} s: is the output "
                         f"connected to the input (cable, microphone, or --loopback)?")
    heard = np.array(heard)
    lat = float(np.median(heard))
    q75, q25 = np.percentile(heard, [75, 25])
    if apply:
        engine.set("latency", round(max(0.0, lat), 2))
    return {"latency_ms": lat, "spread_ms": float(q75 - q25), "played": n_played, "heard": int(len(heard)),
            "detector_latency_ms": 1000.0 * lst_latency, "per_click_ms": heard.tolist()}
