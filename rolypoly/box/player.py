"""Playing the box through the rolypoly engine: the same engine and audio path as a duet.

The box never renders audio itself.  What it plays is a :class:`rolypoly.score.midi.Score`
built from the pattern (:func:`box_score`): one row per sounding step, at the step's
exact first sample, one bar per pattern pass; the engine reads it and plays it like
any score -- as written (``humanize`` off: the quantised machine) or through the
performance model (``humanize`` on: its velocities and micro-timing), following a
musician on the input when ``listen`` is on.

:func:`render_offline` runs the engine offline, block by block (deterministic: what a
test checks); :class:`Player` drives it in real time with a driver (JACK, the sound
card, or the silent clock driver) and restarts the take at a pattern boundary when the
pattern or the tempo changed (the engine plays a score it was given; a changed pattern
is a new score).

Examples
--------
>>> from rolypoly.box.model import Box
>>> box = Box(); _ = box.toggle(0, 0); _ = box.toggle(1, 4)
>>> score = box_score(box, ["a"], 48000)
>>> score.n_rows, [round(t) for t in score.times_ms]
(2, [0, 500])
"""
from __future__ import annotations

import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from rolypoly.box.model import STEP_RATES, Box, BoxError
from rolypoly.errors import RolypolyError

PPQ = 960


def _meter(box: Box, length: int) -> tuple[int, int]:
    """A meter whose bar is exactly one pass of ``length`` steps (4/4 for 16 sixteenths)."""
    whole = Fraction(length) * STEP_RATES[box.step_rate] / 4      # in whole notes
    for den in (4, 8, 16, 32, 64):
        num = whole * den
        if num.denominator == 1 and num >= 1:
            return int(num), den
    raise BoxError(f"{length} steps of {box.step_rate} are not a whole number of 64ths: "
                   "choose a length that is (e.g. a multiple of 3 steps for triplets)")


def box_score(box: Box, sequence: list[str], sr: int, passes: list[int] | None = None):
    """The Score the engine plays for ``sequence`` (pattern names, played in a row).

    Each row's time is the step's first sample divided by ``sr``, so the engine, which
    rounds row times to samples, lands every hit on exactly that sample.

    Raises
    ------
    BoxError
        Nothing to play (every step of the sequence silent, or every channel muted).
    """
    from rolypoly.score.midi import Note, TempoMap, score_from_notes
    hits = box.sequence_hits(sequence, sr, passes)
    if not hits:
        raise BoxError(f"pattern {'+'.join(sequence)} has no steps to play: lay down some beats first")
    drums = box.channel_drums
    us = 60e6 / box.bpm
    meter_ticks, meters, tick = [], [], 0
    for name in sequence:
        m = _meter(box, box.patterns[name].length)
        if not meters or meters[-1] != m:
            meter_ticks.append(tick)
            meters.append(m)
        tick += int(PPQ * 4 * m[0] / m[1])
    tmap = TempoMap(PPQ, [0], [us], meter_ticks, meters)
    notes = []
    for sample, ch, vel, _ in hits:
        if drums[ch] < 0:
            continue
        sec = sample / sr
        notes.append(Note(int(round(tmap.tick_at(sec))), sec, drums[ch], vel))
    notes.sort(key=lambda n: (n.seconds, n.drum))
    return score_from_notes(notes, tmap, merge_tolerance_ms=0.0)


def _engine_cfg(cfg, box: Box, takes_dir=None):
    from rolypoly.config import with_values
    values = {"engine.enable": bool(box.humanize)}
    if takes_dir is not None:
        values["takes_dir"] = str(takes_dir)
    return with_values(cfg, **values)


def write_kit_file(box: Box, folder) -> Path:
    """The box's playing kit (morph, levels, pans, chokes) as a kit file the engine loads."""
    from rolypoly.synth.kit import save_kit
    path = Path(folder) / "box_kit.toml"
    save_kit(box.playing_kit(), path)
    return path


def make_engine(cfg, box: Box, offline: bool, sr: int | None = None, block_frames: int | None = None,
                takes_dir=None):
    """A rolypoly engine set up for the box (model on only when humanizing)."""
    from rolypoly.live.engine import Rolypoly
    eng = Rolypoly(_engine_cfg(cfg, box, takes_dir), offline=offline, sr=sr, block_frames=block_frames)
    eng.set("enable", bool(box.humanize))
    return eng


def render_offline(box: Box, cfg, sequence: list[str] | None = None, sr: int = 48000, block_frames: int = 256,
                   tail_s: float = 0.5, takes_dir=None):
    """Play ``sequence`` (default: the current pattern's chain) once through an offline engine.

    Returns
    -------
    (audio (n, 2) float32, hits [(sample, channel, velocity, step)], engine hits [dict])
    """
    from rolypoly.live.drivers import perform_offline
    sequence = sequence or box.chain()
    score = box_score(box, sequence, sr)
    eng = make_engine(cfg, box, offline=True, sr=sr, block_frames=block_frames, takes_dir=takes_dir)
    with tempfile.TemporaryDirectory() as tmp:
        eng.kit(str(write_kit_file(box, tmp)))
    eng.read(score)
    res = perform_offline(eng, tail_s=tail_s)
    errors = [e for e in eng.last_errors() if "playing the score as written" not in e]
    if errors:
        raise BoxError("the engine reported: " + "; ".join(errors[-3:]))
    return res.drums, box.sequence_hits(sequence, sr), res.hits


class Player:
    """Plays a :class:`Box` in real time through a rolypoly engine and an audio driver.

    Parameters
    ----------
    box : Box
    cfg : composed config
    driver : "auto" (JACK when a server runs, else the sound card), "jack", "portaudio",
        "clock" (silent, paced by the clock: for machines without audio) or None (no driver:
        the caller runs ``engine.process``).
    on_hit : called ``(sample, drum, velocity, offset_ms)`` for every hit (e.g. MIDI out)
    """

    def __init__(self, box: Box, cfg, driver: str | None = "auto", on_hit=None, takes_dir=None):
        self.box = box
        self.cfg = cfg
        self.driver_kind = driver
        self.engine = make_engine(cfg, box, offline=False, takes_dir=takes_dir)
        # what the engine's first start imports, imported now: a MIDI start must not wait for it
        import soundfile  # noqa: F401

        import rolypoly.ears.listener
        import rolypoly.live.recorder  # noqa: F401
        self.sr = self.engine.sr
        self.driver = None
        self.sequence: list[str] = []
        self.started_at = None          # time.monotonic() of the last start
        self.dirty = False
        self._prepared = None
        self._kit_loaded = None
        self._boundary_timer: threading.Timer | None = None
        self._prepare_s = 0.02
        self._driver_listen = None
        self.started_block = self.stopped_block = None   # the driver's block count at the last start/stop
        self.take_serial = 0               # counts starts and stops (MIDI out matches hits to takes)
        self.take_started: dict[int, float] = {}
        self._kit_dir = tempfile.TemporaryDirectory(prefix="rolypoly-box-")
        self._lock = threading.RLock()
        self._closed = False
        self._prepare_threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.engine.connect("error", self.errors.append)
        if on_hit is not None:
            self.engine.connect("hit", on_hit)

    @property
    def playing(self) -> bool:
        return self.engine.take_open

    def _warm_listener(self) -> None:
        # The engine makes its listener at the first start (tens of ms); a MIDI start must
        # not wait for that, so it is made here, ahead of time.
        if getattr(self.engine, "listener", None) is None and hasattr(self.engine, "_make_listener"):
            try:
                self.engine._make_listener()
            except Exception as exc:  # the engine's first start makes it then
                self.errors.append(f"listener: {exc}")

    def _ensure_driver(self) -> None:
        # listen off: the driver hears silence instead of its input (one injected zero
        # sample, then zeros), so the engine has no musician to follow
        if self.driver is not None and self._driver_listen != self.box.listen and not self.engine.take_open:
            self.driver.close()
            self.driver = None
        if self.driver is None and self.driver_kind is not None:
            from rolypoly.live.drivers import open_driver
            silence = None if self.box.listen else np.zeros(1, np.float32)
            self.driver = open_driver(self.engine, input_audio=silence, kind=self.driver_kind)
            self.driver.start()
            self._driver_listen = self.box.listen

    def prepare(self, sequence: list[str] | None = None) -> None:
        """Get the engine ready to play ``sequence`` (default: the current chain) so :meth:`play`
        only has to start it: the score read, the kit loaded, the driver running."""
        t0 = time.monotonic()
        with self._lock:
            box = self.box
            self.sequence = list(sequence or box.chain())
            score = box_score(box, self.sequence, self.sr)
            if self.engine.take_open:
                self.engine.stop()
            self.engine.set("enable", bool(box.humanize))
            self.engine.set("loop", True)
            kit_text = write_kit_file(box, self._kit_dir.name).read_text()
            if kit_text != self._kit_loaded:
                self.engine.kit(str(Path(self._kit_dir.name) / "box_kit.toml"))
                self._kit_loaded = kit_text
            self.engine.read(score)
            self._ensure_driver()
            self._warm_listener()
            self._arm()
            self._prepared = self._state_key()
            self.dirty = False
        self._prepare_s = min(0.2, 0.5 * self._prepare_s + 0.5 * (time.monotonic() - t0))

    def _arm(self) -> None:
        # the engine makes the next take now (schedule, take files, first predictions): a
        # start then only hands it to the audio block, which plays it from the next block
        if self._closed:
            return
        try:
            self.engine.arm()
        except RolypolyError as exc:    # the start makes the take itself then
            self.errors.append(f"arm: {exc}")

    def prepare_soon(self) -> None:
        """:meth:`prepare` on a thread, when something it depends on (the tempo an external
        clock sets) changed while stopped: the next start finds its take ready."""
        if self._closed or self.playing:
            return

        def job():
            try:
                with self._lock:
                    if self._closed or self.playing or \
                            (self._state_key() == self._prepared and self.sequence == self.box.chain()):
                        return
                    self.prepare()
            except RolypolyError as exc:
                self.errors.append(str(exc))
        t = threading.Thread(target=job, name="rolypoly-box-prepare", daemon=True)
        self._prepare_threads = [x for x in self._prepare_threads if x.is_alive()] + [t]
        t.start()

    def _state_key(self):
        box = self.box
        return (tuple(self.sequence), box.bpm, box.step_rate, box.swing, box.humanize, box.fill,
                tuple((n, p.length, p.triggers.tobytes(), p.accents.tobytes(), p.fills.tobytes())
                      for n, p in box.patterns.items() if n in self.sequence),
                tuple(box.mix.mute), tuple(box.mix.solo))

    def play(self, sequence: list[str] | None = None) -> None:
        """Start playing ``sequence`` (default: the current pattern's chain), looping.

        Prepared (:meth:`prepare`) and unchanged since, this only starts the take: the
        next audio block plays its first sample.
        """
        with self._lock:
            want = list(sequence or self.box.chain())
            if self.engine.take_open:
                self.engine.stop()
            if self._prepared is None or want != self.sequence or self._state_key() != self._prepared or self.dirty:
                self.prepare(want)
            self.take_serial += 1
            before = self._switch_block()
            self.engine.start()
            self.started_at = self._first_block_time(before)
            self.take_started[self.take_serial] = self.started_at

    def blocks(self) -> int | None:
        """Audio blocks played so far by the driver (None without one)."""
        stage = getattr(self.engine, "stage", None)
        if stage is None or self.driver is None:
            return None
        from rolypoly.live.block import BLOCKS
        return int(stage.ctl[BLOCKS])

    def _first_block_time(self, before: int | None = None, timeout_s: float = 0.1) -> float:
        """When the audio side took the new take (its first block began); now without a driver."""
        stage = getattr(self.engine, "stage", None)
        running = self.driver is not None and getattr(self.driver, "running", False)
        if stage is None or not running or not hasattr(stage, "acknowledged"):
            return time.monotonic()
        deadline = time.monotonic() + timeout_s
        while not stage.acknowledged() and time.monotonic() < deadline:
            time.sleep(0.0002)
        self.started_block = self._switched_since(before, deadline)
        return time.monotonic()

    def _switch_block(self) -> int | None:
        # the block that took the last start/stop, as the block itself noted it (a poll
        # from Python could see it a block or two later on a busy machine)
        from rolypoly.live.block import SWITCH_BLOCK
        stage = getattr(self.engine, "stage", None)
        return None if stage is None or self.driver is None else int(stage.ctl[SWITCH_BLOCK])

    def _switched_since(self, before: int | None, deadline: float) -> int | None:
        # the block notes it a few microseconds after it acknowledges: wait for the new value
        got = self._switch_block()
        while got is not None and got == before and time.monotonic() < deadline:
            time.sleep(0.0001)
            got = self._switch_block()
        return None if got == before else got

    def stop(self) -> None:
        with self._lock:
            self.take_serial += 1          # what the stopped take had scheduled is void
            if self.engine.take_open:
                watch = self._watch_retire()
                self.engine.stop()
                if watch is not None:
                    watch.join(timeout=0.2)
                self.stopped_at = getattr(self, "_retired_at", None) or time.monotonic()
                if self._prepared is not None and self.engine.loop:
                    self._arm()            # the next start of the same sequence is ready
            else:
                self.stopped_at = getattr(self, "_retired_at", None) or time.monotonic()

    def _watch_retire(self):
        """A thread that notes when the audio side has let the take go (the engine's stop then
        goes on saving the take, which the sound does not wait for)."""
        stage = getattr(self.engine, "stage", None)
        running = self.driver is not None and getattr(self.driver, "running", False)
        if stage is None or not running or not hasattr(stage, "acknowledged"):
            self._retired_at = None
            return None
        self._retired_at = None
        deadline = time.monotonic() + 1.0
        before = self._switch_block()

        from rolypoly.live.block import ACTIVE_TAKE, PENDING_TAKE

        def watch():
            while time.monotonic() < deadline:
                if int(stage.ctl[PENDING_TAKE]) == 0 and int(stage.ctl[ACTIVE_TAKE]) == 0:
                    self._retired_at = time.monotonic()
                    self.stopped_block = self._switched_since(before, deadline)
                    return
                time.sleep(0.0002)
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        return t

    def position(self) -> tuple[int, int]:
        """(index in the sequence, step) now playing; (-1, -1) when stopped."""
        if not self.playing or not self.sequence:
            return -1, -1
        sched = self.engine.schedule
        if sched is None:
            return -1, -1
        sample = max(0, int(sched.sample))
        total = self.box.pass_samples(self.sr, sum(self.box.patterns[n].length for n in self.sequence))
        local = sample % max(1, total)
        step_len = float(self.box.step_seconds()) * self.sr
        k = int(local // step_len)
        for j, name in enumerate(self.sequence):
            n = self.box.patterns[name].length
            if k < n:
                return j, k
            k -= n
        return len(self.sequence) - 1, 0

    def changed(self) -> None:
        """The pattern, kit or tempo changed: play the new version from the next pattern start."""
        self.dirty = True

    def poll(self) -> None:
        """Call often (the UI's timer): a queued switch or an edit takes effect at the next
        boundary of the playing sequence, exactly there: a timer restarts the take one
        block before it, so the new take's first block is the boundary's."""
        if not self.playing or self._boundary_timer is not None:
            return
        want = self.box.chain(self.box.queued) if self.box.queued else None
        if not (want and want != self.sequence or self.dirty):
            return
        sched = self.engine.schedule
        if sched is None:
            return
        pass_len = float(sched.length_samples)
        elapsed = max(0.0, float(sched.sample))
        to_boundary = (pass_len - elapsed % pass_len) / self.sr
        block = self.engine.block_frames / self.sr
        if to_boundary > 0.25:          # the UI polls every 50 ms: come back closer to it
            return
        # the old take plays to the boundary; the new one follows once the engine has saved
        # the old (its stop), a few tens of ms on a busy machine
        delay = max(0.0, to_boundary - block)
        self._boundary_timer = threading.Timer(delay, self._boundary_restart, args=(want,))
        self._boundary_timer.daemon = True
        self._boundary_timer.start()

    def _boundary_restart(self, want) -> None:
        self._boundary_timer = None
        if not self.playing:
            return
        self.box.queued = None
        try:
            self.play(want or self.box.chain())
        except BoxError as exc:
            self.errors.append(str(exc))
            self.stop()

    def audition(self, channel: int) -> None:
        """Hear one channel's sound now (the channel page), through the same engine."""
        if self.playing:
            self.changed()
            return
        from rolypoly.box.model import Pattern
        probe = Box(self.box.kit, self.box._channel_drums)
        probe.mix, probe.kit_b, probe.morph, probe.bpm = self.box.mix, self.box.kit_b, self.box.morph, 120.0
        probe._kit = self.box.kit
        probe.patterns["a"] = Pattern("a", length=4)
        probe.patterns["a"].triggers[channel, 0] = True
        score = box_score(probe, ["a"], self.sr)
        with self._lock:
            self.engine.set("loop", False)
            self.engine.kit(str(write_kit_file(probe, self._kit_dir.name)))
            self._kit_loaded = None
            self._prepared = None
            self.engine.read(score)
            self._ensure_driver()
            self.engine.start()

    def close(self) -> None:
        if self._boundary_timer is not None:
            self._boundary_timer.cancel()
        self._closed = True
        for t in self._prepare_threads:
            t.join(timeout=2)
        self.stop()
        self.engine.disarm()
        if self.driver is not None:
            self.driver.close()
            self.driver = None
        self._kit_dir.cleanup()

