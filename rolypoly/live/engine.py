"""The rolypoly object: the drum machine that plays a score with a musician.

One implementation drives everything.  Its typed Python API (:meth:`Rolypoly.read`,
:meth:`~Rolypoly.start`, :meth:`~Rolypoly.stop`, :meth:`~Rolypoly.set`,
:meth:`~Rolypoly.train`, ...) raises :class:`rolypoly.errors.RolypolyError`;
:meth:`Rolypoly.message` is the never-raising wrapper that the CLI, the OSC bridge,
Max and Pd use: a problem becomes an ``error`` outlet event.  Arguments are checked
in one place (:func:`check_message`), which the OSC bridge calls too.

The room's parts: this module (messages, attributes, outlets), :mod:`.block` (what
the compiled audio callback does per block), :mod:`.worker` (model ticks),
:mod:`.recorder` (what comes back from the audio side: onsets, hits, the take's
audio on disk), :mod:`.schedule` (the take's rows), :mod:`.drivers` (sound card,
JACK, offline, clock-only).

Messages (``engine.message(name, *args)``): ``read <score.mid>``, ``start``, ``stop``,
``train [w_v w_o w_g [w_r]]``, ``write [path]``, ``load <model>``, ``kit <file>``,
``introspect <from> <to...>``, ``soundcheck [seconds] [instrument]``, ``set <attribute> <value...>``.

Attributes: ``enable`` (model on; off = quantised machine), ``latency`` (onset-detector
compensation in ms; ``None`` = measured), ``lookahead`` (ms), ``filter_hits``
(score_notes / score_notes_and_vels / none), ``generate_vels`` (lo hi), ``loop``,
``device``, ``countin`` (bars of clicks before the score), ``follow`` (0..1: the share of
each onset's gap to the drums that they lean towards at once; see
:mod:`rolypoly.live.schedule`), and free mode's ``generate``
(off / continue / fill / free [bars [fill_every]]), ``density`` and ``complexity`` (0..1 or
auto): the event model extends or fills the score's rows, ``continue`` and ``free`` drawn by the
worker a bar ahead of the playhead, ``fill`` (and a looping take) at ``start`` (:mod:`rolypoly.free.live`).

Outlets (``engine.connect(outlet, callback)``): ``hit(sample, drum, velocity, offset_ms)``,
``onset(tau_ms, row, time_s)``, ``playhead(ms)``, ``status(text)``, ``error(text)``.
In real time outlets are delivered on their own thread from a bounded queue: a slow
receiver loses outlet events (counted in :attr:`Rolypoly.outlets_dropped`), never
delays the model or the audio.  Offline they are delivered by :meth:`pump`.

One owner per piece of state: the audio side's memory is written only by the block;
messages change it through single-word commands the block reads at a block boundary
(a take is handed over with :meth:`Stage.publish` and taken back with
:meth:`Stage.retire`).

Examples
--------
>>> eng = Rolypoly(load_config([]), offline=True)                  # doctest: +SKIP
>>> eng.connect("hit", print); eng.read("data/demo.mid")           # doctest: +SKIP
>>> eng.start()                                                    # doctest: +SKIP
"""
from __future__ import annotations

import math
import queue
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from rolypoly.config import check_value
from rolypoly.errors import EngineError, RolypolyError
from rolypoly.free.live import FREE_ATTRIBUTES, FreeMode
from rolypoly.free.live import check_attribute as check_free_attribute
from rolypoly.live import block as blk
from rolypoly.live.schedule import FILTERS, Schedule
from rolypoly.score import features as feat

OUTLETS = ("hit", "onset", "playhead", "status", "error")
MESSAGES = ("read", "start", "stop", "train", "write", "load", "kit", "introspect", "soundcheck", "set")
ATTRIBUTES = ("enable", "latency", "lookahead", "filter_hits", "generate_vels", "loop", "device", "countin",
              "follow") + FREE_ATTRIBUTES
PLAYHEAD_EVERY_MS = 50.0
MAX_LOOKAHEAD_MS = 2000.0
OUTLET_QUEUE = 4096
WARMUP_TICKS = 4
COUNTIN_DRUM = 2          # the closed hi-hat counts the band in
COUNTIN_VEL = (110, 80)   # first beat of a bar, other beats


# -- argument checks: the one place (the OSC bridge calls these too) -------------------------------
def as_bool(name, value) -> bool:
    if isinstance(value, (bool, int, float, np.bool_)) and not isinstance(value, str):
        if value not in (0, 1, True, False):
            raise EngineError(f"attribute {name}: expected 0 or 1, got {value!r}")
        return bool(value)
    s = str(value).strip().lower()
    if s in ("1", "on", "true", "yes"):
        return True
    if s in ("0", "off", "false", "no"):
        return False
    raise EngineError(f"attribute {name}: expected on/off (1/0), got {value!r}")


def as_float(name, value, lo, hi) -> float:
    if isinstance(value, (bytes, bytearray)):
        raise EngineError(f"{name}: expected a number, got a blob")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EngineError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v):
        raise EngineError(f"{name}: {value!r} is not a finite number")
    if not (lo <= v <= hi):
        raise EngineError(f"{name}: {value!r} is outside [{lo:g}, {hi:g}]")
    return v


_as_bool, _as_float = as_bool, as_float   # older names


def check_attribute(attribute, values) -> tuple:
    """Validate ``set <attribute> <values...>``; returns the value(s) to store.

    Raises
    ------
    EngineError
        Unknown attribute, wrong count, or a value out of range (the message names it).
    """
    attribute = str(attribute)
    if attribute not in ATTRIBUTES:
        raise EngineError(f"unknown attribute {attribute[:40]!r}; attributes: {', '.join(ATTRIBUTES)}")
    values = tuple(values)
    if attribute in FREE_ATTRIBUTES:  # generate, density, complexity
        return check_free_attribute(attribute, values)
    if attribute == "generate_vels":
        if len(values) != 2:
            raise EngineError("attribute generate_vels: expected two numbers lo hi in [0, 1]")
        lo, hi = check_value("engine.generate_vels", list(values), error=EngineError, label="attribute generate_vels")
        return (lo, hi)
    if len(values) != 1:
        raise EngineError(f"attribute {attribute}: expected 1 value (2 for generate_vels), got {len(values)}")
    v = values[0]
    if isinstance(v, str) and len(v) > 256:
        raise EngineError(f"attribute {attribute}: value is {len(v)} characters long (at most 256)")
    if attribute in ("enable", "loop"):
        return as_bool(attribute, v)
    if attribute == "latency":
        return None if str(v).lower() in ("none", "auto") else \
            check_value("listen.latency_ms", v, error=EngineError, label="attribute latency")
    if attribute == "lookahead":  # the config schema holds the ranges: the CLI and OSC agree
        return check_value("engine.lookahead_ms", v, error=EngineError, label="attribute lookahead")
    if attribute == "follow":
        return check_value("engine.follow", v, error=EngineError, label="attribute follow")
    if attribute == "countin":
        bars = as_float(f"attribute {attribute}", v, 0.0, 16.0)
        if bars != int(bars):
            raise EngineError(f"attribute countin: {v!r} is not a whole number of bars")
        return int(bars)
    if attribute == "filter_hits":
        return check_value("engine.filter_hits", v, error=EngineError, label="attribute filter_hits")
    # device
    return None if str(v).lower() in ("none", "default") else v


#: How many arguments each message takes, its usage line, and the ranges of its numbers: the one
#: table the engine and the OSC bridge check against.
ARG_COUNTS = {"read": (1,), "start": (0,), "stop": (0,), "train": (0, 3, 4), "write": (0, 1), "load": (0, 1),
              "kit": (0, 1), "soundcheck": (0, 1, 2)}
USAGE = {"read": "read <score.mid>", "start": "start", "stop": "stop", "train": "train [w_v w_o w_g [w_r]]",
         "write": "write [name.mid]", "load": "load [model.pt]", "kit": "kit [kit file]",
         "soundcheck": "soundcheck [seconds] [instrument]", "introspect": "introspect <from> <to...>",
         "set": "set <attribute> <value...>"}
TRAIN_WEIGHT_RANGE = (0.0, 100.0)
SOUNDCHECK_S_RANGE = (0.5, 60.0)


def check_message(name, args) -> tuple:
    """Validate a message's arguments (count and ranges); returns them normalised.

    Raises
    ------
    EngineError
        Unknown message or bad arguments (the message names which and why).
    """
    if name not in MESSAGES:
        raise EngineError(f"unknown message {str(name)[:40]!r}; messages: {', '.join(MESSAGES)}")
    args = tuple(args)

    def count(*allowed):
        if len(args) not in allowed:
            raise EngineError(f"{name}: expected {' or '.join(str(a) for a in allowed)} argument(s), got {len(args)}")

    if name == "read" and not args:
        raise EngineError("read needs a path to a MIDI score")
    if name in ARG_COUNTS:
        count(*ARG_COUNTS[name])
    if name == "train":
        names = ("w_v", "w_o", "w_g", "w_r")
        return tuple(as_float(f"train: weight {names[i]}", a, *TRAIN_WEIGHT_RANGE) for i, a in enumerate(args))
    elif name == "introspect":
        if len(args) < 2:
            raise EngineError("introspect needs a source drum and one or more target drums, e.g. introspect kick snare")
        if len(args) > 9:
            raise EngineError(f"introspect: at most 9 drums, got {len(args)}")
    elif name == "soundcheck":
        out = []
        if args:
            out.append(as_float("soundcheck seconds", args[0], *SOUNDCHECK_S_RANGE))
        if len(args) > 1:
            out.append(str(args[1])[:64])
        return tuple(out)
    elif name == "set":
        if not args:
            raise EngineError(f"set needs an attribute: {', '.join(ATTRIBUTES)}")
        check_attribute(args[0], args[1:])
    return args


class Rolypoly:
    """The drum machine (see module docs).

    Parameters
    ----------
    cfg : composed config (``rolypoly.config.load_config``)
    offline : run model ticks inline in :meth:`process` (deterministic, faster than real time)
    sr, block_frames : override ``cfg.audio``
    """

    max_lookahead_ms = MAX_LOOKAHEAD_MS

    def __init__(self, cfg, offline: bool = False, sr: int | None = None, block_frames: int | None = None):
        from rolypoly.live.recorder import Reader
        from rolypoly.live.worker import Worker
        self.cfg = cfg
        self.offline = offline
        self.sr = int(sr or cfg.audio.sample_rate)
        self.block_frames = int(block_frames or cfg.audio.block_frames)
        self._outlets: dict[str, list] = {o: [] for o in OUTLETS}
        self.events: queue.Queue = queue.Queue(maxsize=OUTLET_QUEUE)
        self.outlets_dropped = 0
        self.errors: list[str] = []
        # attributes
        self.enable = bool(cfg.engine.enable)
        self.latency_ms: float | None = cfg.listen.latency_ms
        self.lookahead_ms = float(cfg.engine.lookahead_ms)
        self.filter_hits = str(cfg.engine.filter_hits)
        self.generate_vels = tuple(float(v) for v in cfg.engine.generate_vels)
        self.loop = bool(cfg.engine.loop)
        self.device = cfg.audio.device
        self.countin = int(cfg.engine.get("countin", 0) or 0)
        self.follow = float(cfg.engine.get("follow", 0.0) or 0.0)
        self.follow_min = float(cfg.engine.follow_min)
        self.follow_reset_ms = float(cfg.engine.follow_reset_ms)
        self.follow_drums = float(cfg.engine.follow_drums)
        self.free = FreeMode.from_config(cfg)   # free mode: generate / density / complexity
        # components
        self.score = None
        self.score_path: str | None = None
        self.schedule: Schedule | None = None
        self.runtime = None
        self.model_path = str(cfg.engine.model_path)
        self.kit_path = cfg.synth.kit
        self.renderer = None
        self.stage: blk.Stage | None = None
        self.listener = None
        self.last_take: Path | None = None
        self.take_settings: dict = {}
        self.worker = Worker(self)
        self.reader = Reader(self)
        self.driver = None                 # set by a real-time driver while it runs blocks
        self._worker_thread: threading.Thread | None = None
        self._worker_stop = threading.Event()
        self._outlet_thread: threading.Thread | None = None
        self._train_thread: threading.Thread | None = None
        self._next_playhead = 0
        self._soundcheck = None
        self._patterns = None
        self._introspect_n = 0
        self._partial: Path | None = None
        self._lock = threading.RLock()     # one message at a time, from any thread
        self.block_ms_budget = 1000.0 * self.block_frames / self.sr

    # -- state ---------------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        """A take is running (started and not at its end)."""
        return self.schedule is not None and not self.schedule.done and self._take_open

    _take_open = False
    _threaded = False

    @property
    def take_open(self) -> bool:
        """A take was started and not yet stopped (it may have reached its end: then ``stop`` saves it)."""
        return self._take_open

    @property
    def sample(self) -> int:
        return self.schedule.sample if self.schedule is not None else 0

    @property
    def tick_ms(self) -> list[float]:
        return self.worker.tick_ms

    @property
    def _hits(self) -> list[dict]:
        return self.reader.hits

    @property
    def _onsets(self) -> list[dict]:
        return self.reader.onsets

    # -- outlets -------------------------------------------------------------------------------------
    def connect(self, outlet: str, callback) -> None:
        """Call ``callback(*values)`` for every event on ``outlet``."""
        if outlet not in self._outlets:
            raise EngineError(f"unknown outlet {outlet!r}; outlets: {', '.join(OUTLETS)}")
        self._outlets[outlet].append(callback)

    def emit(self, outlet: str, *values) -> None:
        """Queue an outlet event (any thread but the audio one); dropped and counted when the queue is full."""
        if outlet == "error":
            self.errors = (self.errors + [str(values[0])])[-50:]
        if (not self.offline or self._threaded) and self._outlet_thread is None:
            self._start_outlets()
        try:
            self.events.put_nowait((outlet, values))
        except queue.Full:
            self.outlets_dropped += 1

    def last_errors(self) -> list[str]:
        """The most recent error messages (newest last)."""
        self.pump()
        return list(self.errors)

    def status(self, text: str) -> None:
        self.emit("status", text)

    def pump(self) -> int:
        """Deliver queued events to the outlets now (the outlet thread does this in real time)."""
        n = 0
        while True:
            try:
                outlet, values = self.events.get_nowait()
            except queue.Empty:
                break
            try:
                self._deliver(outlet, values)
            finally:
                self.events.task_done()
            n += 1
        return n

    def _deliver(self, outlet, values) -> None:
        for cb in self._outlets[outlet]:
            try:
                cb(*values)
            except Exception as exc:  # a receiver's bug must not stop the show
                if outlet != "error":
                    for ecb in self._outlets["error"]:
                        try:
                            ecb(f"outlet {outlet} callback failed: {exc}")
                        except Exception:
                            pass

    def _outlet_loop(self) -> None:
        while True:
            item = self.events.get()
            try:
                if item is None:
                    return
                self._deliver(*item)
            finally:
                self.events.task_done()

    def _start_outlets(self) -> None:
        if self._outlet_thread is not None and self._outlet_thread.is_alive():
            return
        self._outlet_thread = threading.Thread(target=self._outlet_loop, name="rolypoly-outlets", daemon=True)
        self._outlet_thread.start()

    # -- the message layer ---------------------------------------------------------------------------
    def message(self, name: str, *args) -> bool:
        """Handle one message; never raises: problems go to the ``error`` outlet (returns False)."""
        try:
            args = check_message(name, args)
            getattr(self, name)(*args)
            return True
        except RolypolyError as exc:
            self.emit("error", f"{name}: {exc}")
        except Exception as exc:  # never crash a running performance on a message
            self.emit("error", f"{name}: internal error {type(exc).__name__}: {exc}")
            if getattr(self.cfg, "debug", False):
                traceback.print_exc()
        finally:
            if self._outlet_thread is None:
                self.pump()
        return False

    # -- the typed API -------------------------------------------------------------------------------
    def read(self, score) -> None:
        """Read a score (a MIDI path or a :class:`rolypoly.score.midi.Score`) and get ready to play it.

        Loads and warms up the model and the synth, so ``start`` plays at once.  A take in
        progress is stopped and saved first.
        """
        import warnings
        if isinstance(score, (str, Path)):
            from rolypoly.score.midi import read_score
            path = str(score)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sc = read_score(path, merge_tolerance_ms=float(self.cfg.data.merge_tolerance_ms))
            for w in caught:
                self.status(f"warning: {w.message}")
        elif hasattr(score, "n_rows") and hasattr(score, "vel"):
            sc, path = score, None
        else:
            raise EngineError(f"read: expected a MIDI path or a Score, got {type(score).__name__}")
        if sc.n_rows < 1:
            raise EngineError(f"read: {path or 'score'} has no rows")
        with self._lock:
            if self._take_open:
                self.stop()
            self.score, self.score_path, self.schedule = sc, path, None
        self.status(f"read {path or 'score'}: {sc.n_rows} rows, {int(sc.bar[-1]) + 1} bars, {sc.length_ms / 1000:.1f} s")
        self.warm_up()

    def _ensure_parts(self, where: str) -> None:
        """The model (when enabled), the stage and the listener, made if missing; a model that
        fails to load is reported (``where`` prefixes the message) and the score plays as written."""
        if self.enable and self.runtime is None:
            try:
                self.load()
            except RolypolyError as exc:
                self.emit("error", f"{where}{exc}; playing the score as written")
        self._ensure_stage()
        if self.listener is None:
            self._make_listener()
            self.listener.process(np.zeros(4 * self.block_frames, np.float32))  # load its kernels now
            self.listener.reset()

    def warm_up(self) -> None:
        """Load what ``start`` needs and run a few dummy ticks and blocks (compilation, caches)."""
        self._ensure_parts("")
        if self.runtime is not None and self.score is not None:
            sched = Schedule(self.score, self.sr, window=self._window())
            try:
                if getattr(self.runtime, "supports_step", False):
                    self.runtime.reset(sched.x_static)
                    prev = None
                    for k in range(min(WARMUP_TICKS, sched.N)):
                        self.runtime.step(prev, sched.x_static[k])
                        prev = sched.x_static[k]
                else:
                    for k in range(min(WARMUP_TICKS, sched.N)):
                        sched.next_predict = k
                        self.runtime.predict(sched.next_window()[1])
            except Exception as exc:
                self.emit("error", f"model warm-up failed: {exc}")

    def load(self, path=None) -> None:
        """Load a TorchScript model (``engine.model_path`` by default); the old one stays on failure."""
        from rolypoly.model.export import load_runtime
        path = str(path or self.cfg.engine.model_path)
        runtime = load_runtime(path)
        if self._take_open:
            raise EngineError("load: stop first (the model cannot change under a running take)")
        self.runtime, self.model_path = runtime, path
        self.status(f"loaded model {path} (version {runtime.version})")

    def kit(self, path=None) -> None:
        """Load a drum kit (the default kit when ``path`` is None)."""
        from rolypoly.synth import BlockRenderer, load_kit
        kit = load_kit(path)
        if self._take_open:
            raise EngineError("kit: stop first (the kit cannot change under a running take)")
        renderer = BlockRenderer(kit, sr=self.sr, block_frames=self.block_frames,
                                 polyphony=int(self.cfg.synth.polyphony),
                                 steal_fade_ms=float(self.cfg.synth.steal_fade_ms))
        if self.stage is None or renderer.coefs.shape != self.renderer.coefs.shape:
            if self.stage is not None and self.driver is not None:
                raise EngineError("kit: a kit of another polyphony needs the audio stopped")
            self.renderer = renderer
            self.stage = blk.Stage(renderer, max_block=max(4096, self.block_frames))
        else:  # same bank shape: the new patches go into the arrays the block already reads
            self.renderer.params[:] = renderer.params
            self.renderer.pans[:] = renderer.pans
            self.renderer.groups[:] = renderer.groups
            st = self.stage._stage_arrays
            st[9][:], st[10][:], st[11][:] = renderer.params, renderer.pans, renderer.groups
            self.renderer.kit = kit
        self.kit_path = path
        self.status(f"kit {getattr(kit, 'name', path)}")

    def _ensure_stage(self) -> None:
        if self.stage is None:
            self.kit(self.kit_path)

    def set(self, attribute: str, *values) -> None:
        """Set an attribute (validated by :func:`check_attribute`; see module docs)."""
        v = check_attribute(attribute, values)
        if attribute in FREE_ATTRIBUTES:
            self.free.set(attribute, *values)
        elif attribute == "generate_vels":
            self.generate_vels = v
            self.free.window = v
        elif attribute == "enable":
            self.enable = v
        elif attribute == "latency":
            self.latency_ms = v
        elif attribute == "lookahead":
            self.lookahead_ms = v
        elif attribute == "filter_hits":
            self.filter_hits = v
        elif attribute == "loop":
            if self._take_open:
                raise EngineError("attribute loop: stop first (it changes the take's length)")
            self.loop = v
        elif attribute == "countin":
            self.countin = v
        elif attribute == "follow":
            self.follow = v
        elif attribute == "device":
            self.device = v
        if self.schedule is not None:
            self._apply_attributes(self.schedule)
        self.status(f"{attribute} = {' '.join(str(x) for x in values)}")

    def _apply_attributes(self, sched: Schedule) -> None:
        # single words the block reads at its next boundary
        sched.filter_hits = self.filter_hits
        sched.generate_vels = self.generate_vels
        sched.follow = self.follow
        sched.follow_min = self.follow_min
        sched.follow_reset_ms = self.follow_reset_ms
        sched.follow_drums = self.follow_drums
        sched.use_model = self.enable and self.runtime is not None and not self.worker._failed

    def _window(self) -> int:
        return int(getattr(self.runtime, "window", feat.DEFAULT_WINDOW))

    def start(self) -> None:
        """Start a take of the score read; the first block after this plays its first sample.

        After :meth:`arm`, with nothing changed since, this only hands the armed take to
        the audio side (a single command word) and starts its threads.
        """
        with self._lock:
            if self.score is None:
                raise EngineError("no score: send 'read <score.mid>' first")
            if self._take_open:
                self.stop()
            armed, self._armed = self._armed, None
            if armed is not None and armed[0] == self._arm_key():
                sched, writer = armed[2], armed[3]
                self.take_settings["started"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            else:
                if armed is not None:
                    self._discard(armed[3])
                sched, writer = self._new_take()
            self.reader.begin(sched, self.listener, writer)
            self.schedule = sched
            self._take_open = True
            self.stage.publish(sched)
            # a real-time driver runs the block itself: the worker and the reader get threads
            self._threaded = not self.offline or self.driver is not None
            if self._threaded:
                self._start_outlets()
                self.reader.start_thread()
                self._worker_stop = threading.Event()   # its own: a hung thread of an old take never resumes
                self._worker_thread = threading.Thread(target=self.worker.run, args=(sched, self._worker_stop),
                                                       name="rolypoly-model", daemon=True)
                self._worker_thread.start()
        self.status("start")

    def _new_take(self):
        """Everything a take needs before the audio side gets it: its schedule (first rows
        predicted) and the writer its audio streams into."""
        self._ensure_parts("start: ")
        self.listener.reset()
        try:  # free mode: the score continued, filled or improvised by the event model
            self.score = self.free.prepare(self.score, live=not self.loop)
            ahead = self.free.ahead
            if ahead is not None:
                self.status(f"generate {self.free.mode}: bars {ahead.next_bar}-{ahead.end_bar - 1} drawn a bar "
                            "ahead of the playhead")
            elif self.free.last is not None:
                self.status(f"generate {self.free.mode}: {int(self.free.last.generated.sum())} rows from bar "
                            f"{self.free.last.first_bar}")
        except RolypolyError as exc:
            self.emit("error", f"start: generate: {exc}; playing the score as written")
            ahead = self.free.ahead = None
        if ahead is not None:  # room for the rows the worker will draw, and the take's full length
            sched = Schedule(self.score, self.sr, window=self._window(), extra_rows=ahead.max_rows,
                             length_ms=ahead.length_ms)
            sched.ahead = ahead
        else:
            sched = Schedule(self.score, self.sr, loop=self.loop, window=self._window())
        self._apply_attributes(sched)
        countin = self._countin_samples()
        sched.tc[blk.SAMPLE] = -countin
        if countin:
            self._queue_clicks(sched, countin)
        self.worker.reset(sched)
        self.take_settings = self._settings()
        writer = self._open_writer()
        # the rows due before the worker's first tick are predicted now, not played late
        before, self.schedule = self.schedule, sched
        try:
            self._tick(sched.sample + self.block_frames + self.worker.lookahead_ms() * self.sr / 1000.0)
        finally:
            self.schedule = before       # start sets it; an armed take is not the engine's yet
        return sched, writer

    # -- an armed take: the next start made ahead of time (real time: the box's MIDI start) -----------
    _armed = None

    def _arm_key(self) -> tuple:
        # what an armed take was made from; anything changed since and start makes it again
        objs = (self.score, self.runtime, self.listener, self.stage, self.renderer)
        return (tuple(id(o) for o in objs), self.kit_path, self.model_path, self.enable, self.loop, self.countin,
                self.follow, self.lookahead_ms, self.latency_ms, self.filter_hits, self.generate_vels, self.device,
                self.block_frames, self.free.describe())

    def arm(self) -> bool:
        """Make the next take now (schedule, first predictions, the take's files open) so that
        :meth:`start` only has to hand it to the audio side.

        Between takes only, and not in free mode (there ``start`` generates the score anew).
        Whatever changes before the start (a score, kit, model or attribute) makes ``start``
        discard the armed take and make a fresh one, so the take played is the same either way.
        Returns whether a take is armed.
        """
        with self._lock:
            self.disarm()
            if self._take_open or self.score is None or self.free.mode != "off":
                return False
            sched, writer = self._new_take()
            objs = (self.score, self.runtime, self.listener, self.stage, self.renderer)   # kept alive: ids stay theirs
            self._armed = (self._arm_key(), objs, sched, writer)
            return True

    def disarm(self) -> None:
        """Drop an armed take that will not be started (its hidden folder is removed)."""
        with self._lock:
            armed, self._armed = self._armed, None
            if armed is not None:
                self._discard(armed[3])

    def _discard(self, writer) -> None:
        if writer is None:
            return
        import shutil
        writer.close()
        shutil.rmtree(writer.folder, ignore_errors=True)

    def _countin_samples(self) -> int:
        if not self.countin:
            return 0
        return int(round(self.countin * float(self.score.bar_ms[0]) * self.sr / 1000.0))

    def _queue_clicks(self, sched: Schedule, countin: int) -> None:
        # the count-in's clicks go straight into the take's pending hits before it is handed over
        beats = int(round(self.countin * float(self.score.tsig[0]) * 4)) if self.score.tsig[0] < 4 else \
            int(self.countin * 4)
        beats = max(1, beats)
        per = countin / beats
        per_bar = max(1, beats // self.countin)
        for b in range(beats):
            p = sched.n_pending
            sched.pend[p] = (int(round(-countin + b * per)), COUNTIN_DRUM,
                             COUNTIN_VEL[0] if b % per_bar == 0 else COUNTIN_VEL[1], -1)
            sched.tc[blk.N_PEND] = p + 1

    def stop(self) -> None:
        """Stop the take (saving it); the drums' tails ring on."""
        with self._lock:
            if not self._take_open:
                self.status("stop (nothing playing)")
                return
            sched = self.schedule
            self.stage.retire()
            if self.driver is not None and getattr(self.driver, "running", False):
                deadline = time.monotonic() + 0.5
                while not self.stage.acknowledged() and time.monotonic() < deadline:
                    time.sleep(0.001)
            self._worker_stop.set()
            if self._worker_thread is not None and self._worker_thread is not threading.current_thread():
                self._worker_thread.join(timeout=2)
                if self._worker_thread.is_alive():
                    self.emit("error", "model worker did not stop within 2 s (a hung tick); the take is saved anyway")
            self._worker_thread = None
            if self._threaded:
                self.reader.stop_thread()
            writer = self.reader.end()
            self._take_open = False
            self._save_take(sched, writer)
            self.schedule = None
        self.flush_outlets()

    def flush_outlets(self, timeout_s: float = 1.0) -> None:
        """Wait (at most ``timeout_s``) until every queued outlet event has been delivered."""
        if self._outlet_thread is None or self._outlet_thread is threading.current_thread():
            self.pump()
            return
        deadline = time.monotonic() + timeout_s
        while self.events.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.002)

    def write(self, path=None) -> None:
        """Copy the last take's performance MIDI to ``path`` (a ``.mid``)."""
        if self.last_take is None:
            raise EngineError("nothing to write yet: play a take first")
        src = self.last_take / "performance.mid"
        if path is None:
            self.status(f"wrote {src}")
            return
        dest = Path(str(path))
        if dest.suffix.lower() not in (".mid", ".midi"):
            raise EngineError(f"write: {dest} must end in .mid")
        from rolypoly.io import atomic_path
        import shutil
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        self.status(f"wrote {dest}")

    def train(self, *weights) -> None:
        """Finetune on the last take (in a thread in real time); the new model is loaded when done."""
        from rolypoly.learn.finetune import parse_weights, train_after_take
        if self.last_take is None:
            raise EngineError("train: no take yet (play one first)")
        if self._train_thread is not None and self._train_thread.is_alive():
            raise EngineError("train: a finetune is already running")
        w = parse_weights(weights, self.cfg.finetune)
        take = self.last_take

        def job():
            try:
                version = train_after_take(self.cfg, take, base_model=self.model_path, weights=w,
                                           on_progress=lambda text: self.status(text))
                from rolypoly.model.export import load_runtime
                rt = load_runtime(str(version.torchscript))
                with self._lock:  # swapped between takes only: a running take keeps its model
                    while self._take_open and not self.offline:
                        self._lock.release()
                        time.sleep(0.05)
                        self._lock.acquire()
                    self.runtime, self.model_path = rt, str(version.torchscript)
                self.status(f"trained: new model version {version.path}")
            except RolypolyError as exc:
                self.emit("error", f"train: {exc}")
            except Exception as exc:
                self.emit("error", f"train: internal error {type(exc).__name__}: {exc}")
            if self._outlet_thread is None:
                self.pump()

        if self.offline:
            job()
        else:
            self._train_thread = threading.Thread(target=job, name="rolypoly-train", daemon=True)
            self._train_thread.start()

    def wait_for_training(self, timeout: float | None = None) -> None:
        if self._train_thread is not None:
            self._train_thread.join(timeout)
        self.pump()

    def introspect(self, src=None, *dsts) -> None:
        """Rewrite the target drums' parts from the source drum's (pattern corpus)."""
        if self.score is None:
            raise EngineError("introspect: no score loaded")
        if src is None or not dsts:
            raise EngineError("introspect needs a source drum and one or more target drums, e.g. introspect kick snare")
        if self._take_open:
            raise EngineError("introspect: stop first (the score cannot change under a running take)")
        from rolypoly.patterns.introspect import PatternTable, generate_for_score
        from rolypoly.score.drums import drum_index
        a = drum_index(str(src))
        bs = [drum_index(str(d)) for d in dsts]
        if self._patterns is None:  # opening checks the corpus hash: once per engine
            self._patterns = PatternTable.open(self.cfg)
        self._introspect_n += 1
        seed = self.cfg.introspect.seed
        seed = None if seed is None else int(seed) + self._introspect_n  # repeated asks vary, reproducibly
        self.score = generate_for_score(self.score, a, bs, self._patterns, seed=seed)
        self.schedule = None
        self.status(f"introspect: new {', '.join(str(d) for d in dsts)} part from {src}; send start to play it")

    def soundcheck(self, seconds=4.0, instrument=None) -> None:
        """Listen for ``seconds`` between takes and fit the listener to the instrument."""
        seconds = as_float("soundcheck seconds", seconds, 0.5, 60.0)
        if self._take_open:
            raise EngineError("soundcheck: stop the take first (a sound check during a take would re-date its onsets)")
        self._ensure_stage()
        self._soundcheck = {"need": int(seconds * self.sr), "buf": np.zeros(int(seconds * self.sr), np.float32),
                            "n": 0, "instrument": str(instrument or self.cfg.listen.instrument)}
        if self.driver is not None:
            self._start_outlets()
            self.reader.start_thread()
        self.status(f"soundcheck: play for {seconds:g} s")

    # old message-method names (msg_<name>) for code written against them
    def __getattr__(self, name):
        if name.startswith("msg_") and name[4:] in MESSAGES:
            return getattr(self, name[4:])
        raise AttributeError(name)

    # -- the audio side, driven from Python (offline and clock-only drivers) -------------------------
    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        """One block from Python: ``inp`` (B,) in, ``out`` (B, 2) filled (the compiled block, as the JACK callback runs it).

        Offline, the model ticks before the block and the reader runs after it, inline,
        so the output is deterministic.
        """
        self._ensure_stage()
        sched = self.schedule if self._take_open else None
        if not self._threaded and sched is not None and not sched.done:
            self._tick(sched.sample + out.shape[0] + self.worker.lookahead_ms() * self.sr / 1000.0)
        self.stage.run(inp, out)
        if not self._threaded or self.reader._thread is None:
            self.reader.drain()

    def _tick(self, horizon_sample: float) -> int:
        """Predict every row due before the horizon (the worker's side)."""
        sched = self.schedule
        if sched is None:
            return 0
        return self.worker.tick(sched, horizon_sample)

    def effective_lookahead_ms(self) -> float:
        """The lookahead in use: fixed offline, grown from measured ticks in real time."""
        return self.worker.lookahead_ms()

    # -- sound check -----------------------------------------------------------------------------------
    def _soundcheck_feed(self, data: np.ndarray) -> None:
        sc = self._soundcheck
        if sc is None:
            return
        n = min(len(data), sc["need"] - sc["n"])
        sc["buf"][sc["n"]:sc["n"] + n] = data[:n]
        sc["n"] += n
        if sc["n"] >= sc["need"]:
            self._soundcheck = None
            self.emit("status", "soundcheck: analysing")
            self._finish_soundcheck(sc)   # on the reader (or offline) thread, never the audio one

    def _finish_soundcheck(self, sc) -> None:
        from rolypoly.ears.listener import soundcheck
        try:
            settings = soundcheck(sc["buf"], self.sr, instrument=sc["instrument"])
            if self._take_open:
                raise EngineError("a take started during the analysis; its listener is kept")
            self._make_listener(settings)
            self.emit("status", f"soundcheck: {settings}")
        except RolypolyError as exc:
            self.emit("error", f"soundcheck: {exc}")

    # -- internals ---------------------------------------------------------------------------------------
    def _make_listener(self, settings: dict | None = None) -> None:
        from rolypoly.ears.listener import Listener
        if settings:
            self.listener = Listener(sr=self.sr, on_warning=lambda m: self.emit("status", f"warning: {m}"), **settings)
        else:
            self.listener = Listener.from_config(self.cfg.listen, self.sr,
                                                 on_warning=lambda m: self.emit("status", f"warning: {m}"))

    def _settings(self) -> dict:
        return {"score": self.score_path, "sample_rate": self.sr, "block_frames": self.block_frames,
                "enable": self.enable, "latency_ms": self.latency_ms, "lookahead_ms": self.lookahead_ms,
                "filter_hits": self.filter_hits, "generate_vels": list(self.generate_vels), "loop": self.loop,
                "countin_bars": self.countin, "follow": self.follow, "follow_min": self.follow_min,
                "follow_reset_ms": self.follow_reset_ms, "follow_drums": self.follow_drums, "countin_samples": self._countin_samples(), "free": self.free.describe(),
                "model": self.model_path if self.runtime is not None else None,
                "model_version": getattr(self.runtime, "version", None),
                "model_step": bool(getattr(self.runtime, "supports_step", False)),
                "kit": str(self.kit_path), "listener": dict(getattr(self.listener, "settings", {}) or {}),
                "offline": self.offline, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def _open_writer(self):
        from rolypoly.live.recorder import TakeWriter
        from rolypoly.live.takes import partial_dir
        self._partial = partial_dir(self.cfg.takes_dir, time.strftime("%Y%m%d-%H%M%S"))
        try:
            return TakeWriter(self._partial, self.sr, fmt=str(self.cfg.engine.get("take_format", "wav")))
        except Exception as exc:
            self.emit("error", f"cannot stream the take to {self._partial}: {exc}; nothing of it will be saved")
            self._partial = None
            return None

    # -- take record -------------------------------------------------------------------------------------
    def take_rows(self, sched: Schedule | None = None) -> dict[str, np.ndarray]:
        """Per-row record of a take (rows committed so far)."""
        sched = sched or self.schedule
        log = getattr(self.reader, "rowlog", None)
        if log is not None and log.sched is sched:
            rows = log.rows()
            if rows:
                return rows
        K = sched.next_commit
        if sched.loop:  # the slots hold the last `capacity` rows only
            ks = np.arange(max(0, K - sched.capacity), K)
        else:
            ks = np.arange(K)
        return sched.row_record(ks)

    def performance_score(self, sched: Schedule | None = None, rows: dict | None = None):
        """The drums as played (the score's first pass), as a Score (realised velocities and offsets)."""
        sched = sched or self.schedule
        rows = rows if rows is not None else self.take_rows(sched)
        first = rows["k"] < sched.N
        perf = sched.score.copy()
        perf.vel = np.zeros_like(perf.vel)
        perf.off = np.zeros_like(perf.off)
        perf.vel[rows["k"][first]] = rows["real_vel"][first]
        perf.off[rows["k"][first]] = rows["real_off"][first]
        return perf

    def _save_take(self, sched: Schedule, writer) -> None:
        from rolypoly.live.takes import finish_take, save_take
        tick = self.worker.tick_ms
        settings = dict(self.take_settings)
        settings.update({"rows_played": int(sched.next_commit), "late_rows": int(sched.late_rows),
                         "early_rows": int(sched.early_rows),
                         "dropped_hits": int(sched.dropped_hits), "onsets": len(self.reader.onsets),
                         "hits": len(self.reader.hits), "samples": int(max(sched.sample, 0)),
                         "lookahead_effective_ms": self.effective_lookahead_ms(),
                         "listener": dict(getattr(self.listener, "settings", {}) or {}),
                         "outlets_dropped": int(self.outlets_dropped),
                         "input_dropped_samples": int(self.stage.ctl[blk.IN_DROPPED]),
                         "tick_ms_p50": float(np.percentile(tick, 50)) if tick else None,
                         "tick_ms_p99": float(np.percentile(tick, 99)) if tick else None})
        rows = self.take_rows(sched)
        try:
            midi = self.performance_score(sched, rows).to_midi()
        except Exception:
            midi = None
        try:
            if writer is not None:
                writer.close()
                if writer.error:
                    self.emit("error", f"the take's audio could not be written completely: {writer.error}")
                self.last_take = finish_take(writer.folder, self.cfg.takes_dir, settings, rows, self.reader.onsets,
                                             self.reader.hits, self.score_path, midi)
            else:
                self.last_take = save_take(self.cfg.takes_dir, settings, rows, self.reader.onsets, self.reader.hits,
                                           None, self.sr, self.score_path, midi)
            self.status(f"take saved: {self.last_take} ({sched.next_commit} rows, {len(self.reader.onsets)} onsets, "
                        f"{sched.late_rows} late)")
        except OSError as exc:
            self.emit("error", f"could not save the take: {exc}")
        if self._outlet_thread is None:
            self.pump()
