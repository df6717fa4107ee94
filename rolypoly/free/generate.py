"""Generation: continue, fill or freely improvise a score with the event model, then perform it.

Modes (``mode``):

``continue``
    the model reads the whole score, then keeps playing for ``bars`` bars after its end;
``fill``
    the model reads the score and improvises in every bar the score leaves empty (and, with
    ``fill_every=N``, replaces every N-th bar by a fill: denser and busier than the groove);
``free``
    only the score's first bar is kept; from there the model follows only itself, for the
    score's length plus ``bars`` bars (with no score: ``bars`` bars after a downbeat kick).

Generated events become score rows on the 16th grid of the score's tempo map (tempo and
meter carry on from the score's last ones); a hit's velocity is drawn within its sampled
class from the score's own velocities of that drum and class (GMD train's where the score
has too few), and the row's score velocity is the mean of those drawn at its drum and bar
position so far (:func:`written_velocities`: a score written like the performance model's
training scores, whose accents it plays itself).  :func:`perform` then lets the performance model
give every row its velocities and micro-timing (or, with ``filter_hits=
"score_notes_and_vels"``, its micro-timing only), free-running as when it plays alone.

Examples
--------
>>> from rolypoly.free.runtime import load_events
>>> out = generate(load_events("models/events.pt"), read_score("in.mid"), "continue", bars=8, seed=0)  # doctest: +SKIP
>>> out.score.n_rows > out.n_score_rows                                                               # doctest: +SKIP
True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolypoly.errors import RolypolyError
from rolypoly.free import encode as enc
from rolypoly.score.drums import N_DRUMS

MODES = ("continue", "fill", "free")
#: How much a fill bar raises the density and complexity knobs over the groove's (quantile units).
FILL_BOOST = 0.3


class GenerateError(RolypolyError):
    """A generation setting is invalid (mode, bars, knobs)."""


@dataclass
class Generated:
    score: object              # the Score with score rows and generated rows
    generated: np.ndarray      # (N,) bool: rows that the event model made
    events: enc.Events         # the generated events
    first_bar: int             # first bar that holds generated material
    n_score_rows: int
    drawn: np.ndarray | None = None   # (E, 9) the velocities drawn for ``events`` (the score holds
    #                                   their per-position means, :func:`written_velocities`)


def empty_score(bpm: float = 120.0, tsig: tuple[int, int] = (4, 4)):
    """A score with no rows and a constant tempo and meter (what ``free`` starts from without a score)."""
    from rolypoly.score.midi import Score, TempoMap
    tm = TempoMap(480, [0], [60e6 / float(bpm)], [0], [tuple(tsig)])
    z = np.zeros(0)
    return Score(z, np.zeros((0, N_DRUMS), np.int16), np.zeros((0, N_DRUMS)), z, z, z, np.zeros(0, np.int64), z, tm)


def score_events(score) -> enc.Events:
    """The score's rows as events (score velocities)."""
    return enc.events_from_rows(score.vel, score.phase, score.bar)


def rows_for_events(score, ev: enc.Events, vel: np.ndarray) -> dict:
    """Row arrays for events placed on ``score``'s tempo map (16 steps a bar), with velocities ``vel (E, 9)``."""
    tm = score.tempo
    E = len(ev)
    out = {"times_ms": np.zeros(E), "vel": np.zeros((E, N_DRUMS), np.int16), "bpm": np.zeros(E),
           "tsig": np.zeros(E), "phase": np.zeros(E), "bar": np.zeros(E, np.int64)}
    for i in range(E):
        b, s = divmod(int(ev.abs_step[i]), enc.STEPS)
        t0, t1 = tm.bar_start_tick(b), tm.bar_start_tick(b + 1)
        tick = t0 + s * (t1 - t0) / enc.STEPS
        out["times_ms"][i] = 1000.0 * tm.seconds(tick)
        out["bpm"][i] = tm.bpm_at(tick)
        n, d = tm.meter_at(tick)
        out["tsig"][i] = n / d
        out["phase"][i] = s / enc.STEPS
        out["bar"][i] = b
    out["vel"][:] = np.where(ev.vcls >= 0, vel, 0) if E else out["vel"]
    return out


def merge_rows(score, keep: np.ndarray, ev: enc.Events, vel: np.ndarray):
    """A new Score: the kept rows of ``score`` plus rows for ``ev`` (velocities ``vel``); and the generated-row mask."""
    from rolypoly.score.midi import Score
    new = rows_for_events(score, ev, vel)
    E = len(ev)
    times = np.concatenate([score.times_ms[keep], new["times_ms"]])
    order = np.argsort(times, kind="stable")
    cat = lambda a, b: np.concatenate([a, b])[order]
    gen = np.concatenate([np.zeros(int(keep.sum()), bool), np.ones(E, bool)])[order]
    out = Score(times[order], cat(score.vel[keep], new["vel"]).astype(np.int16),
                cat(score.off[keep], np.zeros((E, N_DRUMS))), cat(score.bpm[keep], new["bpm"]),
                cat(score.tsig[keep], new["tsig"]), cat(score.phase[keep], new["phase"]),
                cat(score.bar[keep], new["bar"]).astype(np.int64), cat(score.tau_g[keep], np.zeros(E)),
                score.tempo, score.path, dict(score.unknown_pitches))
    return out, gen


HEAD_TEMPERATURES = ("drum_temperature", "vel_temperature", "loop_temperature")


def head_temperatures(node) -> dict:
    """The optional per-head sampling temperatures of a ``generate`` config node (None where unset)."""
    get = node.get if hasattr(node, "get") else (lambda k, d=None: getattr(node, k, d))
    return {k: (None if get(k) is None else float(get(k))) for k in HEAD_TEMPERATURES}


def _sampler(runtime, temperature, generate_vels, density, complexity, seed, drum_temperature=None, vel_temperature=None,
             loop_temperature=None):
    from rolypoly.free.runtime import EventSampler
    return EventSampler(runtime, temperature, generate_vels, density, complexity, seed, drum_temperature, vel_temperature,
                        loop_temperature)


def generate(runtime, score=None, mode: str = "continue", bars: int = 8, temperature: float = 1.0,
             generate_vels=(0.1, 1.0), density: float | None = None, complexity: float | None = None,
             fill_every: int = 0, seed: int | None = None, drum_temperature: float | None = None,
             vel_temperature: float | None = None, loop_temperature: float | None = None) -> Generated:
    """Generate with the event model (see module docs).

    Parameters
    ----------
    runtime : :class:`rolypoly.free.runtime.EventRuntime`
    score : :class:`rolypoly.score.midi.Score` or None (``free`` from a downbeat kick)
    mode : ``continue``, ``fill`` or ``free``
    bars : bars to add after the score's end (``continue``, ``free``)
    temperature, generate_vels, density, complexity, seed, drum_temperature, vel_temperature, loop_temperature :
        sampling (:class:`~rolypoly.free.runtime.EventSampler`)
    fill_every : in ``fill`` mode, also make every N-th bar a fill (0 = only empty bars)

    Raises
    ------
    GenerateError
        Unknown mode, negative bars, a score with nothing to continue.
    """
    if mode not in MODES:
        raise GenerateError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    if int(fill_every) != fill_every or fill_every < 0:
        raise GenerateError(f"fill_every must be a whole number >= 0, got {fill_every!r}")
    fill_every = int(fill_every)
    score, bars = _checked(score, mode, bars)
    s = _sampler(runtime, temperature, generate_vels, density, complexity, seed, drum_temperature, vel_temperature,
                 loop_temperature)
    S = enc.STEPS
    if mode in ("continue", "free"):
        keep, first_bar, end_bar, prefix = _open(s, score, mode, bars)
        gen = _concat(prefix, s.generate_until(end_bar * S))
    else:  # fill
        ev = score_events(score)
        gen, first_bar = _fill(s, ev, int(score.bar[-1]) + 1, fill_every, runtime, density, complexity)
        fill_bars = set((gen.abs_step // S).tolist())
        keep = ~np.isin(score.bar, sorted(fill_bars)) if fill_bars else np.ones(score.n_rows, bool)
    own = _own_velocities(score, keep)
    drawn = runtime.velocities(gen, s.rng, own)
    out, mask = merge_rows(score, keep, gen, written_velocities(gen, drawn, *_position_sums()))
    return Generated(out, mask, gen, first_bar, int(keep.sum()), drawn)


def _position_sums() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((N_DRUMS, enc.STEPS)), np.zeros((N_DRUMS, enc.STEPS))


def written_velocities(ev: enc.Events, drawn: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The score velocities of generated events: per drum and bar position (16th), the mean of
    the velocities drawn there so far, this bar included (``sums``/``counts`` (9, 16) carry
    the running totals from bar to bar and are updated).

    The performance model learned to read a score written as a take's per-position means and
    to play the accents itself; given every drawn velocity as written it would accent twice
    (loud hits pushed to the top).

    >>> ev = enc.Events(np.array([0, 16]), np.array([1, 1]), np.array([[0] + [-1] * 8, [2] + [-1] * 8]))
    >>> drawn = np.zeros((2, 9)); drawn[:, 0] = [60, 100]
    >>> written_velocities(ev, drawn, *_position_sums())[:, 0].tolist()
    [60, 80]
    """
    drawn = np.asarray(drawn)
    out = np.zeros(drawn.shape, dtype=np.int16)
    bars = ev.abs_step // enc.STEPS
    for b in np.unique(bars):
        rows = np.flatnonzero(bars == b)
        r, d = np.nonzero(drawn[rows] > 0)
        r = rows[r]
        pos = ev.abs_step[r] % enc.STEPS
        np.add.at(sums, (d, pos), drawn[r, d])
        np.add.at(counts, (d, pos), 1)
        out[r, d] = np.clip(np.rint(sums[d, pos] / counts[d, pos]), 1, 127)
    return out


def _own_velocities(score, keep):
    from rolypoly.free.runtime import velocity_table
    return velocity_table(score.vel[keep]) if keep.any() else None  # the dynamics of what is kept, where known


def _no_events() -> enc.Events:
    return enc.Events(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, N_DRUMS), np.int64))


def _checked(score, mode: str, bars) -> tuple:
    """``(score, bars)`` checked: no score is an empty one, which only ``free`` can start from."""
    if int(bars) != bars or bars < 0 or bars > 10000:
        raise GenerateError(f"bars must be a whole number in [0, 10000], got {bars!r}")
    if score is None:
        score = empty_score()
    if mode != "free" and score.n_rows == 0:
        raise GenerateError(f"mode {mode} needs a score with drums (or use mode free)")
    return score, int(bars)


def _open(s, score, mode: str, bars: int):
    """Feed the sampler what ``continue`` or ``free`` starts from: ``(keep, first_bar, end_bar,
    prefix)``: the score rows kept, the first bar with generated material, the bar where
    generation ends, and events that count as generated before any draw (``free`` without a
    score: a downbeat kick)."""
    S = enc.STEPS
    ev = score_events(score)
    if mode == "continue":
        s.feed_events(ev)
        start = int(score.bar[-1]) + 1
        s.freeze_style(start * S)  # the style of the score's last 4 bars (or the knobs) carries on
        return np.ones(score.n_rows, bool), start, start + bars, _no_events()
    if len(ev) == 0:
        seed_ev = enc.Events(np.array([0]), np.array([1]), np.array([[1] + [-1] * (N_DRUMS - 1)]))
        first = 0
    else:
        first = int(ev.abs_step[0]) // S
        seed_ev = ev.slice(0, int(np.searchsorted(ev.abs_step, (first + 1) * S)))
    s.feed_events(seed_ev)
    s.freeze_style(int(seed_ev.abs_step[-1]) + 1)
    end_bar = (int(score.bar[-1]) + 1 if score.n_rows else first + 1) + bars
    if not len(ev):
        return np.zeros(0, bool), 0, end_bar, seed_ev
    return score.bar < first + 1, first + 1, end_bar, _no_events()


class LiveGeneration:
    """``continue`` or ``free`` drawn a bar at a time while a take plays (the engine's worker).

    :attr:`score` is what the take starts with (the score rows kept, plus a downbeat kick in
    ``free`` without a score); :meth:`next_part` draws the next bar's events, conditioned on
    everything drawn before, and returns them as score rows to append.  The draws follow the
    same rules as :func:`generate` (one sampler, fed each event as it is drawn), bar by bar:
    with a seed they repeat exactly from take to take, though not the same draws as one
    :func:`generate` call (the draw that lands past a bar's end is made again in the next bar).

    Attributes
    ----------
    score : Score to start the take with
    first_bar, end_bar : generated material from ``first_bar``, up to (excluding) ``end_bar``
    next_bar : the bar :meth:`next_part` draws next
    max_rows : most rows the remaining bars can add (one per 16th)
    length_ms : where the take ends (the start of ``end_bar``)
    """

    def __init__(self, runtime, score, mode: str, bars: int, temperature: float = 1.0, generate_vels=(0.1, 1.0),
                 density=None, complexity=None, seed=None, drum_temperature=None, vel_temperature=None,
                 loop_temperature=None):
        if mode not in ("continue", "free"):
            raise GenerateError(f"mode {mode!r}: only continue and free are drawn while playing")
        score, bars = _checked(score, mode, bars)
        self.runtime = runtime
        self.sampler = s = _sampler(runtime, temperature, generate_vels, density, complexity, seed, drum_temperature,
                                    vel_temperature, loop_temperature)
        keep, self.first_bar, self.end_bar, prefix = _open(s, score, mode, bars)
        self._own = _own_velocities(score, keep)
        self._sums = _position_sums()
        drawn = runtime.velocities(prefix, s.rng, self._own)
        self.score, self.generated = merge_rows(score, keep, prefix, written_velocities(prefix, drawn, *self._sums))
        self.next_bar = int(s.last_step) // enc.STEPS
        self.max_rows = max(0, self.end_bar - self.next_bar) * enc.STEPS
        self.length_ms = 1000.0 * score.tempo.seconds(score.tempo.bar_start_tick(self.end_bar))

    @property
    def done(self) -> bool:
        return self.next_bar >= self.end_bar

    def next_part(self):
        """The next bar's generated rows (a Score, possibly with no rows), or None when done."""
        if self.done:
            return None
        s = self.sampler
        ev = s.generate_until((self.next_bar + 1) * enc.STEPS)
        self.next_bar += 1
        drawn = self.runtime.velocities(ev, s.rng, self._own)
        # the new rows alone, on the score's tempo map
        return merge_rows(self.score, np.zeros(self.score.n_rows, bool), ev, written_velocities(ev, drawn, *self._sums))[0]


def _concat(a: enc.Events, b: enc.Events) -> enc.Events:
    if not len(a):
        return b
    return enc.Events(np.concatenate([a.abs_step, b.abs_step]), np.concatenate([a.mask, b.mask]),
                      np.concatenate([a.vcls, b.vcls]).reshape(-1, N_DRUMS))


def _fill(s, ev: enc.Events, n_bars: int, fill_every: int, runtime, density, complexity):
    """Walk the score bar by bar: feed its events, improvise in empty bars and in every N-th bar."""
    S = enc.STEPS
    bar_of = ev.abs_step // S
    parts: list[enc.Events] = []
    first_bar = -1
    i = 0
    for b in range(n_bars):
        j = int(np.searchsorted(bar_of, b + 1))
        here = ev.slice(i, j)
        i = j
        is_fill = fill_every > 0 and (b + 1) % fill_every == 0
        if (len(here) and not is_fill) or s.last_step is None:
            if len(here):
                s.feed_events(here)
            continue
        if is_fill:  # a fill: busier than the groove around it
            groove = s.style(b * S)
            d = _quantile_of(runtime, 0, groove[0]) if density is None else float(density)
            c = _quantile_of(runtime, 1, groove[1]) if complexity is None else float(complexity)
            saved = (s.density, s.complexity)
            s.density, s.complexity = min(1.0, d + FILL_BOOST), min(1.0, c + FILL_BOOST)
        s.freeze_style(b * S)
        got = s.generate_until((b + 1) * S, min_step=b * S)
        s.thaw_style()  # the score's own bars are measured again
        if is_fill:
            s.density, s.complexity = saved
        if len(got):
            parts.append(got)
            first_bar = b if first_bar < 0 else first_bar
    if not parts:
        return enc.Events(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, N_DRUMS), np.int64)), -1
    out = parts[0]
    for p in parts[1:]:
        out = _concat(out, p)
    return out, first_bar


def _quantile_of(runtime, which: int, value: float) -> float:
    q, d, c = runtime._q
    return float(np.interp(value, (d, c)[which], q))


PERFORM_FILTERS = ("score_notes", "score_notes_and_vels")


def perform(score, perf_runtime=None, predict=None, window: int | None = None, filter_hits: str = "score_notes"):
    """The performance model plays ``score`` alone (free-running): a Score with its velocities and offsets.

    The drums are the score's; with ``filter_hits="score_notes"`` their velocities are the
    model's, with ``"score_notes_and_vels"`` the score's; offsets are the model's (bar
    fractions).  Pass a loaded :class:`rolypoly.model.export.Runtime` or a batched
    ``predict`` with its ``window``.
    """
    return perform_many([score], perf_runtime, predict, window, filter_hits)[0]


def perform_many(scores: list, perf_runtime=None, predict=None, window: int | None = None,
                 filter_hits: str = "score_notes", stepper=None) -> list:
    """:func:`perform` for several scores at once (one batched model call per row index).

    An incremental model (``stepper``, its TorchScript module, or a ``perf_runtime`` that
    steps) plays them as the engine does, one cached step per row; a window model
    (``predict`` with its ``window``) recomputes its window for every row.
    """
    if filter_hits not in PERFORM_FILTERS:
        raise GenerateError(f"filter_hits {filter_hits!r}: choose one of {', '.join(PERFORM_FILTERS)}")
    from rolypoly.model.evaluate import predictor_from_model, running, stepped
    from rolypoly.score.features import decode_outputs, encode_rows
    if stepper is None and predict is None and getattr(perf_runtime, "supports_step", False):
        stepper = perf_runtime.module
    if predict is None and stepper is None:
        predict = predictor_from_model(perf_runtime.module)
        window = perf_runtime.window
    xs, hits = [], []
    for sc in scores:
        xs.append(encode_rows(sc.vel, np.zeros_like(sc.off), sc.bpm, sc.tsig, sc.phase, np.zeros(sc.n_rows)))
        hits.append(sc.vel > 0)
    if not scores:
        outs = []
    elif stepper is not None:
        outs = stepped(stepper, xs, hits)
    else:
        outs = running(predict, xs, hits, int(window or 16))
    played = []
    for sc, y, hit in zip(scores, outs, hits):
        vel, off, _ = decode_outputs(y)
        p = sc.copy()
        if filter_hits == "score_notes":
            p.vel = np.where(hit, np.clip(np.rint(vel), 1, 127), 0).astype(np.int16)
        p.off = np.where(hit, off, 0.0)
        played.append(p)
    return played
