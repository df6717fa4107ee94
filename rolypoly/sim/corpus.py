"""Made-up material for tests, benchmarks and smoke runs: a groove score, a tiny corpus."""
from __future__ import annotations

import numpy as np

from rolypoly.score.midi import Note, TempoMap, bar_ms, score_from_notes


def groove_score(n_bars: int, bpm: float = 120.0):
    """A plain rock groove (kick 1 and 3, snare 2 and 4, closed hat eighths) of ``n_bars`` bars."""
    ppq = 480
    tmap = TempoMap(ppq, [0], [60e6 / bpm], [0], [(4, 4)])
    notes = []
    for b in range(n_bars):
        for e in range(8):
            tick = b * 4 * ppq + e * ppq // 2
            sec = tmap.seconds(tick)
            notes.append(Note(tick, sec, 2, 80 if e % 2 == 0 else 60))
            if e in (0, 4):
                notes.append(Note(tick, sec, 0, 100))
            if e in (2, 6):
                notes.append(Note(tick, sec, 1, 105))
    notes.sort(key=lambda n: (n.tick, n.drum))
    return score_from_notes(notes, tmap)


def synthetic_takes(n_takes: int = 12, rows: int = 64, seed: int = 0):
    """A tiny made-up corpus with GMD's structure (for tests and smoke runs without the dataset)."""
    from rolypoly.score.gmd import Takes
    rng = np.random.default_rng(seed)
    arrays = {k: [] for k in ("score_vel", "vel", "off", "bpm", "tsig", "phase", "bar", "bar_ms")}
    starts = [0]
    splits = []
    for i in range(n_takes):
        step = np.arange(rows)
        phase = (step % 16) / 16.0
        vel = np.zeros((rows, 9), np.float32)
        vel[:, 2] = rng.integers(40, 110, rows)          # hi-hat every row
        vel[step % 4 == 0, 0] = rng.integers(60, 127, int((step % 4 == 0).sum()))
        vel[step % 8 == 4, 1] = rng.integers(60, 127, int((step % 8 == 4).sum()))
        feel = rng.normal(0, 0.005)
        off = np.where(vel > 0, feel + rng.normal(0, 0.004, vel.shape), 0).astype(np.float32)
        hit = vel > 0
        mean = np.where(hit.any(0), (vel * hit).sum(0) / np.maximum(hit.sum(0), 1), 0)
        bpm = np.full(rows, 90.0 + 10 * (i % 5), np.float32)
        for k, v in (("score_vel", np.where(hit, mean, 0).astype(np.float32)), ("vel", vel), ("off", off),
                     ("bpm", bpm), ("tsig", np.ones(rows, np.float32)), ("phase", phase.astype(np.float32)),
                     ("bar", (step // 16).astype(np.int32)), ("bar_ms", bar_ms(bpm, 1.0).astype(np.float32))):
            arrays[k].append(v)
        starts.append(starts[-1] + rows)
        splits.append(("train", "train", "validation", "test")[i % 4])
    meta = {"split": np.array(splits), "drummer": np.array(["synthetic"] * n_takes),
            "style": np.array(["rock"] * n_takes), "midi_filename": np.array([f"s{i}.mid" for i in range(n_takes)]),
            "duration": np.full(n_takes, 30.0), "time_signature": np.array(["4-4"] * n_takes),
            "beat_type": np.array(["beat"] * n_takes)}
    return Takes({k: np.concatenate(v) for k, v in arrays.items()}, np.array(starts, np.int64), meta)
