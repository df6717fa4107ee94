"""Events: the event model's view of drumming (numpy only).

An *event* is one onset on the 16th grid of a bar: its absolute step ``a`` (``bar * 16 +
step``), the drums that sound (a 9-bit mask) and, per sounding drum, a velocity class
(soft / medium / loud, split at :data:`VEL_BOUNDS`).  Every meter is counted in 16 steps a
bar, as the pattern tables do; the model is trained on 4/4 takes.

The model reads one input vector per event and predicts the next event: first the gap to
it in steps (``1 .. MAX_DELTA``, the last class meaning "this far or further"), then, given
that position, each drum's probability and velocity class.  A *style* code of two numbers
travels with every event: the density (hits per bar / :data:`DENSITY_SCALE`) and the
complexity (share of hits on odd 16ths, off the 8th grid) of the surrounding 4-bar
segment.  At generation these are the two knobs (or they are measured on the music just
played, which keeps its style).

Input vector of one event (:data:`N_FEAT` floats)::

    [0:16)    one-hot step in the bar
    [16:49)   one-hot gap from the previous event (0 = the first event of a sequence)
    [49:58)   drum mask
    [58:85)   velocity class one-hot per drum (3 per drum, zeros where silent)
    [85:87)   style: density, complexity

Examples
--------
>>> import numpy as np
>>> vel = np.zeros((3, 9)); vel[0, 0] = 100; vel[1, 2] = 40; vel[2, [0, 1]] = 120
>>> ev = events_from_rows(vel, np.array([0, 0.5, 0.0]), np.array([0, 0, 1]))
>>> ev.abs_step.tolist(), ev.mask.tolist()
([0, 8, 16], [1, 4, 3])
>>> encode_events(ev, np.zeros((3, 2))).shape
(3, 87)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolypoly.score.drums import N_DRUMS

STEPS = 16
MAX_DELTA = 32
N_VEL = 3
#: Velocity class boundaries: soft < 64 <= medium < 96 <= loud.
VEL_BOUNDS = (64, 96)
#: Representative velocity of each class when no measured one is at hand.
VEL_CENTERS = (48, 80, 110)
DENSITY_SCALE = 32.0
STYLE_BARS = 4
POS0, POS1 = 0, STEPS
DELTA0, DELTA1 = POS1, POS1 + MAX_DELTA + 1
MASK0, MASK1 = DELTA1, DELTA1 + N_DRUMS
VCLS0, VCLS1 = MASK1, MASK1 + N_DRUMS * N_VEL
STYLE0, STYLE1 = VCLS1, VCLS1 + 2
N_FEAT = STYLE1
#: Outputs of the independent drum head: 9 drum logits then 9 x 3 velocity-class logits.
N_DRUM_OUT = N_DRUMS + N_DRUMS * N_VEL
#: Outputs of the joint drum head: one logit per drum combination (mask 0 .. 511).
N_MASKS = 1 << N_DRUMS
_BITS = 1 << np.arange(N_DRUMS)


@dataclass
class Events:
    """A sequence of events (see module docs)."""

    abs_step: np.ndarray   # (E,) int64, bar * 16 + step
    mask: np.ndarray       # (E,) int64, bit d = drum d sounds
    vcls: np.ndarray       # (E, 9) int64 velocity class, -1 where silent

    def __len__(self) -> int:
        return len(self.abs_step)

    @property
    def drums(self) -> np.ndarray:
        """(E, 9) bool: which drums sound."""
        return (self.mask[:, None] & _BITS[None, :]) > 0

    def slice(self, a: int, b: int) -> Events:
        return Events(self.abs_step[a:b], self.mask[a:b], self.vcls[a:b])


def vel_class(vel) -> np.ndarray:
    """Velocity class (0 soft, 1 medium, 2 loud) of velocities; -1 for 0 (silent).

    >>> vel_class([0, 30, 70, 120]).tolist()
    [-1, 0, 1, 2]
    """
    v = np.asarray(vel)
    cls = np.searchsorted(np.asarray(VEL_BOUNDS), v, side="right")
    return np.where(v > 0, cls, -1).astype(np.int64)


def events_from_rows(vel: np.ndarray, phase: np.ndarray, bar: np.ndarray) -> Events:
    """Events of score-like rows: each row snapped to the nearest 16th (rows meeting there merge,
    the louder hit of a drum kept).

    Parameters
    ----------
    vel : (N, 9) velocities (0 = silent)
    phase : (N,) position in the bar [0, 1)
    bar : (N,) bar index
    """
    vel = np.asarray(vel, dtype=np.float64)
    step = np.rint(np.asarray(phase, dtype=np.float64) * STEPS).astype(np.int64)
    a = np.asarray(bar, dtype=np.int64) * STEPS + step
    sounding = (vel > 0).any(axis=1)
    a, vel = a[sounding], vel[sounding]
    if len(a) == 0:
        return Events(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, N_DRUMS), np.int64))
    uniq, inv = np.unique(a, return_inverse=True)
    merged = np.zeros((len(uniq), N_DRUMS))
    np.maximum.at(merged, inv, vel)
    mask = ((merged > 0) * _BITS[None, :]).sum(axis=1).astype(np.int64)
    return Events(uniq.astype(np.int64), mask, vel_class(merged))


def style_of(ev: Events, lo_step: int | None = None, hi_step: int | None = None) -> np.ndarray:
    """The style code ``(density, complexity)`` of the events in steps ``[lo_step, hi_step)``.

    Density is hits per bar over the span (in bars, at least one) divided by
    :data:`DENSITY_SCALE`, capped at 1; complexity is the share of hits on odd 16ths.
    An empty span gives ``(0, 0)``.

    >>> vel = np.zeros((4, 9)); vel[:, 2] = 80
    >>> ev = events_from_rows(vel, np.array([0, 2, 4, 5]) / 16, np.zeros(4))
    >>> style_of(ev, 0, 16).round(4).tolist()
    [0.125, 0.25]
    """
    a = ev.abs_step
    lo = int(a[0]) if lo_step is None and len(a) else (lo_step or 0)
    hi = int(a[-1]) + 1 if hi_step is None and len(a) else (hi_step or 0)
    keep = (a >= lo) & (a < hi)
    drums = ev.drums[keep]
    n = float(drums.sum())
    if n == 0:
        return np.zeros(2)
    bars = max(1.0, (hi - lo) / STEPS)
    odd = float(drums[(a[keep] % 2) == 1].sum())
    return np.array([min(1.0, n / bars / DENSITY_SCALE), odd / n])


def segment_styles(ev: Events, bars: int = STYLE_BARS) -> np.ndarray:
    """(E, 2) style code of each event: that of the ``bars``-bar segment holding it (training input)."""
    out = np.zeros((len(ev), 2))
    if not len(ev):
        return out
    seg = ev.abs_step // (STEPS * bars)
    for s in np.unique(seg):
        idx = seg == s
        lo = int(s) * STEPS * bars
        out[idx] = style_of(ev, lo, lo + STEPS * bars)
    return out


def gaps(ev: Events) -> np.ndarray:
    """(E,) gap class input of each event: 0 for the first, else the step gap clipped to MAX_DELTA."""
    d = np.zeros(len(ev), dtype=np.int64)
    if len(ev) > 1:
        d[1:] = np.clip(np.diff(ev.abs_step), 1, MAX_DELTA)
    return d


def encode_events(ev: Events, style: np.ndarray, first_gap: int | None = None) -> np.ndarray:
    """``(E, N_FEAT)`` float32 model inputs of a sequence of events (see module docs).

    ``first_gap`` is the gap of the first event from one before it (None: it starts the sequence).
    """
    E = len(ev)
    x = np.zeros((E, N_FEAT), dtype=np.float32)
    r = np.arange(E)
    x[r, POS0 + ev.abs_step % STEPS] = 1.0
    d = gaps(ev)
    if first_gap is not None and E:
        d[0] = int(np.clip(first_gap, 1, MAX_DELTA))
    x[r, DELTA0 + d] = 1.0
    drums = ev.drums
    x[:, MASK0:MASK1] = drums
    rr, dd = np.nonzero(drums)
    x[rr, VCLS0 + dd * N_VEL + ev.vcls[rr, dd]] = 1.0
    x[:, STYLE0:STYLE1] = np.asarray(style, dtype=np.float32).reshape(E, 2) if E else 0.0
    return x


def next_query(abs_step_now: int, gap: int) -> np.ndarray:
    """``(STEPS + MAX_DELTA,)`` float32 drum-head query: one-hot step of the next event and its gap."""
    q = np.zeros(STEPS + MAX_DELTA, dtype=np.float32)
    q[(abs_step_now + gap) % STEPS] = 1.0
    q[STEPS + min(max(gap, 1), MAX_DELTA) - 1] = 1.0
    return q


def targets(ev: Events) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training targets for events ``0 .. E-2`` (each predicts the next one).

    Returns ``(gap_class (E-1,) in 0..MAX_DELTA-1, query (E-1, 48), drums (E-1, 9) float, vcls (E-1, 9))``.
    """
    E = len(ev)
    g = np.clip(np.diff(ev.abs_step), 1, MAX_DELTA)
    q = np.zeros((max(E - 1, 0), STEPS + MAX_DELTA), dtype=np.float32)
    r = np.arange(E - 1)
    q[r, ev.abs_step[1:] % STEPS] = 1.0
    q[r, STEPS + g - 1] = 1.0
    return (g - 1).astype(np.int64), q, ev.drums[1:].astype(np.float32), ev.vcls[1:]
