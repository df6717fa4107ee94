"""Statistics of drum bars on the 16th grid, to compare generated material with real drumming.

A *sequence* is drumming on the 16th grid: absolute steps (``bar * 16 + step``) and the
velocities of the 9 drums at each (:func:`grid_sequence`).  :func:`bar_stats` measures a
set of sequences over chosen bar ranges; :func:`compare` scores one measurement against a
reference:

* ``hits_per_bar`` per drum, and their L1 distance summed over drums;
* ``offbeat_share``: hits on odd 16ths (off the 8th grid) over all hits;
* ``ioi``: histogram of the gaps between consecutive onsets (1..32 steps), compared by
  total-variation distance (0 = same, 1 = disjoint);
* ``velocity``: histogram of hit velocities (16 bins), compared by intersection (1 = same);
* ``repetition``: share of consecutive bar pairs whose whole 9-drum pattern is identical;
* ``novelty``: share of non-empty bars whose 9-drum pattern is not in a given set (GMD train).

Examples
--------
>>> import numpy as np
>>> vel = np.zeros((4, 9)); vel[[0, 2], 0] = 100; vel[[1, 3], 2] = 60
>>> seq = grid_sequence(vel, np.array([0, .5, 0, .5]), np.array([0, 0, 1, 1]))
>>> s = bar_stats([seq], [(0, 2)])
>>> s["repetition"], float(s["hits_per_bar"][0]), float(s["offbeat_share"])
(1.0, 1.0, 0.0)
"""
from __future__ import annotations

import numpy as np

from rolypoly.score.drums import N_DRUMS

STEPS = 16
IOI_MAX = 32
VEL_BINS = np.linspace(0.5, 127.5, 17)


def grid_sequence(vel, phase, bar) -> tuple[np.ndarray, np.ndarray]:
    """``(abs_step (E,), vel (E, 9))``: rows snapped to the nearest 16th, merged (louder hit kept)."""
    vel = np.asarray(vel, dtype=np.float64)
    a = np.asarray(bar, dtype=np.int64) * STEPS + np.rint(np.asarray(phase, dtype=np.float64) * STEPS).astype(np.int64)
    keep = (vel > 0).any(axis=1)
    a, vel = a[keep], vel[keep]
    uniq, inv = np.unique(a, return_inverse=True)
    out = np.zeros((len(uniq), N_DRUMS))
    np.maximum.at(out, inv, vel)
    return uniq.astype(np.int64), out


def bar_patterns_of(seq, b0: int, b1: int) -> np.ndarray:
    """(b1 - b0, 9) int64 16-step pattern hashes of bars ``b0 .. b1-1`` of a sequence."""
    a, vel = seq
    sel = (a >= b0 * STEPS) & (a < b1 * STEPS)
    out = np.zeros((b1 - b0, N_DRUMS), dtype=np.int64)
    bars = a[sel] // STEPS - b0
    bits = np.left_shift(np.int64(1), a[sel] % STEPS)
    for d in range(N_DRUMS):
        hit = vel[sel, d] > 0
        np.bitwise_or.at(out[:, d], bars[hit], bits[hit])
    return out


def bar_stats(seqs: list, ranges: list, known: set | None = None) -> dict:
    """Pooled statistics of ``seqs[i]`` over bars ``ranges[i] = (b0, b1)`` (see module docs)."""
    n_bars = 0
    hits = np.zeros(N_DRUMS)
    odd = 0.0
    ioi = np.zeros(IOI_MAX)
    velh = np.zeros(len(VEL_BINS) - 1)
    same = pairs = 0
    novel = nonempty = 0
    for seq, (b0, b1) in zip(seqs, ranges):
        a, vel = seq
        sel = (a >= b0 * STEPS) & (a < b1 * STEPS)
        v = vel[sel]
        n_bars += b1 - b0
        h = v > 0
        hits += h.sum(axis=0)
        odd += float(h[(a[sel] % 2) == 1].sum())
        if sel.sum() > 1:
            ioi += np.bincount(np.clip(np.diff(a[sel]), 1, IOI_MAX) - 1, minlength=IOI_MAX)
        velh += np.histogram(v[h], VEL_BINS)[0]
        pats = bar_patterns_of(seq, b0, b1)
        full = pats.any(axis=1)
        if len(pats) > 1:
            both = full[1:] | full[:-1]
            pairs += int(both.sum())
            same += int(((pats[1:] == pats[:-1]).all(axis=1) & both).sum())
        if known is not None:
            for row in pats[full]:
                nonempty += 1
                novel += tuple(row.tolist()) not in known
    total = hits.sum()
    return {"bars": n_bars, "hits_per_bar": hits / max(n_bars, 1),
            "offbeat_share": odd / total if total else 0.0,
            "ioi": ioi / ioi.sum() if ioi.sum() else ioi, "velocity": velh / velh.sum() if velh.sum() else velh,
            "repetition": same / pairs if pairs else 0.0,
            "novelty": novel / nonempty if nonempty else float("nan")}


def compare(s: dict, ref: dict) -> dict:
    """Distances of statistics ``s`` to ``ref`` (lower is closer; velocity intersection: higher is closer)."""
    return {"hits_per_bar_l1": float(np.abs(s["hits_per_bar"] - ref["hits_per_bar"]).sum()),
            "offbeat_share_diff": float(abs(s["offbeat_share"] - ref["offbeat_share"])),
            "ioi_tv": float(0.5 * np.abs(s["ioi"] - ref["ioi"]).sum()),
            "velocity_intersection": float(np.minimum(s["velocity"], ref["velocity"]).sum()),
            "repetition_diff": float(abs(s["repetition"] - ref["repetition"]))}


#: For each distance, whether a higher value is closer.
HIGHER_IS_CLOSER = {"hits_per_bar_l1": False, "offbeat_share_diff": False, "ioi_tv": False,
                    "velocity_intersection": True, "repetition_diff": False}


def known_patterns(seqs: list) -> set:
    """The set of non-empty 9-drum bar patterns (tuples) in ``seqs`` (all their bars)."""
    out = set()
    for seq in seqs:
        a = seq[0]
        if not len(a):
            continue
        pats = bar_patterns_of(seq, int(a[0] // STEPS), int(a[-1] // STEPS) + 1)
        out.update(tuple(r.tolist()) for r in pats[pats.any(axis=1)])
    return out
