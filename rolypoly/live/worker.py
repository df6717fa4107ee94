"""The worker: model ticks that predict rows ahead of the playhead.

One thread (inline in :meth:`Rolypoly.process` offline) predicts each row when the
playhead comes within the *lookahead* of the row's commit time, and publishes the
prediction for the block (:meth:`Schedule.set_prediction`).  It owns the schedule's
``next_predict``, ``pred`` and ``ready`` and nothing else.

Two model interfaces are used, whichever the runtime offers:

* incremental (``rt.supports_step``): ``rt.reset(score_x)`` once per take (and per
  loop iteration), then ``rt.step(prev_row, row)`` for every row in order, ``prev_row``
  being the previous row as played (or as predicted when it has not played yet);
* windowed: ``rt.predict(window)`` on the last ``window`` rows, taking the last output.

Early predictions: in real time the worker also predicts rows up to ``engine.early_ms``
ahead (500 ms by default) whenever it has nothing due; a row whose refined prediction
misses its deadline (a thread holding the GIL for 200 ms) plays that one instead of
the score as written.  Offline the ticks run inline and are never late, so none are made.

Lookahead: offline it is the configured value, so the output does not depend on how
busy the machine is; in real time it grows, never shrinks during a take, to cover the
ticks measured so far (twice the slowest recent tick plus one block).
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

GROWTH = 2.0


class Worker:
    """Model ticks for one engine (see module docs)."""

    def __init__(self, engine):
        self.engine = engine
        self.recent_ms: deque = deque(maxlen=256)
        self.tick_ms: list[float] = []
        self.grown_ms = 0.0
        self._stepped = 0          # rows stepped since the last reset (incremental models)
        self._failed = False

    def reset(self, sched) -> None:
        """A new take: clear the measurements and the decoder cache."""
        self.recent_ms.clear()
        self.tick_ms = []
        self.grown_ms = 0.0
        self._stepped = 0
        self._failed = False
        rt = self.engine.runtime
        if sched.use_model and getattr(rt, "supports_step", False):
            rt.reset(sched.x_static)

    def lookahead_ms(self) -> float:
        eng = self.engine
        if eng.offline:
            return eng.lookahead_ms
        return min(eng.max_lookahead_ms, max(eng.lookahead_ms, self.grown_ms))

    def _measured(self, ms: float) -> None:
        self.recent_ms.append(ms)
        self.tick_ms.append(ms)
        eng = self.engine
        if not eng.offline:
            need = GROWTH * ms + 1000.0 * eng.block_frames / eng.sr
            if need > self.grown_ms:
                self.grown_ms = need

    def tick(self, sched, horizon_sample: float) -> int:
        """Predict every row due before the horizon; returns how many rows were handled."""
        eng = self.engine
        rt = eng.runtime
        n = 0
        stepping = getattr(rt, "supports_step", False)
        if sched.ahead is not None:  # free mode: the rows to predict must be drawn (and encoded) first
            self.write_ahead(sched, horizon_sample, urgent=True)
        while sched.rows_wanted(horizon_sample):
            if not sched.use_model or rt is None:
                sched.skip_prediction(sched.next_predict)
                n += 1
                continue
            if not stepping:
                sched.skip_played()  # rows already fixed play as written: no use predicting them
                if not sched.rows_wanted(horizon_sample):
                    break
            k = sched.next_predict
            t0 = time.perf_counter()
            try:
                if stepping:
                    y = self._step(rt, sched, k)
                else:
                    _, x = sched.next_window()
                    y = rt.predict(x)[-1]
                y = np.asarray(y, dtype=np.float32)
                if y.shape != (sched.pred.shape[1],) or not np.all(np.isfinite(y)):
                    raise ValueError(f"model returned {y.shape} with non-finite values" if y.size else "no output")
            except Exception as exc:  # a failing model: play as written from here on
                sched.use_model = False
                eng.emit("error", f"model failed, playing the score as written: {type(exc).__name__}: {exc}")
                continue
            self._measured(1000.0 * (time.perf_counter() - t0))
            sched.set_prediction(k, y)
            n += 1
        if sched.ahead is not None:
            n += self.write_ahead(sched, horizon_sample)
        return n

    def write_ahead(self, sched, horizon_sample: float, urgent: bool = False) -> int:
        """Free mode: draw bars (:class:`rolypoly.free.generate.LiveGeneration`) until the rows
        written reach a bar past the horizon and the encoder's reach past the next row to
        predict; append them to the take and update the model's encoding of the score.
        ``urgent``: only what the rows due now need.  Returns the bars drawn."""
        gen = sched.ahead
        rt = self.engine.runtime
        reach = int(getattr(rt, "reads_ahead", 0))
        drawn = 0
        first = sched.N
        try:
            while not gen.done:
                last = sched.N - 1
                short = sched.N - sched.next_predict <= reach
                if not short and (urgent or sched.row_time(last) >= horizon_sample + sched.bar_samples[last]):
                    break
                sched.append_rows(gen.next_part())
                drawn += 1
            # one encoder pass for all the bars drawn (rows past the ones written are not read)
            if sched.N > first and sched.use_model and getattr(rt, "supports_step", False):
                rt.update(sched.x_static, first, sched.N, valid=sched.N)
        except Exception as exc:  # the take plays on with the rows it has
            sched.ahead = None
            self.engine.emit("error", f"generate: drawing bar {gen.next_bar} failed, the take ends after "
                                      f"the bars drawn: {type(exc).__name__}: {exc}")
        return drawn

    def early(self, sched, horizon_sample: float, max_rows: int = 2) -> int:
        """Fallback predictions for rows up to a far horizon (window model; see :mod:`.block`)."""
        rt = self.engine.runtime
        if rt is None or not sched.use_model or not hasattr(rt, "predict"):
            return 0
        n = 0
        k = max(sched.next_early, sched.next_predict, sched.next_commit)
        while n < max_rows and k < sched.total_rows and sched.commit_time(k) < horizon_sample:
            try:
                y = np.asarray(rt.predict(sched.window_for(k))[-1], dtype=np.float32)
            except Exception:
                return n   # the refined tick reports model failures
            if y.shape == (sched.pred.shape[1],) and np.all(np.isfinite(y)):
                sched.set_early(k, y)
            else:
                sched.next_early = k + 1
            k += 1
            n += 1
        return n

    def _step(self, rt, sched, k: int):
        N = sched.N
        if sched.loop and k > 0 and k % N == 0 and self._stepped:
            rt.reset(sched.x_static)  # each loop iteration is a fresh pass over the score
            self._stepped = 0
        prev = None
        if k % N > 0 or (not sched.loop and k > 0):
            prev = np.zeros(sched.x_static.shape[1], np.float32)
            sched.history_row(k - 1, k, prev)
        row = sched.x_static[k % N]
        self._stepped += 1
        return rt.step(prev, row)

    def run(self, sched, stop) -> None:
        """The real-time loop: tick until ``stop`` is set or the take ends."""
        eng = self.engine
        sr = eng.sr
        early_ms = float(eng.cfg.engine.get("early_ms", 500.0) or 0.0)
        # a thread left behind by a hung tick ends as soon as its take is no longer the engine's
        while not stop.is_set() and not sched.done and eng.schedule is sched:
            now = sched.sample
            try:
                did = eng._tick(now + self.lookahead_ms() * sr / 1000.0)
                if not did and early_ms > 0:
                    did = self.early(sched, now + max(early_ms, self.lookahead_ms()) * sr / 1000.0)
            except Exception as exc:  # never let a bug here end the take: it plays as written
                sched.use_model = False
                eng.emit("error", f"model worker failed, playing the score as written: {exc}")
                did = 0
            if not did:
                stop.wait(0.001)
