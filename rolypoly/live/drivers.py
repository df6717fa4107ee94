"""Audio drivers: the one place that runs the engine's block, for every command.

* :func:`perform_offline` — files in, files out, block by block, deterministic;
* :class:`JackDriver` — a JACK client whose process callback is compiled code (a numba
  ``cfunc`` running :func:`rolypoly.live.block.run_block`): no Python and no GIL per
  block, so nothing another thread does can delay the audio;
* :class:`PortAudioDriver` — a PortAudio stream (sound cards outside JACK) whose
  callback is a compiled ``cfunc`` too, opened through sounddevice's PortAudio binding;
* :class:`ClockDriver` — no sound at all: a thread runs the block at the block rate
  (``serve osc.audio=off``: the patch plays its own sounds from the hits).

Every real-time driver counts xruns once per event, notices a device that stops
delivering blocks (stall) or a server that shuts down, and closes without hanging;
:func:`play_realtime` is the loop ``play``, ``serve`` and the benchmarks share.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rolypoly.errors import AudioError
from rolypoly.live import block as blk

TAIL_S = 2.0
STALL_S = 1.0   # no audio block for this long while running: the device is gone


# -- offline ------------------------------------------------------------------------------------------
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

    Deterministic: the model ticks inline with the configured lookahead, so the same
    inputs give the same output however busy the machine is.  The engine must be
    ``offline=True`` with a score read.
    """
    if not engine.offline:
        raise AudioError("perform_offline needs an engine created with offline=True")
    sr, B = engine.sr, engine.block_frames
    t0 = time.perf_counter()
    if not engine.message("start"):
        raise AudioError("could not start: " + "; ".join(str(e) for e in engine.last_errors()))
    sched = engine.schedule
    length = int(sched.length_samples) + max(0, -sched.sample)
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
    late, rows = sched.late_rows, sched.next_commit
    engine.message("stop")
    hits = list(engine._hits)
    mix = drums.copy()
    if input_audio is not None:
        n = min(len(input_audio), total)
        mix[:n] += input_audio[:n, None]
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 0.99:  # keep the mix from clipping; the drums file keeps its own level
        mix *= 0.99 / peak
    return OfflineResult(drums, mix, engine.last_take, late, rows, len(engine._onsets), time.perf_counter() - t0, hits)


# -- real time ----------------------------------------------------------------------------------------
@dataclass
class RealtimeStats:
    xruns: int = 0
    blocks: int = 0
    blocks_due: int = 0
    callback_ms: list = field(default_factory=list)     # PortAudio: per block; JACK: see callback_p
    callback_p: dict = field(default_factory=dict)      # percentile -> ms
    first_hit_ms: float | None = None                   # start message to the first hit's sample leaving
    driver: str = ""
    status: list = field(default_factory=list)


class _Driver:
    """What every real-time driver shares: counting, stall detection, clean shutdown."""

    name = "driver"

    def __init__(self, engine):
        self.engine = engine
        self.running = False
        self.t_start = 0.0
        self._last_blocks = 0
        self._last_progress = 0.0

    @property
    def blocks(self) -> int:
        return int(self.engine.stage.ctl[blk.BLOCKS]) - self._blocks0

    @property
    def xruns(self) -> int:
        return int(self.engine.stage.ctl[blk.XRUNS]) - self._xruns0

    def _mark(self) -> None:
        ctl = self.engine.stage.ctl
        self._blocks0 = int(ctl[blk.BLOCKS])
        self._xruns0 = int(ctl[blk.XRUNS])
        self.engine.stage.hist[:] = 0
        self.t_start = self._last_progress = time.monotonic()
        self._last_blocks = 0

    def problem(self) -> str | None:
        """Why the device can no longer play (None while it is fine)."""
        now = time.monotonic()
        b = self.blocks
        if b != self._last_blocks:
            self._last_blocks, self._last_progress = b, now
        if now - self._last_progress > STALL_S:
            return "audio device stopped delivering audio"
        return None

    def blocks_due(self) -> int:
        eng = self.engine
        return int((time.monotonic() - self.t_start) * eng.sr / eng.block_frames)

    def callback_percentiles(self) -> dict:
        st = self.engine.stage
        return {q: (st.callback_us(q) or 0.0) / 1000.0 for q in (50, 99, 99.9)}


# -- JACK ---------------------------------------------------------------------------------------------
_JACK_NO_START_SERVER = 0x01
_PORT_IS_INPUT, _PORT_IS_OUTPUT, _PORT_IS_PHYSICAL = 0x1, 0x2, 0x4
_AUDIO_TYPE = b"32 bit float mono audio"


def _libjack():
    path = ctypes.util.find_library("jack") or "libjack.so.0"
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise AudioError(f"libjack not found ({exc}): install JACK (Debian: jackd2)") from None
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    sig = {"jack_client_open": (vp, [cp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]),
           "jack_client_close": (ctypes.c_int, [vp]), "jack_activate": (ctypes.c_int, [vp]),
           "jack_deactivate": (ctypes.c_int, [vp]),
           "jack_port_register": (vp, [vp, cp, cp, ctypes.c_ulong, ctypes.c_ulong]),
           "jack_set_process_callback": (ctypes.c_int, [vp, vp, vp]),
           "jack_set_xrun_callback": (ctypes.c_int, [vp, vp, vp]),
           "jack_on_shutdown": (None, [vp, vp, vp]),
           "jack_get_sample_rate": (ctypes.c_uint32, [vp]), "jack_get_buffer_size": (ctypes.c_uint32, [vp]),
           "jack_port_name": (cp, [vp]), "jack_connect": (ctypes.c_int, [vp, cp, cp]),
           "jack_get_ports": (ctypes.POINTER(cp), [vp, cp, cp, ctypes.c_ulong]), "jack_free": (None, [vp]),
           "jack_get_time": (ctypes.c_uint64, [])}
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


def jack_running() -> bool:
    """Does a JACK server answer (without starting one)?"""
    try:
        lib = _libjack()
    except AudioError:
        return False
    status = ctypes.c_int(0)
    client = lib.jack_client_open(b"rolypoly-probe", _JACK_NO_START_SERVER, ctypes.byref(status))
    if not client:
        return False
    lib.jack_client_close(client)
    return True


class JackDriver(_Driver):
    """A JACK client whose process callback is compiled (see module docs).

    Ports: ``in`` (mono), ``out_l``/``out_r``; connected to the first physical capture
    and playback ports when there are any.  ``input_audio`` replaces what the ``in``
    port hears, from the take's first block on (a recorded or virtual musician).
    """

    name = "jack"

    def __init__(self, engine, input_audio: np.ndarray | None = None, client_name: str = "rolypoly",
                 connect: bool = True):
        super().__init__(engine)
        engine._ensure_stage()
        self.lib = _libjack()
        self.process_cb, self.xrun_cb, self.shutdown_cb = blk.jack_callbacks()
        self.client_name = client_name
        self.connect = connect
        self.client = None
        self._inject = None
        if input_audio is not None:
            self._inject = np.ascontiguousarray(input_audio, dtype=np.float32)

    def start(self) -> "JackDriver":
        eng, lib = self.engine, self.lib
        status = ctypes.c_int(0)
        client = lib.jack_client_open(self.client_name.encode(), _JACK_NO_START_SERVER, ctypes.byref(status))
        if not client:
            raise AudioError(f"no JACK server answers (status 0x{status.value:x}): start one (e.g. "
                             f"jackd -d dummy -r {eng.sr} -p {eng.block_frames}) or choose another device")
        self.client = client
        sr, period = lib.jack_get_sample_rate(client), lib.jack_get_buffer_size(client)
        stage = eng.stage
        if sr != eng.sr:
            self._close_client()
            raise AudioError(f"the JACK server runs at {sr} Hz, rolypoly at {eng.sr} Hz: set audio.sample_rate={sr}")
        if period > stage.max_block:
            self._close_client()
            raise AudioError(f"JACK period {period} frames is longer than {stage.max_block}")
        if period != eng.block_frames:
            eng.status(f"JACK period is {period} frames (audio.block_frames {eng.block_frames})")
        ports = [lib.jack_port_register(client, n, _AUDIO_TYPE, flag, 0)
                 for n, flag in ((b"in", _PORT_IS_INPUT), (b"out_l", _PORT_IS_OUTPUT), (b"out_r", _PORT_IS_OUTPUT))]
        if not all(ports):
            self._close_client()
            raise AudioError("JACK refused to register rolypoly's ports")
        ctl = stage.ctl
        ctl[blk.PORT_IN], ctl[blk.PORT_OUT_L], ctl[blk.PORT_OUT_R] = ports
        if self._inject is not None:
            ctl[blk.INJECT_LEN] = len(self._inject)
            ctl[blk.INJECT_ADDR] = self._inject.ctypes.data
        else:
            ctl[blk.INJECT_ADDR] = 0
        arg = ctypes.c_void_p(ctl.ctypes.data)
        lib.jack_set_process_callback(client, self.process_cb.address, arg)
        lib.jack_set_xrun_callback(client, self.xrun_cb.address, arg)
        lib.jack_on_shutdown(client, self.shutdown_cb.address, arg)
        ctl[blk.SHUTDOWN] = 0
        self._mark()
        if lib.jack_activate(client) != 0:
            self._close_client()
            raise AudioError("JACK did not activate the rolypoly client")
        self.running = True
        eng.driver = self
        if self.connect:
            self._connect(ports)
        return self

    def _connect(self, ports) -> None:
        lib = self.lib

        def physical(flags):
            arr = lib.jack_get_ports(self.client, None, _AUDIO_TYPE, flags | _PORT_IS_PHYSICAL)
            names = []
            if arr:
                i = 0
                while arr[i]:
                    names.append(arr[i])
                    i += 1
                lib.jack_free(ctypes.cast(arr, ctypes.c_void_p))
            return names

        caps, plays = physical(_PORT_IS_OUTPUT), physical(_PORT_IS_INPUT)
        if caps:
            lib.jack_connect(self.client, caps[0], lib.jack_port_name(ports[0]))
        for port, dst in zip(ports[1:], plays[:2]):
            lib.jack_connect(self.client, lib.jack_port_name(port), dst)

    def problem(self) -> str | None:
        if self.engine.stage.ctl[blk.SHUTDOWN]:
            return "the JACK server shut down"
        return super().problem()

    def callback_percentiles(self) -> dict:
        return super().callback_percentiles()

    def _close_client(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        lib = self.lib
        gone = bool(self.engine.stage.ctl[blk.SHUTDOWN])

        def close():
            if not gone:
                lib.jack_deactivate(client)
            lib.jack_client_close(client)

        t = threading.Thread(target=close, name="rolypoly-jack-close", daemon=True)
        t.start()
        t.join(2.0)   # a vanished server can make these block: never hang the caller

    def close(self) -> None:
        self.running = False
        self._close_client()
        if self.engine.driver is self:
            self.engine.driver = None
        ctl = self.engine.stage.ctl
        ctl[blk.INJECT_ADDR] = 0


# -- PortAudio (sounddevice's library) -------------------------------------------------------------
class PortAudioDriver(_Driver):
    """A PortAudio duplex stream whose callback is compiled too (see module docs).

    The stream is opened through sounddevice's own PortAudio binding (``Pa_OpenStream``)
    with a numba ``cfunc`` as the stream callback, so a sound card outside JACK gets the
    same GIL-free block.  ``input_audio`` replaces the captured input as for JACK.
    """

    name = "portaudio"

    def __init__(self, engine, input_audio: np.ndarray | None = None, input_channels: int | None = None):
        super().__init__(engine)
        engine._ensure_stage()
        self.in_ch = int(input_channels or engine.cfg.audio.input_channels)
        self.stream = None
        self._keep = []
        self._inject = None if input_audio is None else np.ascontiguousarray(input_audio, dtype=np.float32)

    def start(self) -> "PortAudioDriver":
        import sounddevice as sd
        eng = self.engine
        ffi, lib = sd._ffi, sd._lib
        cb = blk.portaudio_callback()
        try:
            dev_in = sd.query_devices(eng.device, "input")
            dev_out = sd.query_devices(eng.device, "output")
        except Exception as exc:
            raise AudioError(f"cannot open audio device {eng.device!r}: {exc}") from None
        in_ch = min(self.in_ch, int(dev_in["max_input_channels"]))
        params = []
        for dev, ch in ((dev_in, in_ch), (dev_out, 2)):
            prm = ffi.new("PaStreamParameters*")
            prm.device = int(dev["index"])
            prm.channelCount = ch
            prm.sampleFormat = lib.paFloat32
            prm.suggestedLatency = float(dev["default_low_input_latency" if dev is dev_in else
                                             "default_low_output_latency"])
            prm.hostApiSpecificStreamInfo = ffi.NULL
            params.append(prm)
        ctl = eng.stage.ctl
        ctl[blk.PA_IN_CH] = in_ch
        if self._inject is not None:
            ctl[blk.INJECT_LEN] = len(self._inject)
            ctl[blk.INJECT_ADDR] = self._inject.ctypes.data
        else:
            ctl[blk.INJECT_ADDR] = 0
        stream = ffi.new("PaStream**")
        c_cb = ffi.cast("PaStreamCallback *", cb.address)
        user = ffi.cast("void *", ctl.ctypes.data)
        self._keep = [params, stream, c_cb, user]
        err = lib.Pa_OpenStream(stream, params[0] if in_ch > 0 else ffi.NULL, params[1], float(eng.sr),
                                eng.block_frames, 0, c_cb, user)
        if err < 0:
            raise AudioError(f"cannot open audio device {eng.device!r}: {ffi.string(lib.Pa_GetErrorText(err)).decode()}")
        self.stream = stream[0]
        self._mark()
        err = lib.Pa_StartStream(self.stream)
        if err < 0:
            lib.Pa_CloseStream(self.stream)
            self.stream = None
            raise AudioError(f"cannot start audio device {eng.device!r}: {ffi.string(lib.Pa_GetErrorText(err)).decode()}")
        self.running = True
        eng.driver = self
        return self

    def problem(self) -> str | None:
        import sounddevice as sd
        if self.stream is not None and sd._lib.Pa_IsStreamActive(self.stream) != 1:
            return "audio device stopped"
        return super().problem()

    def close(self) -> None:
        import sounddevice as sd
        self.running = False
        stream, self.stream = self.stream, None
        if stream is not None:
            lib = sd._lib

            def close():
                lib.Pa_AbortStream(stream)
                lib.Pa_CloseStream(stream)

            t = threading.Thread(target=close, name="rolypoly-close-stream", daemon=True)
            t.start()
            t.join(2.0)   # PortAudio can block forever on a device that vanished
        self.engine.stage.ctl[blk.INJECT_ADDR] = 0
        if self.engine.driver is self:
            self.engine.driver = None


def _close_quietly(stream, timeout_s: float = 2.0) -> None:
    """Close a stream without hanging: PortAudio can block forever on a device that vanished."""
    def close():
        try:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        except Exception:
            pass

    t = threading.Thread(target=close, name="rolypoly-close-stream", daemon=True)
    t.start()
    t.join(timeout_s)


# -- clock only ------------------------------------------------------------------------------------------
class ClockDriver(_Driver):
    """Run the block in real time without a sound card (``osc.audio=off``).

    A thread runs one block per block period, sleeping until each is due, so hits leave
    at their real times.  Behind by more than ``max_behind_s`` it skips ahead rather than
    bursting (counted in :attr:`skipped_s`).
    """

    name = "clock"

    def __init__(self, engine, max_behind_s: float = 0.25):
        super().__init__(engine)
        engine._ensure_stage()
        self.max_behind_s = float(max_behind_s)
        self.skipped_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "ClockDriver":
        self._mark()
        self.running = True
        self.engine.driver = self
        self._thread = threading.Thread(target=self._run, name="rolypoly-clock", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.running = False
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.engine.driver is self:
            self.engine.driver = None

    def _run(self) -> None:
        eng = self.engine
        B, sr = eng.block_frames, eng.sr
        period = B / sr
        inp = np.zeros(B, dtype=np.float32)
        out = np.zeros((B, 2), dtype=np.float32)
        clock = time.perf_counter
        due = clock()
        while not self._stop.is_set():
            now = clock()
            if now - due > self.max_behind_s:
                self.skipped_s += now - due
                due = now
            while due <= now and not self._stop.is_set():
                eng.stage.run(inp, out)
                due += period
            delay = due - clock()
            if delay > 0:
                time.sleep(delay)


def open_driver(engine, input_audio: np.ndarray | None = None, input_channels: int | None = None, kind: str = "auto"):
    """The driver for ``engine.device``: JACK when the device is ``jack`` (or unset and a server runs),
    PortAudio otherwise; ``kind`` forces ``jack``, ``portaudio`` or ``clock``."""
    device = engine.device
    if kind == "clock":
        return ClockDriver(engine)
    if kind == "jack" or (kind == "auto" and (str(device).lower() == "jack" or (device is None and jack_running()))):
        return JackDriver(engine, input_audio=input_audio)
    return PortAudioDriver(engine, input_audio=input_audio, input_channels=input_channels)


def play_realtime(engine, duration_s: float | None = None, stats: RealtimeStats | None = None,
                  input_channels: int | None = None, on_block=None,
                  input_audio: np.ndarray | None = None, driver=None) -> RealtimeStats:
    """Play the loaded score in real time until its end, ``duration_s`` or Ctrl-C.

    ``input_audio`` (mono float32) replaces what the device captures from the take's
    first block: a recorded or virtual musician heard in real time (benchmarks, tests).
    The take is saved in every case (end, interruption, device failure).
    """
    stats = stats or RealtimeStats()
    drv = driver or open_driver(engine, input_audio=input_audio, input_channels=input_channels)
    if not drv.running:
        drv.start()
    stats.driver = drv.name
    first = []
    engine.connect("hit", lambda *a: first.append(time.perf_counter()) if not first else None)
    t_start = time.perf_counter()
    t_call_us = int(drv.lib.jack_get_time()) if isinstance(drv, JackDriver) else 0
    if not engine.message("start"):
        drv.close()
        raise AudioError("could not start the performance: " + "; ".join(engine.last_errors()[-1:]))
    blocks0 = drv.blocks
    t0 = time.monotonic()
    try:
        while engine.playing:
            time.sleep(0.02)
            if on_block is not None:
                on_block()
            if duration_s is not None and time.monotonic() - t0 >= duration_s:
                break
            why = drv.problem()
            if why:
                engine.emit("error", f"{why}; the take so far is saved")
                break
    except KeyboardInterrupt:
        engine.status("interrupted")
    except Exception as exc:  # a device that disappears mid-take
        engine.emit("error", f"audio device failed: {exc}")
    finally:
        elapsed = time.monotonic() - t0
        engine.message("stop")  # saves the take before touching the device again
        stats.blocks = drv.blocks - blocks0
        stats.blocks_due = int(elapsed * engine.sr / engine.block_frames)
        stats.xruns = drv.xruns
        stats.callback_p = drv.callback_percentiles()
        if driver is None:
            drv.close()
    hits = engine._hits
    if hits and isinstance(drv, JackDriver):
        # from the start call to the first hit's sample leaving: the take's first block began at
        # TAKE_T0_US (JACK's clock, stamped in the callback), the hit lies `sample` frames into the take
        t0_us = int(engine.stage.ctl[blk.TAKE_T0_US])
        offset = hits[0]["sample"] + engine.take_settings.get("countin_samples", 0)
        stats.first_hit_ms = (t0_us - t_call_us) / 1000.0 + 1000.0 * offset / engine.sr
    return stats
