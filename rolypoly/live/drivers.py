"""Audio drivers over the one engine: offline (files) and real time (sounddevice).

Both call :meth:`rolypoly.live.engine.Rolypoly.process` once per block.  The real-time
callback follows python-sounddevice's contract: ``callback(indata, outdata, frames,
time, status)`` on PortAudio's thread, which must return quickly; it only copies, calls
``engine.process`` and counts xruns.  Everything else (model ticks, outlets, file
writing) happens on other threads.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rolypoly.errors import AudioError

TAIL_S = 2.0
STALL_S = 1.0   # no audio block for this long while playing: the device is gone


@dataclass
class OfflineResult:
    drums: np.ndarray            # (n, 2) float32
    mix: np.ndarray              # (n, 2) float32: drums + input in the middle
    take_dir: Path | None
    late_rows: int
    rows: int
    onsets: int
    seconds: float               # wall time of the run
    hits: list = field(default_factory=list)


def perform_offline(engine, input_audio: np.ndarray | None = None, tail_s: float = TAIL_S) -> OfflineResult:
    """Run a whole take block by block from a recorded input (or silence).

    Deterministic: the model ticks inline, so the same inputs give the same output.
    The engine must be ``offline=True`` with a score read.
    """
    if not engine.offline:
        raise AudioError("perform_offline needs an engine created with offline=True")
    sr, B = engine.sr, engine.block_frames
    t0 = time.perf_counter()
    if not engine.message("start"):
        raise AudioError("could not start: " + "; ".join(str(e) for e in engine.last_errors()))
    sched = engine.schedule
    length = int(sched.length_samples)
    n_in = 0 if input_audio is None else len(input_audio)
    total = max(length, n_in) + int(tail_s * sr)
    total = (total + B - 1) // B * B
    drums = np.zeros((total, 2), dtype=np.float32)
    inp = np.zeros(B, dtype=np.float32)
    out = np.zeros((B, 2), dtype=np.float32)
    for b0 in range(0, total, B):
        inp.fill(0.0)
        if input_audio is not None and b0 < n_in:
            seg = input_audio[b0:b0 + B]
            inp[:len(seg)] = seg
        engine.process(inp, out)
        drums[b0:b0 + B] = out
        engine.pump()
        if engine.loop and b0 >= n_in and b0 >= length:
            break
    hits = list(engine._hits)
    sched = engine.schedule
    late, rows = (sched.late_rows, sched.next_commit) if sched is not None else (0, 0)
    engine.message("stop")
    mix = drums.copy()
    if input_audio is not None:
        n = min(len(input_audio), total)
        mix[:n] += input_audio[:n, None]
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 0.99:  # keep the mix from clipping; the drums file keeps its own level
        mix *= 0.99 / peak
    return OfflineResult(drums, mix, engine.last_take, late, rows, len(engine._onsets), time.perf_counter() - t0, hits)


@dataclass
class RealtimeStats:
    xruns: int = 0
    blocks: int = 0
    callback_ms: list = field(default_factory=list)
    status: list = field(default_factory=list)


def play_realtime(engine, duration_s: float | None = None, stats: RealtimeStats | None = None,
                  input_channels: int | None = None, on_block=None,
                  input_audio: np.ndarray | None = None) -> RealtimeStats:
    """Play the loaded score through a sounddevice duplex stream until its end, ``duration_s`` or Ctrl-C.

    ``input_audio`` (mono float32) replaces what the device captures, block by block: a
    recorded or virtual musician heard in real time (benchmarks and tests).
    The take is saved in every case (end, interruption, device failure).
    """
    import sounddevice as sd
    cfg = engine.cfg
    stats = stats or RealtimeStats()
    B = engine.block_frames
    in_ch = int(input_channels or cfg.audio.input_channels)
    cb_ms = np.zeros(1_000_000, dtype=np.float64)
    n_cb = [0]
    perf = time.perf_counter
    inject = None
    if input_audio is not None:  # padded to whole blocks so the callback only slices
        n = (len(input_audio) + B - 1) // B * B + B
        inject = np.zeros(n, dtype=np.float32)
        inject[:len(input_audio)] = input_audio
    pos = [0]
    last_flag = [-2]

    def callback(indata, outdata, frames, t, status):
        t0 = perf()
        if status.input_overflow or status.output_underflow:
            if n_cb[0] - last_flag[0] > 1:  # one xrun may flag consecutive blocks: count it once
                stats.xruns += 1
            last_flag[0] = n_cb[0]
        if frames != B:  # PortAudio may hand an odd block: render silence rather than misalign
            outdata.fill(0)
            return
        if inject is not None:
            p = pos[0]
            block = inject[p:p + B] if p + B <= inject.shape[0] else inject[-B:]
            pos[0] = p + B
            engine.process(block, outdata)
        else:
            engine.process(indata[:, 0], outdata)
        i = n_cb[0]
        if i < cb_ms.shape[0]:
            cb_ms[i] = (perf() - t0) * 1000.0
            n_cb[0] = i + 1

    try:
        stream = sd.Stream(samplerate=engine.sr, blocksize=B, device=engine.device,
                           channels=(in_ch, 2), dtype="float32", callback=callback, latency="low")
    except Exception as exc:
        raise AudioError(f"cannot open audio device {engine.device!r}: {exc}") from None
    import sys
    # The audio callback needs the GIL promptly: the default 5 ms switch interval is
    # longer than a 128-frame block.
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    if not engine.message("start"):
        sys.setswitchinterval(old_switch)
        raise AudioError("could not start the performance")
    t_start = time.monotonic()
    last_n, last_progress = 0, time.monotonic()
    started = False
    try:
        stream.start()
        started = True
        while engine.playing:
            time.sleep(0.02)
            if on_block is not None:
                on_block()
            now = time.monotonic()
            if duration_s is not None and now - t_start >= duration_s:
                break
            if n_cb[0] != last_n:
                last_n, last_progress = n_cb[0], now
            if not stream.active or now - last_progress > STALL_S:
                engine.emit("error", "audio device stopped delivering audio; the take so far is saved")
                break
    except KeyboardInterrupt:
        engine.status("interrupted")
    except Exception as exc:  # a device that disappears mid-take
        engine.emit("error", f"audio device failed: {exc}")
    finally:
        engine.message("stop")  # saves the take before touching the device again
        sys.setswitchinterval(old_switch)
        if started:  # PortAudio's JACK layer asserts when closing a stream that never started
            _close_quietly(stream)
    stats.blocks = n_cb[0]
    stats.callback_ms = cb_ms[:n_cb[0]].tolist()
    return stats


def _close_quietly(stream, timeout_s: float = 2.0) -> None:
    """Close a stream without hanging: PortAudio can block forever on a device that vanished."""
    import threading

    def close():
        try:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        except Exception:
            pass

    t = threading.Thread(target=close, name="rolypoly-close-stream", daemon=True)
    t.start()
    t.join(timeout_s)
