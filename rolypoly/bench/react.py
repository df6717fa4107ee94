"""How fast the drums follow a musician who changes feel mid-take.

A virtual musician plays a 120 bpm groove on the beat for 4 bars, then 30 ms late from
bar 5, then 20 ms early from bar 9 (a little random jitter throughout).  The drum
machine plays it offline (deterministic, the lookahead fixed) with the pretrained
model, once at the default lookahead and once at 500 ms.  After each change:

* follow gain: the share of the musician's shift the drums adopt once settled (mean
  drum shift over the segment's last two bars, minus the bar before the change,
  over the musician's shift);
* beats to half-way: the time from the change to the first row whose drums (against
  the same row of the bar before the change) have moved half of the settled amount, in
  beats (the change's own downbeat is fixed before the musician plays it: 0.5 = the
  next 8th);

and the take's mean asynchrony (``|hit - musician onset|`` on shared rows).
"""
from __future__ import annotations

HELP = "drums following a musician who changes feel (late from bar 5, early from bar 9): gain, beats to half-way"

SHIFTS_MS = ((0, 0.0), (4, 30.0), (8, -20.0))   # (from bar index, musician offset in ms)
BARS = 14


def add_arguments(p) -> None:
    p.add_argument("--model", default=None, help="TorchScript model (default engine.model_path)")
    p.add_argument("--lookaheads", default=None,
                   help="comma-separated lookaheads in ms (default: engine.lookahead_ms and 500)")
    p.add_argument("--seed", type=int, default=3)


def shifted_take(score, sr: int, seed: int, jitter_ms: float = 3.0):
    """The musician's audio, rows and true onsets, with the feel changing at the bars of :data:`SHIFTS_MS`."""
    import numpy as np

    from rolypoly.sim.duet import musician_rows
    from rolypoly.sim.musician import Feel, play
    rows = musician_rows(score)
    shift = np.zeros(len(rows))
    for bar, ms in SHIFTS_MS:
        shift[score.bar[rows] >= bar] = ms / 1000.0
    times = score.times_ms[rows] / 1000.0 + shift
    audio, onsets = play(times, score.phase[rows], score.bar_ms[rows] / 1000.0,
                         Feel("react", jitter_ms=jitter_ms), sr=sr, seed=seed)
    return audio, rows, np.asarray(onsets), shift * 1000.0


def follow(hits, score, sr: int) -> dict:
    """Per change of :data:`SHIFTS_MS`: follow gain and beats to half-way, from the drum hits.

    Each hit is assigned to its nearest score row; a row's shift is the mean offset of
    its hits, taken against the same row of the bar before the change (so the model's
    own feel inside a bar cancels out).  ``beats_to_half_way`` is the time from the
    change to the first row whose shift has reached half the settled amount, in beats:
    the drums of the change's own downbeat are fixed before the musician plays it, so
    the first row that can move at all is the next one.

    Examples
    --------
    >>> from rolypoly.sim.corpus import groove_score
    >>> s = groove_score(BARS, 120.0)
    >>> def feel(ms):  # drums a row behind a musician: +30 ms from bar 5, -20 ms from bar 9
    ...     return 30.0 if 8000.0 <= ms < 16000.0 else (-20.0 if ms >= 16000.0 else 0.0)
    >>> hits = [{"sample": int(round((t + feel(t - 1.0)) * 48))} for t in s.times_ms]
    >>> [round(c["follow_gain"], 2) for c in follow(hits, s, 48000)["changes"]]
    [1.0, 1.0]
    >>> [c["beats_to_half_way"] for c in follow(hits, s, 48000)["changes"]]
    [0.5, 0.5]
    """
    import numpy as np
    t = np.array([h["sample"] for h in hits], dtype=np.float64) / sr * 1000.0
    idx = np.clip(np.searchsorted(score.times_ms, t), 1, len(score.times_ms) - 1)
    left, right = score.times_ms[idx - 1], score.times_ms[idx]
    row = np.where(np.abs(t - left) <= np.abs(t - right), idx - 1, idx)
    offset = t - score.times_ms[row]          # each hit's offset from its row, in ms
    per_row = {int(r): float(np.mean(offset[row == r])) for r in np.unique(row)}
    bar_ms = float(score.bar_ms[0])
    beat_ms = bar_ms / 4.0

    def position(r):  # a row's place in its bar, in ms
        return float(score.times_ms[r] - score.bar[r] * bar_ms)

    out = []
    for i in range(1, len(SHIFTS_MS)):
        bar0, ms = SHIFTS_MS[i]
        change = ms - SHIFTS_MS[i - 1][1]
        end_bar = SHIFTS_MS[i + 1][0] if i + 1 < len(SHIFTS_MS) else BARS
        base = {round(position(r), 3): v for r, v in per_row.items() if score.bar[r] == bar0 - 1}
        shift = {r: v - base[round(position(r), 3)] for r, v in per_row.items()
                 if bar0 <= score.bar[r] < end_bar and round(position(r), 3) in base}
        settled = [v for r, v in shift.items() if score.bar[r] >= end_bar - 2]
        moved = float(np.mean(settled))
        gain = moved / change
        t0 = bar0 * bar_ms
        half = None
        for r in sorted(shift):
            if gain > 0 and shift[r] / change >= 0.5 * gain:
                half = round(float(score.times_ms[r] - t0) / beat_ms, 3)
                break
        out.append({"from_bar": bar0 + 1, "musician_shift_ms": change, "drums_moved_ms": moved,
                    "follow_gain": gain, "beats_to_half_way": half,
                    "row_shift_ms": [round(shift[r], 2) for r in sorted(shift)][:16]})
    return {"changes": out, "per_row_offset_ms": [per_row.get(r) for r in range(len(score.times_ms))]}


def run(cfg, args):
    import tempfile
    from pathlib import Path

    import numpy as np

    from rolypoly.config import with_values
    from rolypoly.live.drivers import perform_offline
    from rolypoly.live.engine import Rolypoly
    from rolypoly.report import Table
    from rolypoly.sim.corpus import groove_score
    from rolypoly.sim.duet import asynchrony_ms, quantised_asynchrony_ms
    sr = int(cfg.audio.sample_rate)
    default_ms = float(cfg.engine.lookahead_ms)
    looks = [float(x) for x in args.lookaheads.split(",")] if args.lookaheads else [default_ms, 500.0]
    model = args.model or str(cfg.engine.model_path)
    work = Path(tempfile.mkdtemp(prefix="rolypoly-bench-react-"))
    score = groove_score(BARS, 120.0)
    path = score.write_midi(work / "groove.mid")
    audio, rows, onsets, _ = shifted_take(score, sr, args.seed)
    res = {"model": model, "bpm": 120.0, "shifts": [{"from_bar": b + 1, "offset_ms": ms} for b, ms in SHIFTS_MS],
           "quantised_asynchrony_ms": quantised_asynchrony_ms(score, rows, onsets), "runs": []}
    t = Table("drums following a change of feel (120 bpm, offline, pretrained model)",
              ["lookahead ms", "change", "follow gain", "beats to half-way", "asynchrony ms", "late rows"])
    for la in looks:
        eng = Rolypoly(with_values(cfg, **{"takes_dir": str(work / "takes"), "engine.model_path": model,
                                           "engine.lookahead_ms": la}), offline=True)
        if not eng.message("read", str(path)):
            raise RuntimeError("; ".join(eng.last_errors()))
        out = perform_offline(eng, audio)
        if eng.runtime is None:
            raise RuntimeError(f"no model: {eng.last_errors()[-1:]}")
        f = follow(out.hits, score, sr)
        asy = asynchrony_ms(out.hits, sr, score, rows, onsets)
        res["runs"].append({"lookahead_ms": la, "asynchrony_ms": asy, "late_rows": out.late_rows,
                            "model_version": getattr(eng.runtime, "version", None), **f})
        for c in f["changes"]:
            t.add(la, f"{c['musician_shift_ms']:+.0f} ms at bar {c['from_bar']}", round(c["follow_gain"], 3),
                  c["beats_to_half_way"], round(asy, 2), out.late_rows)
    t.notes.append(f"quantised machine asynchrony {res['quantised_asynchrony_ms']:.2f} ms; model {model}")
    t.notes.append("target: half-way within one beat at the default lookahead; asynchrony lower than at 500 ms")
    return [t], res
