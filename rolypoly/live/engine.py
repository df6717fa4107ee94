"""The rolypoly object: the drum machine that plays a score with a musician.

One implementation drives everything: the CLI, the OSC bridge and the tests send it
*messages* and set *attributes*, an audio driver calls :meth:`Rolypoly.process` once a
block, and *outlets* report what happens.

Messages (``engine.message(name, *args)``): ``read <score.mid>``, ``start``, ``stop``,
``train [w_v w_o w_g [w_r]]``, ``write [path]``, ``load <model>``, ``kit <file>``,
``introspect <from> <to...>``, ``soundcheck [seconds] [instrument]``, ``set <attribute> <value...>``.

Attributes: ``enable`` (model on; off = quantised machine), ``latency`` (onset-detector
compensation in ms; ``None`` = measured), ``lookahead`` (ms), ``filter_hits``
(score_notes / score_notes_and_vels / none), ``generate_vels`` (lo hi), ``loop``, ``device``.

Outlets (``engine.connect(outlet, callback)``): ``hit(sample, drum, velocity, offset_ms)``,
``onset(tau_ms, row, time_s)``, ``playhead(ms)``, ``status(text)``, ``error(text)``.
Outlets are called from :meth:`pump` (the worker thread in real time, the driver loop
offline), never from the audio thread: the audio thread only appends to a queue.

A bad message never stops a performance: it ends up on the ``error`` outlet.

Examples
--------
>>> eng = Rolypoly(load_config([]), offline=True)                  # doctest: +SKIP
>>> eng.connect("hit", print); eng.message("read", "data/demo.mid")  # doctest: +SKIP
>>> eng.message("start")                                             # doctest: +SKIP
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from collections import deque
from pathlib import Path

import numpy as np

from rolypoly.errors import EngineError, RolypolyError
from rolypoly.live.schedule import FILTERS, Schedule
from rolypoly.score import features as feat

OUTLETS = ("hit", "onset", "playhead", "status", "error")
MESSAGES = ("read", "start", "stop", "train", "write", "load", "kit", "introspect", "soundcheck", "set")
ATTRIBUTES = ("enable", "latency", "lookahead", "filter_hits", "generate_vels", "loop", "device")
PLAYHEAD_EVERY_MS = 50.0
MAX_LOOKAHEAD_MS = 2000.0


def _as_bool(name, value) -> bool:
    if isinstance(value, (bool, int, float)) and not isinstance(value, str):
        if value not in (0, 1, True, False):
            raise EngineError(f"attribute {name}: expected 0 or 1, got {value!r}")
        return bool(value)
    s = str(value).strip().lower()
    if s in ("1", "on", "true", "yes"):
        return True
    if s in ("0", "off", "false", "no"):
        return False
    raise EngineError(f"attribute {name}: expected on/off (1/0), got {value!r}")


def _as_float(name, value, lo, hi) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EngineError(f"attribute {name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or not (lo <= v <= hi):
        raise EngineError(f"attribute {name}: {value!r} is outside [{lo:g}, {hi:g}]")
    return v


class Rolypoly:
    """The drum machine (see module docs).

    Parameters
    ----------
    cfg : composed config (``rolypoly.config.load_config``)
    offline : run model ticks inline in :meth:`process` (deterministic, faster than real time)
    sr, block_frames : override ``cfg.audio``
    """

    def __init__(self, cfg, offline: bool = False, sr: int | None = None, block_frames: int | None = None):
        self.cfg = cfg
        self.offline = offline
        self.sr = int(sr or cfg.audio.sample_rate)
        self.block_frames = int(block_frames or cfg.audio.block_frames)
        self._outlets: dict[str, list] = {o: [] for o in OUTLETS}
        self.events: deque = deque()
        self.errors: deque = deque(maxlen=50)
        # attributes
        self.enable = bool(cfg.engine.enable)
        self.latency_ms: float | None = cfg.listen.latency_ms
        self.lookahead_ms = float(cfg.engine.lookahead_ms)
        self.filter_hits = str(cfg.engine.filter_hits)
        self.generate_vels = tuple(float(v) for v in cfg.engine.generate_vels)
        self.loop = bool(cfg.engine.loop)
        self.device = cfg.audio.device
        # components
        self.score = None
        self.score_path: str | None = None
        self.schedule: Schedule | None = None
        self.runtime = None
        self.model_path = str(cfg.engine.model_path)
        self.kit_path = cfg.synth.kit
        self.renderer = None
        self.listener = None
        self.playing = False
        self.sample = 0
        self.last_take: Path | None = None
        self.take_settings: dict = {}
        self._worker: threading.Thread | None = None
        self._train_thread: threading.Thread | None = None
        self._input = None
        self._input_len = 0
        self._hits: list[dict] = []
        self._onsets: list[dict] = []
        self._next_playhead = 0
        self._model_ms = deque(maxlen=64)
        self._soundcheck = None
        self._patterns = None
        self._introspect_n = 0
        self.tick_ms: list[float] = []
        self.block_ms_budget = 1000.0 * self.block_frames / self.sr

    # -- outlets -------------------------------------------------------------------------
    def connect(self, outlet: str, callback) -> None:
        """Call ``callback(*values)`` for every event on ``outlet``."""
        if outlet not in self._outlets:
            raise EngineError(f"unknown outlet {outlet!r}; outlets: {', '.join(OUTLETS)}")
        self._outlets[outlet].append(callback)

    def emit(self, outlet: str, *values) -> None:
        self.events.append((outlet, values))

    def last_errors(self) -> list[str]:
        """The most recent error messages (newest last)."""
        self.pump()
        return list(self.errors)

    def status(self, text: str) -> None:
        self.emit("status", text)

    def pump(self) -> int:
        """Deliver queued events to the outlets (never on the audio thread)."""
        n = 0
        while True:
            try:  # popleft is atomic: several threads may pump at once
                outlet, values = self.events.popleft()
            except IndexError:
                break
            if outlet == "hit":
                self._hits.append({"sample": values[0], "drum": values[1], "velocity": values[2],
                                   "offset_ms": values[3]})
            elif outlet == "error":
                self.errors.append(values[0])
            elif outlet == "onset":
                self._onsets.append({"tau_ms": values[0], "row": values[1], "time_s": values[2]})
            for cb in self._outlets[outlet]:
                try:
                    cb(*values)
                except Exception as exc:  # a listener's bug must not stop the show
                    if outlet != "error":
                        for ecb in self._outlets["error"]:
                            ecb(f"outlet {outlet} callback failed: {exc}")
            n += 1
        return n

    # -- messages ------------------------------------------------------------------------
    def message(self, name: str, *args) -> bool:
        """Handle one message; problems go to the ``error`` outlet (returns False)."""
        try:
            if name not in MESSAGES:
                raise EngineError(f"unknown message {name!r}; messages: {', '.join(MESSAGES)}")
            getattr(self, f"msg_{name}")(*args)
            return True
        except TypeError as exc:
            self.emit("error", f"{name}: wrong arguments ({exc})")
        except RolypolyError as exc:
            self.emit("error", f"{name}: {exc}")
        except Exception as exc:  # never crash a running performance on a message
            self.emit("error", f"{name}: internal error {type(exc).__name__}: {exc}")
            if getattr(self.cfg, "debug", False):
                traceback.print_exc()
        finally:
            if not self.playing or self.offline:
                self.pump()
        return False

    def msg_read(self, path=None) -> None:
        if path is None:
            raise EngineError("read needs a path to a MIDI score")
        import warnings

        from rolypoly.score.midi import read_score
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            score = read_score(str(path), merge_tolerance_ms=float(self.cfg.data.merge_tolerance_ms))
        for w in caught:
            self.status(f"warning: {w.message}")
        if self.playing:
            self.msg_stop()
        self.score, self.score_path, self.schedule = score, str(path), None
        self.status(f"read {path}: {score.n_rows} rows, {int(score.bar[-1]) + 1} bars, {score.length_ms / 1000:.1f} s")

    def msg_load(self, path=None) -> None:
        from rolypoly.model.export import load_runtime
        path = str(path or self.cfg.engine.model_path)
        runtime = load_runtime(path)  # raises ModelError; the old model stays on failure
        self.runtime, self.model_path = runtime, path
        self.status(f"loaded model {path} (version {runtime.version})")

    def msg_kit(self, path=None) -> None:
        from rolypoly.synth import BlockRenderer, load_kit
        kit = load_kit(path)
        renderer = BlockRenderer(kit, sr=self.sr, block_frames=self.block_frames, polyphony=int(self.cfg.synth.polyphony),
                                 steal_fade_ms=float(self.cfg.synth.steal_fade_ms))
        self.renderer, self.kit_path = renderer, path
        self.status(f"kit {getattr(kit, 'name', path)}")

    def msg_set(self, attribute=None, *values) -> None:
        if attribute is None:
            raise EngineError(f"set needs an attribute: {', '.join(ATTRIBUTES)}")
        self.set(str(attribute), *values)

    def set(self, attribute: str, *values) -> None:
        """Set an attribute (validated; see module docs)."""
        if attribute not in ATTRIBUTES:
            raise EngineError(f"unknown attribute {attribute!r}; attributes: {', '.join(ATTRIBUTES)}")
        if attribute == "generate_vels":
            if len(values) != 2:
                raise EngineError("attribute generate_vels: expected two numbers lo hi in [0, 1]")
            lo, hi = (_as_float("generate_vels", v, 0.0, 1.0) for v in values)
            if lo > hi:
                raise EngineError(f"attribute generate_vels: lo {lo} > hi {hi}")
            self.generate_vels = (lo, hi)
        else:
            if len(values) != 1:
                raise EngineError(f"attribute {attribute}: expected one value, got {len(values)}")
            v = values[0]
            if attribute == "enable":
                self.enable = _as_bool(attribute, v)
            elif attribute == "latency":
                self.latency_ms = None if str(v).lower() in ("none", "auto") else _as_float(attribute, v, 0.0, 500.0)
            elif attribute == "lookahead":
                self.lookahead_ms = _as_float(attribute, v, 0.0, MAX_LOOKAHEAD_MS)
            elif attribute == "filter_hits":
                if str(v) not in FILTERS:
                    raise EngineError(f"attribute filter_hits: {v!r} is not one of {', '.join(FILTERS)}")
                self.filter_hits = str(v)
            elif attribute == "loop":
                self.loop = _as_bool(attribute, v)
            elif attribute == "device":
                self.device = None if str(v).lower() in ("none", "default") else v
        if self.schedule is not None:
            self._apply_attributes(self.schedule)
        self.status(f"{attribute} = {' '.join(str(v) for v in values)}")

    def _apply_attributes(self, sched: Schedule) -> None:
        sched.filter_hits = self.filter_hits
        sched.generate_vels = self.generate_vels
        sched.use_model = self.enable and self.runtime is not None

    def msg_start(self) -> None:
        if self.score is None:
            raise EngineError("no score: send 'read <score.mid>' first")
        if self.playing:
            self.msg_stop()
        if self.enable and self.runtime is None:
            try:
                self.msg_load()
            except RolypolyError as exc:
                self.emit("error", f"start: {exc}; playing the score as written")
        if self.renderer is None:
            self.msg_kit(self.kit_path)
        if self.listener is None:
            self._make_listener()
        self.renderer.reset()
        self.listener.reset()
        window = int(getattr(self.runtime, "window", feat.DEFAULT_WINDOW))
        sched = Schedule(self.score, self.sr, loop=self.loop, window=window)
        self._apply_attributes(sched)
        self.schedule = sched
        self.sample = 0
        self._next_playhead = 0
        self._hits, self._onsets = [], []
        self._model_ms.clear()
        self.tick_ms = []
        cap = int(sched.length_samples + 5 * self.sr) if not self.loop else int(600 * self.sr)
        self._input = np.zeros(cap, dtype=np.float32)
        self._input_len = 0
        self.take_settings = self._settings()
        self.playing = True
        if not self.offline:
            self._worker = threading.Thread(target=self._work, name="rolypoly-model", daemon=True)
            self._worker.start()
        self.status("start")

    def msg_stop(self) -> None:
        if not self.playing and self.schedule is None:
            self.status("stop (nothing playing)")
            return
        was = self.playing
        self.playing = False
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5)
        self._worker = None
        self.pump()
        if was or self.schedule is not None:
            self._save_take()
        self.schedule = None

    def msg_write(self, path=None) -> None:
        if self.last_take is None:
            raise EngineError("nothing to write yet: play a take first")
        src = self.last_take / "performance.mid"
        if path is None:
            self.status(f"wrote {src}")
            return
        dest = Path(str(path))
        if dest.suffix.lower() not in (".mid", ".midi"):
            raise EngineError(f"write: {dest} must end in .mid")
        import shutil
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        self.status(f"wrote {dest}")

    def msg_train(self, *weights) -> None:
        from rolypoly.learn.finetune import parse_weights, train_after_take
        if self.last_take is None:
            raise EngineError("train: no take yet (play one first)")
        if self._train_thread is not None and self._train_thread.is_alive():
            raise EngineError("train: a finetune is already running")
        w = parse_weights(weights, self.cfg.finetune)

        def job():
            try:
                version = train_after_take(self.cfg, self.last_take, base_model=self.model_path, weights=w,
                                           on_progress=lambda text: self.status(text))
                self.msg_load(str(version.torchscript))
                self.status(f"trained: new model version {version.path}")
            except RolypolyError as exc:
                self.emit("error", f"train: {exc}")
            except Exception as exc:
                self.emit("error", f"train: internal error {type(exc).__name__}: {exc}")
            if not self.playing:
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

    def msg_introspect(self, src=None, *dsts) -> None:
        if self.score is None:
            raise EngineError("introspect: no score loaded")
        if src is None or not dsts:
            raise EngineError("introspect needs a source drum and one or more target drums, e.g. introspect kick snare")
        if self.playing:
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

    def msg_soundcheck(self, seconds=4.0, instrument=None) -> None:
        seconds = _as_float("soundcheck seconds", seconds, 0.5, 60.0)
        self._soundcheck = {"need": int(seconds * self.sr), "buf": np.zeros(int(seconds * self.sr), np.float32),
                            "n": 0, "instrument": str(instrument or self.cfg.listen.instrument)}
        self.status(f"soundcheck: play for {seconds:g} s")

    # -- internals ---------------------------------------------------------------------------
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
                "model": self.model_path if self.runtime is not None else None,
                "model_version": getattr(self.runtime, "version", None),
                "kit": str(self.kit_path), "listener": dict(getattr(self.listener, "settings", {}) or {}),
                "offline": self.offline, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def effective_lookahead_ms(self) -> float:
        """The lookahead, grown when the model is slow (6 * recent tick time + 50 ms)."""
        if not self._model_ms:
            return self.lookahead_ms
        return min(MAX_LOOKAHEAD_MS, max(self.lookahead_ms, 6.0 * max(self._model_ms) + 50.0))

    def _tick(self, horizon_sample: float) -> int:
        """Predict every row due before the horizon (model worker side)."""
        sched = self.schedule
        if sched is None:
            return 0
        n = 0
        while sched.rows_wanted(horizon_sample):
            if not sched.use_model:
                sched.skip_prediction(sched.next_predict)
                n += 1
                continue
            k, x = sched.next_window()
            t0 = time.perf_counter()
            try:
                y = self.runtime.predict(x)
            except Exception as exc:  # a failing model: play as written from here on
                sched.use_model = False
                self.emit("error", f"model failed, playing the score as written: {exc}")
                continue
            dt = 1000.0 * (time.perf_counter() - t0)
            self._model_ms.append(dt)
            self.tick_ms.append(dt)
            sched.set_prediction(k, y[-1])
            n += 1
        return n

    def _work(self) -> None:
        while self.playing:
            sched = self.schedule
            if sched is None:
                break
            horizon = self.sample + self.effective_lookahead_ms() * self.sr / 1000.0
            did = self._tick(horizon)
            self.pump()
            if not did:
                time.sleep(0.002)
        self.pump()

    def _trigger(self, offset: int, drum: int, vel: int, k: int) -> None:
        self.renderer.trigger(offset, drum, vel)
        sched = self.schedule
        s = k % sched.capacity
        self.events.append(("hit", (self.sample + offset, drum, vel,
                                    float(sched.real_off[s, drum] * sched.bar_samples[k % sched.N] * 1000.0 / self.sr))))

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        """One audio block: listen to ``inp``, start due hits, render drums into ``out`` (B, 2).

        This is the audio thread's whole job: no model calls, no locks, no file I/O.
        """
        out.fill(0.0)
        if self._soundcheck is not None:
            self._soundcheck_block(inp)
        if not self.playing or self.schedule is None:
            if self.renderer is not None:
                self.renderer.process(out)
            return
        sched = self.schedule
        B = out.shape[0]
        b0 = self.sample
        b1 = b0 + B
        mono = inp if inp.ndim == 1 else inp[:, 0]
        n = min(B, self._input.shape[0] - self._input_len)
        if n > 0:
            self._input[self._input_len:self._input_len + n] = mono[:n]
            self._input_len += n
        for t in self.listener.process(inp):
            if self.latency_ms is not None:
                t = t + self.listener.latency_s - self.latency_ms / 1000.0
            k = sched.match_onset(t * self.sr)
            if k >= 0:
                s = k % sched.capacity
                self.events.append(("onset", (float(sched.tau_g[s] * sched.bar_samples[k % sched.N] * 1000.0 / self.sr),
                                              k, float(t))))
        if self.offline:
            self._tick(b1 + self.effective_lookahead_ms() * self.sr / 1000.0)
        sched.commit_until(b1 + B)
        sched.pop_due_hits(b0, b1, self._trigger)
        self.renderer.process(out)
        self.sample = b1
        if b1 >= self._next_playhead:
            self.events.append(("playhead", (1000.0 * b1 / self.sr,)))
            self._next_playhead = b1 + int(PLAYHEAD_EVERY_MS * self.sr / 1000.0)
        if sched.finished(b1):
            self.playing = False
            self.events.append(("status", ("end of score",)))

    def _soundcheck_block(self, inp) -> None:
        sc = self._soundcheck
        mono = inp if inp.ndim == 1 else inp[:, 0]
        n = min(len(mono), sc["need"] - sc["n"])
        sc["buf"][sc["n"]:sc["n"] + n] = mono[:n]
        sc["n"] += n
        if sc["n"] >= sc["need"]:
            self._soundcheck = None
            self.events.append(("status", ("soundcheck: analysing",)))
            if self.offline:
                self._finish_soundcheck(sc)
            else:  # analysis allocates and may take a moment: never on the audio thread
                threading.Thread(target=self._finish_soundcheck, args=(sc,), daemon=True).start()

    def _finish_soundcheck(self, sc) -> None:
        from rolypoly.ears.listener import soundcheck
        try:
            settings = soundcheck(sc["buf"], self.sr, instrument=sc["instrument"])
            self._make_listener(settings)
            self.emit("status", f"soundcheck: {settings}")
        except RolypolyError as exc:
            self.emit("error", f"soundcheck: {exc}")

    # -- take record -------------------------------------------------------------------------
    def take_rows(self) -> dict[str, np.ndarray]:
        """Per-row record of the current take (rows committed so far)."""
        sched = self.schedule
        K = sched.next_commit
        ks = np.arange(K)
        slots = ks % sched.capacity
        idx = ks % sched.N
        sc = self.score
        return {"k": ks, "score_row": idx, "time_ms": np.array([sched.row_time(k) for k in ks]) * 1000.0 / self.sr,
                "pred": sched.pred[slots].copy(), "real_vel": sched.real_vel[slots].copy(),
                "real_off": sched.real_off[slots].copy(), "tau_g": sched.tau_g[slots].copy(),
                "has_onset": sched.has_onset[slots].copy(), "late": sched.late[slots].copy(),
                "score_vel": sc.vel[idx].copy(), "bpm": sc.bpm[idx].copy(), "tsig": sc.tsig[idx].copy(),
                "phase": sc.phase[idx].copy(), "bar_ms": sc.bar_ms[idx].copy()}

    def performance_score(self):
        """The drums as played, as a Score (realised velocities and offsets)."""
        sched = self.schedule
        K = min(sched.next_commit, sched.N)
        perf = self.score.copy()
        perf.vel = np.zeros_like(perf.vel)
        perf.off = np.zeros_like(perf.off)
        slots = np.arange(K) % sched.capacity
        perf.vel[:K] = sched.real_vel[slots]
        perf.off[:K] = sched.real_off[slots]
        return perf

    def _save_take(self) -> None:
        from rolypoly.live.takes import save_take
        sched = self.schedule
        if sched is None:
            return
        rows = self.take_rows()
        settings = dict(self.take_settings)
        settings.update({"rows_played": int(sched.next_commit), "late_rows": int(sched.late_rows),
                         "dropped_hits": int(sched.dropped_hits), "onsets": len(self._onsets),
                         "hits": len(self._hits), "samples": int(self.sample),
                         "lookahead_effective_ms": self.effective_lookahead_ms(),
                         "listener": dict(getattr(self.listener, "settings", {}) or {}),
                         "tick_ms_p50": float(np.percentile(self.tick_ms, 50)) if self.tick_ms else None,
                         "tick_ms_p99": float(np.percentile(self.tick_ms, 99)) if self.tick_ms else None})
        try:
            midi = self.performance_score().to_midi()
        except Exception:
            midi = None
        try:
            self.last_take = save_take(self.cfg.takes_dir, settings, rows, self._onsets, self._hits,
                                       self._input[:self._input_len], self.sr, self.score_path, midi)
            self.status(f"take saved: {self.last_take} ({sched.next_commit} rows, {len(self._onsets)} onsets, "
                        f"{sched.late_rows} late)")
        except OSError as exc:
            self.emit("error", f"could not save the take: {exc}")
        self.pump()
