"""The take's timeline: rows, who fixes them when, and onset matching.

Rows are numbered ``k = 0, 1, 2, ...`` through the take; with ``loop`` the score
repeats, so row ``k`` is score row ``k % N`` in iteration ``k // N``.  Per-row state
lives in preallocated slot arrays (``k % capacity``) that the compiled block
(:mod:`rolypoly.live.block`) reads and writes without Python.

Three actors touch a schedule, each owning its own fields:

* the model worker (:meth:`Schedule.next_window` / :meth:`Schedule.set_prediction`,
  field ``next_predict``, arrays ``pred`` and ``ready``) predicts rows in order, up to
  the lookahead horizon;
* the audio side (:func:`rolypoly.live.block.commit_rows`; counters in ``tc``, arrays
  ``committed``, ``late``, ``real_vel``, ``real_off``, ``pend``) fixes each row a block
  before its earliest possible hit, with the model's prediction when the worker has
  published it, as written otherwise (counted as late), and starts hits at their
  exact sample;
* the reader thread's onsets (:meth:`Schedule.match_onset`; ``has_onset``, ``tau_g``,
  ``onset_sample``, ``tf[LEAN]``) date the musician on the nearest row and move the
  drums' lean towards them.

A row's realised offsets and ``tau_g`` feed the decoder of later ticks.

Following the musician: the model hears an onset only through the rows it predicts
after it, and its answer is a drummer's (it moves part of the way, over a few beats).
On top of it, each matched onset moves a lean that the audio side adds to every row it
fixes from then on, in two parts: an overall one (a linear phase correction, as in
sensorimotor synchronisation) and one per bar position (:data:`LEAN_POSITIONS`), so a
musician who is late on the backbeat or swings the off-beats is met there and not
everywhere.  With ``gap = onset - the row's drums`` (both as played), each onset does
``lean += follow * gap`` and ``pos_lean[its position] += follow * gap``: the least-mean-
squares fit of "overall + per position" to where the musician plays, closed around what
the drums actually played.  The gain ``follow`` falls as the onsets add up, to
``follow_min`` (:meth:`Schedule.follow_gain`), and starts again when the musician changes
feel; ``follow_drums`` moves each drum's own lean, its gap to the row's other drums.  It works at commit time, so it reacts the next row whatever
the lookahead; ``follow = 0`` turns it off.  Each part is bounded by :data:`MAX_LEAN`
(a bar fraction).  The model's inputs are taken against the grid moved by the lean (its
hits and the musician's onsets minus the lean the row was fixed with, ``lean_at``), so
it adds its drummer's feel on top of the lean rather than following the same change a
second time.
"""
from __future__ import annotations

import math

import numpy as np

from rolypoly.live import block as blk
from rolypoly.score import features as feat
from rolypoly.score.drums import N_DRUMS

MAX_PENDING = blk.MAX_PENDING
MAX_LEAN = 0.02   # bar: 40 ms at 120 bpm 4/4
LEAN_POSITIONS = 48   # bar positions the lean tells apart: 16ths and 8th-note triplets of a 4/4 bar
FILTERS = tuple(blk.FILTER_CODES)


class Schedule:
    """Timeline of one take of ``score`` at sample rate ``sr`` (see module docs)."""

    def __init__(self, score, sr: int, loop: bool = False, window: int = feat.DEFAULT_WINDOW,
                 extra_rows: int = 0, length_ms: float | None = None):
        N = score.n_rows
        if N == 0:
            raise ValueError("a schedule needs a score with at least one row")
        if extra_rows and loop:
            raise ValueError("rows can be appended to a take that does not loop only")
        self.score, self.sr, self.loop, self.window = score, int(sr), bool(loop), int(window)
        self.N = N
        # a growing take (free mode writing ahead) has room for the rows still to come
        self.capacity = 2 * N if loop else N + int(extra_rows)
        C = self.capacity
        R = N + int(extra_rows)     # score rows (the slots of a loop hold two passes over them)
        self.row_samples = np.full(R, np.inf)
        self.bar_samples = np.ones(R)
        self.max_early = np.zeros(R)
        self.score_vel = np.zeros((R, N_DRUMS), dtype=np.int16)
        self.x_static = np.zeros((R, feat.N_IN), dtype=np.float32)
        self.pos_of = np.zeros(R, dtype=np.int64)
        self._write_rows(0, score)
        self.length_samples = float(max(score.length_ms * sr / 1000.0, self.row_samples[N - 1] + 1.0))
        if length_ms is not None:
            self.length_samples = max(self.length_samples, float(length_ms) * sr / 1000.0)
        self.consts = np.array([feat.OFF_CLIP, feat.OFF_SCALE], np.float64)
        # worker
        self.pred = np.zeros((C, feat.N_OUT), dtype=np.float32)
        self.ready = np.zeros(C, dtype=np.int64)        # k + 1 once row k's prediction is in pred
        self.next_predict = 0
        # the fallback predictions, made further ahead than the lookahead
        self.pred_early = np.zeros((C, feat.N_OUT), dtype=np.float32)
        self.ready_early = np.zeros(C, dtype=np.int64)
        self.next_early = 0
        # audio side
        self.committed = np.zeros(C, dtype=np.int64)    # k + 1 once row k is fixed
        self.late = np.zeros(C, dtype=np.int8)
        self.real_vel = np.zeros((C, N_DRUMS), dtype=np.int16)
        self.real_off = np.zeros((C, N_DRUMS), dtype=np.float64)
        self.lean_at = np.zeros(C, dtype=np.float64)
        self.pos_lean = np.zeros(LEAN_POSITIONS + N_DRUMS, dtype=np.float64)   # then each drum's own
        self.pend = np.zeros((MAX_PENDING, 4), dtype=np.int64)
        self.tc = np.zeros(blk.N_TC, dtype=np.int64)
        self.tf = np.zeros(blk.N_TF, dtype=np.float64)
        self.tc[blk.N_ROWS], self.tc[blk.CAPACITY], self.tc[blk.LOOP] = N, C, int(self.loop)
        self.tc[blk.USE_MODEL] = 1
        self.tf[blk.LENGTH] = self.length_samples
        self.tf[blk.SR] = self.sr
        self.tf[blk.FADE_SAMPLES] = 1.0
        # reader thread
        self.tau_g = np.zeros(C)
        self.has_onset = np.zeros(C, dtype=bool)
        self.onset_sample = np.zeros(C)
        self.onset_k = np.zeros(C, dtype=np.int64)     # k + 1 once row k has its onset
        self._x = np.zeros((window, feat.N_IN), dtype=np.float32)
        self.filter_hits = "score_notes"
        self.generate_vels = (0.1, 1.0)
        self.follow = 0.0
        self.follow_min = 1.0   # >= follow: a constant gain
        self.follow_drums = 0.0
        self.follow_reset_ms = math.inf   # a running mean of the gaps beyond this: the feel changed
        self.n_followed = 0     # onsets the overall lean has moved for, this take (since a change)
        self.gap_mean_ms = 0.0  # running mean of the gaps (share follow), for the change test
        self.n_followed_at = np.zeros(LEAN_POSITIONS, dtype=np.int64)   # and each position's lean
        self.ahead = None   # free mode: the worker's LiveGeneration, whose bars it appends (append_rows)

    def append_rows(self, part) -> int:
        """Append the rows of ``part`` (a Score on the same tempo map, after the last row) to a
        growing take; returns the first new row.  The worker's alone (free mode writing ahead).

        Each new row is written whole, then published by the row count the audio side reads
        (``tc[N_ROWS]``, last): the block never sees a half-written row.
        """
        N, m = self.N, part.n_rows
        if m == 0:
            return N
        if N + m > self.capacity or self.loop:
            raise ValueError(f"append_rows: {m} rows do not fit ({N} of {self.capacity} used)")
        if part.times_ms[0] <= self.score.times_ms[-1]:
            raise ValueError("append_rows: new rows must come after the last one")
        self._write_rows(N, part)
        self.score = self.score.followed_by(part)   # the take's record reads its rows from here
        self.tc[blk.N_ROWS] = N + m
        self.N = N + m
        return N

    def _write_rows(self, at: int, sc) -> None:
        """The per-row arrays of score rows ``at ..`` from the rows of ``sc``."""
        new = slice(at, at + sc.n_rows)
        self.row_samples[new] = sc.times_ms * (self.sr / 1000.0)
        self.bar_samples[new] = sc.bar_ms * (self.sr / 1000.0)
        # earliest possible hit of a row: the offset clip (+-0.04 bar) before it
        self.max_early[new] = feat.OFF_CLIP * feat.OFF_SCALE * self.bar_samples[new]
        self.score_vel[new] = sc.vel
        self.x_static[new] = feat.encode_rows(sc.vel, np.zeros((sc.n_rows, N_DRUMS)), sc.bpm, sc.tsig, sc.phase,
                                              np.zeros(sc.n_rows))
        self.pos_of[new] = np.round(np.asarray(sc.phase) * LEAN_POSITIONS).astype(np.int64) % LEAN_POSITIONS

    def arrays(self) -> list[np.ndarray]:
        """The arrays the block reads and writes, in :data:`rolypoly.live.block.TAKE_ARRAYS` order."""
        return [self.row_samples, self.bar_samples, self.max_early, self.score_vel, self.consts, self.pred,
                self.ready, self.pred_early, self.ready_early, self.committed, self.late, self.real_vel, self.real_off, self.lean_at,
                self.pos_of, self.pos_lean, self.pend, self.tc, self.tf]

    # -- commands (one word each, read by the block at its start) ------------------------------
    @property
    def filter_hits(self) -> str:
        return FILTERS[int(self.tc[blk.FILTER])]

    @filter_hits.setter
    def filter_hits(self, mode: str) -> None:
        self.tc[blk.FILTER] = blk.FILTER_CODES[mode]

    @property
    def generate_vels(self) -> tuple[float, float]:
        return float(self.tf[blk.GEN_LO]), float(self.tf[blk.GEN_HI])

    @generate_vels.setter
    def generate_vels(self, lo_hi) -> None:
        self.tf[blk.GEN_LO], self.tf[blk.GEN_HI] = float(lo_hi[0]), float(lo_hi[1])

    @property
    def lean(self) -> float:
        """The drums' lean towards the musician now, a bar fraction (see module docs)."""
        return float(self.tf[blk.LEAN])

    @property
    def use_model(self) -> bool:
        return bool(self.tc[blk.USE_MODEL])

    @use_model.setter
    def use_model(self, on: bool) -> None:
        self.tc[blk.USE_MODEL] = int(bool(on))

    # -- what the audio side reports ------------------------------------------------------------
    @property
    def next_commit(self) -> int:
        return int(self.tc[blk.NEXT_COMMIT])

    @property
    def late_rows(self) -> int:
        return int(self.tc[blk.LATE_ROWS])

    @property
    def early_rows(self) -> int:
        """Rows that played their early (fallback) prediction."""
        return int(self.tc[blk.EARLY_ROWS])

    @property
    def dropped_hits(self) -> int:
        return int(self.tc[blk.DROPPED_HITS])

    @property
    def n_pending(self) -> int:
        return int(self.tc[blk.N_PEND])

    @property
    def sample(self) -> int:
        """The first sample of the next block, in take time."""
        return int(self.tc[blk.SAMPLE])

    @property
    def done(self) -> bool:
        return bool(self.tc[blk.FINISHED])

    # -- time ------------------------------------------------------------------------
    @property
    def total_rows(self) -> float:
        return math.inf if self.loop else self.N

    def row_time(self, k: int) -> float:
        """Nominal time of row ``k`` in samples from the take's start."""
        i, it = k % self.N, k // self.N
        return float(self.row_samples[i] + it * self.length_samples)

    def commit_time(self, k: int) -> float:
        """When row ``k`` must be fixed: its earliest possible hit."""
        return self.row_time(k) - float(self.max_early[k % self.N])

    def finished(self, sample: float) -> bool:
        """All rows committed and their hits started, and the score's last bar is over."""
        if self.loop:
            return False
        return self.next_commit >= self.N and self.n_pending == 0 and sample >= self.length_samples

    def is_committed(self, k: int) -> bool:
        return int(self.committed[k % self.capacity]) == k + 1

    # -- model side --------------------------------------------------------------------
    def rows_wanted(self, horizon_sample: float) -> bool:
        """Is there a row whose prediction is due before ``horizon_sample``?"""
        k = self.next_predict
        return k < self.total_rows and self.commit_time(k) < horizon_sample

    def skip_played(self) -> int:
        """Move ``next_predict`` past rows the audio side already fixed (they played as written)."""
        nc = self.next_commit
        skipped = max(0, nc - self.next_predict)
        if skipped:
            self.next_predict = nc
        return skipped

    def history_row(self, j: int, k: int, out: np.ndarray) -> None:
        """Row ``j``'s model input as seen when predicting row ``k`` (into ``out``)."""
        out[:] = self.x_static[j % self.N]
        if j < k:
            s = j % self.capacity
            lean = 0.0
            if self.is_committed(j):  # what was played: zero for drums that did not sound
                lean = float(self.lean_at[s])
                # (each drum's own lean as it is now: it moves slowly, and is 0 unless follow_drums)
                own = self.pos_lean[LEAN_POSITIONS:]
                out[feat.OFF] = feat.scale_off(np.where(self.real_vel[s] > 0, self.real_off[s] - lean - own, 0.0))
            else:  # predicted, not yet played: only the drums the row will play, as in training
                pred = np.clip(self.pred[s, feat.OUT_OFF], -feat.OFF_CLIP, feat.OFF_CLIP)
                out[feat.OFF] = np.where(self.score_vel[j % self.N] > 0, pred, 0.0)
            # the model plays against the grid moved by the lean: it sees the musician and its own
            # hits from there, so it adds its feel to the lean's following instead of following twice
            out[feat.TAU_G] = feat.scale_off(self.tau_g[s] - lean) if self.onset_k[s] == j + 1 else 0.0

    def next_window(self) -> tuple[int, np.ndarray]:
        """The row to predict next and its model input window ``(T, 22)`` (a view; copy to keep).

        Earlier rows carry their realised offsets (committed rows) or predicted ones
        (rows predicted but not yet played), and the musician's tau_g where matched.
        """
        k = self.next_predict
        return k, self.window_for(k)

    def window_for(self, k: int) -> np.ndarray:
        """Row ``k``'s model input window as known now (a view; copy to keep)."""
        start = max(0, k - self.window + 1)
        T = k - start + 1
        x = self._x[:T]
        for t, j in enumerate(range(start, k + 1)):
            self.history_row(j, k, x[t])
        return x

    def set_prediction(self, k: int, y_row: np.ndarray) -> None:
        """Publish the model's output row for row ``k`` (the audio side ignores it once the row is fixed)."""
        if k != self.next_predict:
            return
        self.next_predict = k + 1
        if k < self.next_commit:  # too late: it already played as written
            return
        s = k % self.capacity
        self.pred[s] = y_row
        self.ready[s] = k + 1   # after the data: the block reads ready, then pred

    def set_early(self, k: int, y_row: np.ndarray) -> None:
        """Publish an early (fallback) prediction for row ``k``."""
        self.next_early = k + 1
        if k < self.next_commit:
            return
        s = k % self.capacity
        self.pred_early[s] = y_row
        self.ready_early[s] = k + 1

    def skip_prediction(self, k: int) -> None:
        """Mark row ``k`` as handled without a model (plays as written)."""
        if k == self.next_predict:
            self.next_predict = k + 1

    # -- audio side (for drivers and tests that run it from Python) -----------------------------
    def commit_until(self, sample_end: float) -> int:
        """Fix every row whose earliest hit falls before ``sample_end``; queue its hits.

        Returns the number of rows committed.  A row whose prediction is not ready
        plays as written (score velocity, zero offset) and is counted in ``late_rows``.
        """
        return int(blk.commit_rows(float(sample_end), *self.arrays()[:4], float(self.consts[0]),
                                   float(self.consts[1]), *self.arrays()[5:]))

    # -- the take's record -----------------------------------------------------------------
    def row_record(self, ks: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``ks`` (committed, still in their slots) as the take record keeps them (copies)."""
        slots = ks % self.capacity
        idx = ks % self.N
        sc = self.score
        times = self.row_samples[idx] + (ks // self.N) * self.length_samples
        return {"k": ks, "score_row": idx, "time_ms": times * 1000.0 / self.sr,
                "pred": self.pred[slots].copy(), "real_vel": self.real_vel[slots].copy(),
                "real_off": self.real_off[slots].copy(), "lean": self.lean_at[slots].copy(),
                "tau_g": self.tau_g[slots].copy(),
                "has_onset": self.onset_k[slots] == ks + 1, "late": self.late[slots].astype(bool),
                "score_vel": sc.vel[idx].copy(), "bpm": sc.bpm[idx].copy(), "tsig": sc.tsig[idx].copy(),
                "phase": sc.phase[idx].copy(), "bar_ms": sc.bar_ms[idx].copy()}

    # -- listening ---------------------------------------------------------------------
    def match_onset(self, onset_sample: float) -> int:
        """Match an onset to the nearest row; returns the row or -1.

        It counts if ``|onset - row| < gap/3`` where gap is the distance to the
        neighbouring row on the onset's side; one onset per row (the first wins).
        """
        if onset_sample < 0:
            return -1
        it = int(onset_sample // self.length_samples) if self.loop else 0
        local = onset_sample - it * self.length_samples
        i = int(np.searchsorted(self.row_samples[:self.N], local))
        best = -1
        best_d = math.inf
        for cand in (i - 1, i):
            if 0 <= cand < self.N:
                d = abs(local - self.row_samples[cand])
                if d < best_d:
                    best, best_d = cand, d
        if best < 0:
            return -1
        k = it * self.N + best
        t = self.row_time(k)
        if onset_sample >= t:
            nb = self.row_time(k + 1) if (k + 1 < self.total_rows) else None
        else:
            nb = self.row_time(k - 1) if k > 0 else None
        if nb is None:  # first/last row: use the gap on the other side
            nb = self.row_time(k - 1) if onset_sample >= t and k > 0 else (
                self.row_time(k + 1) if k + 1 < self.total_rows else None)
        if nb is not None and not abs(onset_sample - t) < abs(nb - t) / 3.0:
            return -1
        s = k % self.capacity
        if self.onset_k[s] == k + 1:
            return -1
        self.onset_k[s] = k + 1
        self.has_onset[s] = True
        self.onset_sample[s] = onset_sample
        self.tau_g[s] = (onset_sample - t) / self.bar_samples[k % self.N]
        self._lean_towards(k)
        return k

    def follow_gain(self, n: int) -> float:
        """The share of its gap that the ``n``-th onset (from 0) moves a lean.

        ``follow`` for every onset, unless ``follow_min`` is below it: then the gain falls as a
        running mean's would, ``1 / (1 / follow + n)``, and stays at ``follow_min``.  The first
        onsets move the lean fast; later ones average the musician's jitter out instead of
        following each note's.  ``n`` counts from the take's start, and again from a change of
        feel: when a running mean of the gaps (share ``follow``) passes ``follow_reset_ms``.

        >>> s = Schedule.__new__(Schedule); s.follow, s.follow_min = 0.25, 0.1
        >>> [round(s.follow_gain(n), 3) for n in (0, 2, 4, 20)]
        [0.25, 0.167, 0.125, 0.1]
        """
        if self.follow_min >= self.follow:
            return self.follow
        return max(self.follow_min, 1.0 / (1.0 / self.follow + n))

    def _lean_towards(self, k: int) -> None:
        # the row's drums are fixed (committed) before its onset can be heard, unless the musician
        # is more than the earliest-hit margin early: then there is nothing yet to compare with
        if self.follow <= 0.0 or not self.is_committed(k):
            return
        s = k % self.capacity
        played = self.real_vel[s] > 0
        if not played.any():
            return
        gap = self.tau_g[s] - float(np.mean(self.real_off[s][played]))
        q = self.pos_of[k % self.N]
        if self.follow_min < self.follow:
            # the musician changed feel: a settled (slow) lean would take bars to get there, so
            # every lean falls from follow again
            self.gap_mean_ms += self.follow * (gap * self.bar_samples[k % self.N] * 1000.0 / self.sr - self.gap_mean_ms)
            if abs(self.gap_mean_ms) > self.follow_reset_ms:
                self.n_followed, self.gap_mean_ms = 0, 0.0
                self.n_followed_at[:] = 0
        g_pos, g = self.follow_gain(int(self.n_followed_at[q])), self.follow_gain(self.n_followed)
        self.n_followed_at[q] += 1
        self.n_followed += 1
        self.pos_lean[q] = min(MAX_LEAN, max(-MAX_LEAN, self.pos_lean[q] + g_pos * gap))
        self.tf[blk.LEAN] = min(MAX_LEAN, max(-MAX_LEAN, self.lean + g * gap))
        if self.follow_drums > 0.0:
            # each drum's own gap beyond the row's (the row's mean less the drum): the drums
            # meet the musician together
            offs = self.real_off[s][played]
            own = self.pos_lean[LEAN_POSITIONS:]          # a view: written in place
            # (its gain falls with the overall lean's: g / follow of follow_drums)
            gd = self.follow_drums * (g / self.follow)
            own[played] = np.clip(own[played] + gd * (offs.mean() - offs), -MAX_LEAN, MAX_LEAN)

