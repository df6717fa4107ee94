"""MIDI for the box (mido messages over python-rtmidi ports): clock sync, transport, notes in and out.

In: :class:`ClockFollower` turns MIDI clock (24 per quarter note) and start / stop /
continue into a tempo and transport events, from any input port (:class:`MidiIn`).
Out: :class:`MidiOut` sends clock, start / stop and the hits as notes on channel 10
(our output pitch map, :data:`rolypoly.score.drums.OUTPUT_PITCHES`).  :class:`BoxSync`
wires both to a running box.  Ports are the system's (ALSA on Linux) or JACK's
(``api="jack"``; the tests use JACK MIDI on the dummy server, no hardware needed).

The tempo is the least-squares slope of the last bar of clock times (96 ticks), so
JACK's per-period delivery (a few ms of jitter on each clock) averages out.

Examples
--------
>>> f = ClockFollower()
>>> for i in range(97):
...     _ = f.feed(0xF8, i * 60 / 120 / 24)
>>> round(f.bpm, 3)
120.0
>>> f.feed(0xFA, 3.0)
'start'
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque

from rolypoly.errors import MidiError, RolypolyError

CLOCK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC
PPQN = 24
DRUM_CHANNEL = 9            # MIDI channel 10, counted from 0
_APIS = {"alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "default": "API_UNSPECIFIED", "core": "API_MACOSX_CORE",
         "windows": "API_WINDOWS_MM"}


def _rtmidi():
    try:
        import rtmidi
    except ImportError:
        raise MidiError("MIDI needs python-rtmidi (pip install python-rtmidi)") from None
    return rtmidi


def _api(name: str | None):
    rtmidi = _rtmidi()
    key = (name or "default").lower()
    if key not in _APIS:
        raise MidiError(f"MIDI API {name!r}; expected one of {', '.join(_APIS)}")
    api = getattr(rtmidi, _APIS[key])
    if key != "default" and api not in rtmidi.get_compiled_api():
        raise MidiError(f"this python-rtmidi was built without the {key} MIDI API")
    return api


def list_ports(api: str | None = None) -> dict[str, list[str]]:
    """``{"inputs": [...], "outputs": [...]}``: the MIDI ports the system (or ``api``) offers."""
    rtmidi = _rtmidi()
    try:
        mi, mo = rtmidi.MidiIn(_api(api)), rtmidi.MidiOut(_api(api))
        return {"inputs": mi.get_ports(), "outputs": mo.get_ports()}
    except rtmidi.SystemError as exc:
        raise MidiError(f"cannot list MIDI ports: {exc}") from None


def _find(ports: list[str], name: str) -> int:
    if name.isdigit() and int(name) < len(ports):
        return int(name)
    hits = [i for i, p in enumerate(ports) if name.lower() in p.lower()]
    if not hits:
        raise MidiError(f"no MIDI port matches {name!r}; ports: {', '.join(ports) or 'none'}")
    return hits[0]


class ClockFollower:
    """Tempo and transport from MIDI real-time messages (pure logic: feed it bytes and times).

    Attributes
    ----------
    bpm : float or None      tempo measured over the last bar of clocks
    running : bool           between start/continue and stop
    ticks : int              clocks since the last start (the song position in 24ths of a beat)
    """

    def __init__(self, span_ticks: int = 4 * PPQN):
        self.span = int(span_ticks)
        self._times: deque = deque(maxlen=self.span + 1)
        self.bpm: float | None = None
        self.running = False
        self.ticks = 0

    def feed(self, status: int, t: float) -> str | None:
        """One message's status byte at time ``t`` (seconds); returns "start", "stop", "continue",
        "tick" or None."""
        if status == CLOCK:
            self._times.append(float(t))
            n = len(self._times)
            if n >= 2:
                # least-squares slope of tick times: each clock's jitter (JACK hands messages
                # over once a period) averages out instead of weighing on two end points
                ts = list(self._times)
                mean_i = (n - 1) / 2.0
                mean_t = sum(ts) / n
                num = sum((i - mean_i) * (x - mean_t) for i, x in enumerate(ts))
                den = sum((i - mean_i) ** 2 for i in range(n))
                if num > 0:
                    self.bpm = 60.0 / (PPQN * num / den)
            if self.running:
                self.ticks += 1
            return "tick"
        if status == START:
            if self.running and self.ticks == 0:
                return None           # the same start again before any clock (some ports repeat it)
            self.running, self.ticks = True, 0
            return "start"
        if status == CONTINUE:
            self.running = True
            return "continue"
        if status == STOP:
            self.running = False
            return "stop"
        return None


class MidiIn:
    """An input port: calls ``on_message(bytes, t_seconds)`` for every message, clock included.

    ``port`` is a name (substring) or index of an existing port, or None to open a virtual
    port named ``name`` that others connect to.  ``t`` is when rtmidi received the message, on
    the ``time.monotonic()`` clock: rtmidi's own time differences between messages, taken in C
    as they come in, anchored to the earliest arrival they allow.  A Python callback held up
    (the GIL, a busy machine) then delivers late but not with a late time, and a clock's tempo
    stays what was sent.
    """

    def __init__(self, on_message, port: str | None = None, api: str | None = None, name: str = "rolypoly in"):
        rtmidi = _rtmidi()
        try:
            self._in = rtmidi.MidiIn(_api(api), name="rolypoly")
            self._in.ignore_types(sysex=True, timing=False, active_sense=True)
            if port is None:
                self._in.open_virtual_port(name)
                self.port_name = name
            else:
                ports = self._in.get_ports()
                i = _find(ports, port)
                self._in.open_port(i, name)
                self.port_name = ports[i]
        except rtmidi.SystemError as exc:
            raise MidiError(f"cannot open MIDI input {port or name!r}: {exc}") from None
        self._cb = on_message
        self.errors: list[str] = []
        self._since_first = 0.0          # rtmidi's receive time of the last message, from the first
        self._anchor = math.inf          # time.monotonic() of the first message's receipt (the least so far)
        self._in.set_callback(self._receive)

    def _receive(self, event, data=None) -> None:
        msg, delta = event
        self._since_first += max(0.0, float(delta))
        # a message cannot arrive here before rtmidi received it: each arrival bounds the anchor
        self._anchor = min(self._anchor, time.monotonic() - self._since_first)
        try:
            self._cb(bytes(msg), self._anchor + self._since_first)
        except Exception as exc:       # a receiver's bug must not kill rtmidi's thread
            self.errors = (self.errors + [f"{type(exc).__name__}: {exc}"])[-20:]

    def close(self) -> None:
        self._in.cancel_callback()
        self._in.close_port()
        del self._in


class MidiOut:
    """An output port: clock, start/stop and drum notes on channel 10."""

    def __init__(self, port: str | None = None, api: str | None = None, name: str = "rolypoly out"):
        rtmidi = _rtmidi()
        try:
            self._out = rtmidi.MidiOut(_api(api), name="rolypoly")
            if port is None:
                self._out.open_virtual_port(name)
                self.port_name = name
            else:
                ports = self._out.get_ports()
                i = _find(ports, port)
                self._out.open_port(i, name)
                self.port_name = ports[i]
        except rtmidi.SystemError as exc:
            raise MidiError(f"cannot open MIDI output {port or name!r}: {exc}") from None
        self._lock = threading.Lock()
        self._clock_thread: threading.Thread | None = None
        self._clock_stop = threading.Event()
        self.sent_notes = 0

    def send(self, data) -> None:
        with self._lock:
            self._out.send_message(list(data))

    def start(self) -> None:
        self.send([START])

    def stop(self) -> None:
        self.send([STOP])

    def note(self, drum: int, velocity: int) -> None:
        """A hit of drum class ``drum`` as note on + off on channel 10 (our output pitch)."""
        from rolypoly.score.drums import OUTPUT_PITCHES
        pitch = OUTPUT_PITCHES[int(drum)]
        v = max(1, min(127, int(velocity)))
        self.send([0x90 | DRUM_CHANNEL, pitch, v])
        self.send([0x80 | DRUM_CHANNEL, pitch, 0])
        self.sent_notes += 1

    def run_clock(self, bpm_fn) -> None:
        """Send 24 clocks a beat at ``bpm_fn()`` bpm on a thread until :meth:`stop_clock`."""
        self.stop_clock()
        self._clock_stop.clear()

        def loop():
            t = time.monotonic()
            while not self._clock_stop.is_set():
                self.send([CLOCK])
                t += 60.0 / (float(bpm_fn()) * PPQN)
                delay = t - time.monotonic()
                if delay > 0:
                    self._clock_stop.wait(delay)
                else:
                    t = time.monotonic()       # fell behind (a loaded machine): no burst of clocks
        self._clock_thread = threading.Thread(target=loop, name="rolypoly-midi-clock", daemon=True)
        self._clock_thread.start()

    def stop_clock(self) -> None:
        self._clock_stop.set()
        if self._clock_thread is not None:
            self._clock_thread.join(timeout=1)
            self._clock_thread = None

    def close(self) -> None:
        self.stop_clock()
        self._out.close_port()
        del self._out


class BoxSync:
    """Connects a box (its app or anything with ``box`` and a ``player``) to MIDI ports.

    In: clock sets the box's tempo (when it moves by more than ``tolerance``, 0.5 %),
    start / continue play, stop stops; notes play their channel and, while playing,
    record into the pattern at the nearest step.  Out: the box's hits as notes, and
    (when the box is not following a clock) its own clock and start / stop.

    ``host`` needs ``box``, ``player`` (a :class:`rolypoly.box.player.Player` or None),
    and optional ``call(fn)`` that runs ``fn`` on its own thread (a textual app's
    ``call_from_thread``); without it, callbacks run on rtmidi's thread.
    """

    def __init__(self, host, midi_in: str | None = None, midi_out: str | None = None, api: str | None = None,
                 in_name: str = "rolypoly in", out_name: str = "rolypoly out", tolerance: float = 0.005,
                 virtual: bool = False):
        self.host = host
        self.tolerance = float(tolerance)
        self.follower = ClockFollower()
        self.events: list[tuple[str, float, float]] = []   # (what, arrived, obeyed): monotonic times
        self.recorded = 0
        self._arrived_block: dict[str, int | None] = {}
        import queue
        self._pending: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self._sender: threading.Thread | None = None
        self.out = None
        self.inp = None
        if midi_out is not None or virtual:
            self.out = MidiOut(None if virtual or midi_out in ("", "virtual") else midi_out, api, out_name)
        if midi_in is not None or virtual:
            self.inp = MidiIn(self._message, None if virtual or midi_in in ("", "virtual") else midi_in, api, in_name)
        player = getattr(host, "player", None)
        if player is not None:
            self.attach_player(player)

    def attach_player(self, player) -> None:
        """Send ``player``'s hits out and get it ready, so a MIDI start only starts the take."""
        if self.out is not None:
            player.engine.connect("hit", self._hit)
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="rolypoly-midi-notes", daemon=True)
                self._sender.start()
        try:
            player.prepare()
        except RolypolyError:
            pass                       # nothing to play yet: the first start prepares

    def _hit(self, sample, drum, velocity, offset_ms) -> None:
        # The engine reports a hit when it schedules it (ahead of the sound); the note goes
        # out when the hit sounds: the take's first block + its sample.
        player = self.host.player
        self._pending.put((player.take_serial, int(sample), int(drum), int(velocity)))

    def _send_loop(self) -> None:
        import queue
        held = []
        while not self._closing.is_set():
            try:
                held.append(self._pending.get(timeout=0.01))
            except queue.Empty:
                pass
            player = self.host.player
            now = time.monotonic()
            keep = []
            for serial, sample, drum, vel in held:
                if serial != player.take_serial:
                    continue                                  # stopped or restarted: never sounds
                start = player.take_started.get(serial)
                if start is None:
                    keep.append((serial, sample, drum, vel))  # its take's first block is not known yet
                    continue
                due = start + sample / player.sr
                if due <= now + 0.0005:
                    if self.out is not None:
                        self.out.note(drum, vel)
                else:
                    keep.append((serial, sample, drum, vel))
            held = keep
            if held:
                player = self.host.player
                dues = [player.take_started.get(s, now) + x / player.sr for s, x, _, _ in held]
                wait = min(dues) - time.monotonic()
                if wait > 0:
                    self._closing.wait(min(wait, 0.005))

    def _call(self, fn, *args) -> None:
        call = getattr(self.host, "call", None)
        if call is not None:
            call(fn, *args)
        else:
            fn(*args)

    def _message(self, data: bytes, t: float) -> None:
        if not data:
            return
        status = data[0]
        what = self.follower.feed(status, t)
        if what == "tick":
            bpm = self.follower.bpm
            box = self.host.box
            player = getattr(self.host, "player", None)
            if bpm and len(self.follower._times) > self.follower.span // 2 and \
                    abs(bpm - box.bpm) > self.tolerance * box.bpm and 20.0 <= bpm <= 400.0:
                box.bpm = round(bpm, 2)
                if player is not None and player.playing:
                    player.changed()
                elif player is not None and hasattr(player, "prepare_soon"):
                    player.prepare_soon()      # stopped: the take a start plays is made again now
            # a changed tempo or pattern starts again on the external clock's pass boundary
            if player is not None and player.playing and (player.dirty or box.queued) and self.follower.running:
                per_pass = self.ticks_per_pass()
                if per_pass and self.follower.ticks % per_pass == 0:
                    self._call(self._restart)
        elif what in ("start", "continue"):
            self._note_block(what)
            self._call(self._start, what, t)
        elif what == "stop":
            self._note_block(what)
            self._call(self._stop, t)
        elif status & 0xF0 == 0x90 and len(data) >= 3 and data[2] > 0:
            self._call(self._note, data[1], data[2])

    def _note_block(self, what: str) -> None:
        # the driver's block count when the message arrived: "obeyed within one block" is
        # counted in blocks (see ``blocks_late``)
        player = getattr(self.host, "player", None)
        self._arrived_block[what] = player.blocks() if player is not None else None

    def blocks_late(self, what: str) -> int | None:
        """Audio blocks from the one during which the last ``what`` (start/stop) arrived to the
        first block that obeyed it: 1 = the very next block."""
        player = self.host.player
        got = player.started_block if what in ("start", "continue") else player.stopped_block
        arrived = self._arrived_block.get(what)
        return None if got is None or arrived is None else got - arrived

    def _start(self, what: str, arrived: float) -> None:
        player = self.host.player
        if player is not None:
            player.play()
        if hasattr(self.host, "midi_transport"):
            self.host.midi_transport(True)
        # obeyed: when the audio side began the take's first block
        self.events.append((what, arrived, getattr(player, "started_at", None) or time.monotonic()))

    def ticks_per_pass(self) -> int:
        """MIDI clocks in one pass of the playing sequence (0 when it is not a whole number)."""
        from fractions import Fraction

        from rolypoly.box.model import STEP_RATES
        box = self.host.box
        player = self.host.player
        seq = player.sequence or box.chain()
        beats = sum(box.patterns[n].length for n in seq) * STEP_RATES[box.step_rate]
        ticks = Fraction(beats) * PPQN
        return int(ticks) if ticks.denominator == 1 else 0

    def _restart(self) -> None:
        player = self.host.player
        t = time.monotonic()
        box = self.host.box
        want = box.chain(box.queued) if box.queued else None
        box.queued = None
        player.play(want)
        self.events.append(("resync", t, time.monotonic()))

    def _stop(self, arrived: float) -> None:
        player = self.host.player
        if player is not None:
            player.stop()
        if hasattr(self.host, "midi_transport"):
            self.host.midi_transport(False)
        # obeyed: when the audio side let the take go
        self.events.append(("stop", arrived, getattr(player, "stopped_at", None) or time.monotonic()))

    def _note(self, pitch: int, velocity: int) -> None:
        from rolypoly.score.drums import PITCH_TO_DRUM
        drum = PITCH_TO_DRUM.get(int(pitch))
        box = self.host.box
        if drum is None or drum not in box.channel_drums:
            return
        ch = box.channel_drums.index(drum)
        player = self.host.player
        if player is not None and player.playing:
            j, k = player.position()
            if j >= 0 and player.sequence[j] == box.current:
                box.set_steps(ch, [k], True, "trigger", "record")
                self.recorded += 1
                player.changed()
        elif player is not None:
            player.audition(ch)

    def send_transport(self, start: bool) -> None:
        """When the box leads: start (with clock) or stop the devices listening to the output."""
        if self.out is None:
            return
        if start:
            self.out.start()
            self.out.run_clock(lambda: self.host.box.bpm)
        else:
            self.out.stop_clock()
            self.out.stop()

    def close(self) -> None:
        self._closing.set()
        if self._sender is not None:
            self._sender.join(timeout=1)
        if self.inp is not None:
            self.inp.close()
        if self.out is not None:
            self.out.close()
