"""The take's timeline: lookahead ticks, committing rows to hits, onset matching.

Rows are numbered ``k = 0, 1, 2, ...`` through the take; with ``loop`` the score
repeats, so row ``k`` is score row ``k % N`` in iteration ``k // N``.  Per-row state
lives in preallocated slot arrays (``k % capacity``), so nothing here allocates on the
audio path except tiny Python scalars.

Three actors touch a schedule:

* the model worker (:meth:`Schedule.next_window` / :meth:`Schedule.set_prediction`)
  predicts rows in order, up to the lookahead horizon;
* the audio thread (:meth:`Schedule.commit_until` / :meth:`Schedule.pop_due_hits`)
  fixes each row a block before its earliest possible hit — with the model's
  prediction when it is ready, as written otherwise (counted as late) — and starts
  hits at their exact sample;
* the listener's onsets (:meth:`Schedule.match_onset`) set ``tau_g`` on the nearest row.

A row's realised offsets and ``tau_g`` feed the decoder of later ticks.
"""
from __future__ import annotations

import math

import numpy as np

from rolypoly.score import features as feat
from rolypoly.score.drums import N_DRUMS

MAX_PENDING = 512
FILTERS = ("score_notes", "score_notes_and_vels", "none")


class Schedule:
    """Timeline of one take of ``score`` at sample rate ``sr`` (see module docs)."""

    def __init__(self, score, sr: int, loop: bool = False, window: int = feat.DEFAULT_WINDOW):
        N = score.n_rows
        self.score, self.sr, self.loop, self.window = score, int(sr), bool(loop), int(window)
        self.N = N
        self.capacity = 2 * N if loop else N
        self.row_samples = score.times_ms * (sr / 1000.0)
        self.bar_samples = score.bar_ms * (sr / 1000.0)
        self.length_samples = max(score.length_ms * sr / 1000.0, self.row_samples[-1] + 1.0)
        # earliest possible hit of a row: the offset clip (+-0.04 bar) before it
        self.max_early = feat.OFF_CLIP * feat.OFF_SCALE * self.bar_samples
        self.x_static = feat.encode_rows(score.vel, np.zeros((N, N_DRUMS)), score.bpm, score.tsig, score.phase,
                                      np.zeros(N))
        C = self.capacity
        self.pred = np.zeros((C, feat.N_OUT), dtype=np.float32)
        self.ready = np.zeros(C, dtype=bool)
        self.committed = np.zeros(C, dtype=bool)
        self.late = np.zeros(C, dtype=bool)
        self.real_vel = np.zeros((C, N_DRUMS), dtype=np.int16)
        self.real_off = np.zeros((C, N_DRUMS))
        self.tau_g = np.zeros(C)
        self.has_onset = np.zeros(C, dtype=bool)
        self.onset_sample = np.zeros(C)
        self._x = np.zeros((window, feat.N_IN), dtype=np.float32)
        self.pend_s = np.zeros(MAX_PENDING, dtype=np.int64)
        self.pend_d = np.zeros(MAX_PENDING, dtype=np.int64)
        self.pend_v = np.zeros(MAX_PENDING, dtype=np.int64)
        self.pend_k = np.zeros(MAX_PENDING, dtype=np.int64)
        self.n_pending = 0
        self.next_predict = 0
        self.next_commit = 0
        self.late_rows = 0
        self.dropped_hits = 0
        self.filter_hits = "score_notes"
        self.generate_vels = (0.1, 1.0)
        self.use_model = True

    # -- time ------------------------------------------------------------------------
    @property
    def total_rows(self) -> float:
        return math.inf if self.loop else self.N

    def row_time(self, k: int) -> float:
        """Nominal time of row ``k`` in samples from the take's start."""
        i, it = k % self.N, k // self.N
        return self.row_samples[i] + it * self.length_samples

    def commit_time(self, k: int) -> float:
        """When row ``k`` must be fixed: its earliest possible hit."""
        return self.row_time(k) - self.max_early[k % self.N]

    def finished(self, sample: float) -> bool:
        """All rows committed and their hits started, and the score's last bar is over."""
        if self.loop:
            return False
        return self.next_commit >= self.N and self.n_pending == 0 and sample >= self.length_samples

    # -- model side --------------------------------------------------------------------
    def rows_wanted(self, horizon_sample: float) -> bool:
        """Is there a row whose prediction is due before ``horizon_sample``?"""
        k = self.next_predict
        return k < self.total_rows and self.commit_time(k) < horizon_sample

    def next_window(self) -> tuple[int, np.ndarray]:
        """The row to predict next and its model input window ``(T, 22)`` (a view; copy to keep).

        Earlier rows carry their realised offsets (committed rows) or predicted ones
        (rows predicted but not yet played), and the musician's tau_g where matched.
        """
        k = self.next_predict
        if self.loop and k >= self.capacity:
            self._recycle(k)
        start = max(0, k - self.window + 1)
        T = k - start + 1
        x = self._x[:T]
        for t, j in enumerate(range(start, k + 1)):
            x[t] = self.x_static[j % self.N]
            if j < k:
                s = j % self.capacity
                if self.committed[s]:  # what was played: zero for drums that did not sound
                    x[t, feat.OFF] = feat.scale_off(self.real_off[s])
                else:  # predicted, not yet played: only the drums the row will play, as in training
                    pred = np.clip(self.pred[s, feat.OUT_OFF], -feat.OFF_CLIP, feat.OFF_CLIP)
                    x[t, feat.OFF] = np.where(self.score.vel[j % self.N] > 0, pred, 0.0)
                x[t, feat.TAU_G] = feat.scale_off(self.tau_g[s]) if self.has_onset[s] else 0.0
        return k, x

    def _recycle(self, k: int) -> None:
        s = k % self.capacity
        self.ready[s] = self.committed[s] = self.late[s] = self.has_onset[s] = False
        self.tau_g[s] = 0.0

    def set_prediction(self, k: int, y_row: np.ndarray) -> None:
        """Store the model's output row for row ``k`` (ignored if the row was already committed)."""
        s = k % self.capacity
        if k != self.next_predict:
            return
        self.next_predict = k + 1
        if k < self.next_commit:  # too late: it already played as written
            return
        self.pred[s] = y_row
        self.ready[s] = True

    def skip_prediction(self, k: int) -> None:
        """Mark row ``k`` as handled without a model (plays as written)."""
        if k == self.next_predict:
            self.next_predict = k + 1

    # -- audio side --------------------------------------------------------------------
    def commit_until(self, sample_end: float) -> int:
        """Fix every row whose earliest hit falls before ``sample_end``; queue its hits.

        Returns the number of rows committed.  A row whose prediction is not ready
        plays as written (score velocity, zero offset) and is counted in ``late_rows``.
        """
        n = 0
        while self.next_commit < self.total_rows and self.commit_time(self.next_commit) < sample_end:
            k = self.next_commit
            s = k % self.capacity
            i = k % self.N
            if self.loop and k >= self.capacity and self.next_predict <= k:
                self._recycle(k)
            vel_score = self.score.vel[i]
            t0 = self.row_time(k)
            bar = self.bar_samples[i]
            use_pred = self.use_model and self.ready[s] and k < self.next_predict
            if self.use_model and not use_pred:
                self.late[s] = True
                self.late_rows += 1
                if self.next_predict <= k:  # the model will not need to predict this one any more
                    self.next_predict = k + 1
            for d in range(N_DRUMS):
                v = int(vel_score[d])
                off = 0.0
                if use_pred:
                    pv = float(self.pred[s, d]) * feat.VEL_SCALE
                    off = max(-feat.OFF_CLIP, min(feat.OFF_CLIP, float(self.pred[s, 9 + d]))) * feat.OFF_SCALE
                    if self.filter_hits == "score_notes":
                        v = int(round(min(127.0, max(1.0, pv)))) if v > 0 else 0
                    elif self.filter_hits == "none":
                        lo, hi = self.generate_vels
                        v = int(round(min(hi * 127.0, max(1.0, pv)))) if pv >= lo * 127.0 else 0
                if v <= 0:
                    self.real_vel[s, d] = 0
                    self.real_off[s, d] = 0.0
                    continue
                self.real_vel[s, d] = v
                self.real_off[s, d] = off
                at = int(round(t0 + off * bar))
                if at < 0:
                    at = 0
                if self.n_pending < MAX_PENDING:
                    p = self.n_pending
                    self.pend_s[p], self.pend_d[p], self.pend_v[p], self.pend_k[p] = at, d, v, k
                    self.n_pending = p + 1
                else:
                    self.dropped_hits += 1
            self.committed[s] = True
            self.next_commit = k + 1
            n += 1
        return n

    def pop_due_hits(self, block_start: int, block_end: int, sink) -> int:
        """Call ``sink(sample_offset_in_block, drum, velocity, k)`` for hits in ``[block_start, block_end)``.

        Hits are removed from the pending list; a hit already in the past (only possible
        after a stall) starts at the block's first sample.
        """
        n = 0
        p = 0
        while p < self.n_pending:
            at = self.pend_s[p]
            if at < block_end:
                sink(max(0, int(at - block_start)), int(self.pend_d[p]), int(self.pend_v[p]), int(self.pend_k[p]))
                last = self.n_pending - 1
                self.pend_s[p], self.pend_d[p] = self.pend_s[last], self.pend_d[last]
                self.pend_v[p], self.pend_k[p] = self.pend_v[last], self.pend_k[last]
                self.n_pending = last
                n += 1
            else:
                p += 1
        return n

    # -- listening ---------------------------------------------------------------------
    def match_onset(self, onset_sample: float) -> int:
        """Match an onset to the nearest row (within half a row's spacing); returns the row or -1.

        It counts if ``|onset - row| < gap/3`` where gap is the distance to the
        neighbouring row on the onset's side; one onset per row (the first wins).
        """
        if onset_sample < 0:
            return -1
        it = int(onset_sample // self.length_samples) if self.loop else 0
        local = onset_sample - it * self.length_samples
        i = int(np.searchsorted(self.row_samples, local))
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
        if self.has_onset[s]:
            return -1
        self.has_onset[s] = True
        self.onset_sample[s] = onset_sample
        self.tau_g[s] = (onset_sample - t) / self.bar_samples[k % self.N]
        return k
