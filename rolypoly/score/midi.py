"""MIDI <-> Score: the drum part as rows, with its tempo map and meters.

A :class:`Score` holds one row per distinct onset time (notes closer than the merge
tolerance share a row).  Each row has per-drum velocities and timing offsets, the
local tempo, the meter as a fraction (3/4 -> 0.75, 7/8 -> 0.875), the position in
the bar and the musician's offset ``tau_g``.  Offsets are fractions of a bar; a bar
lasts ``240000 * tsig / bpm`` ms at every tempo.

Examples
--------
>>> score = read_score("data/demo.mid")            # doctest: +SKIP
>>> score.n_rows, score.vel.shape                   # doctest: +SKIP
(256, (256, 9))
>>> score.write_midi("copy.mid")                    # doctest: +SKIP
"""
from __future__ import annotations

import bisect
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rolypoly.errors import ScoreError
from rolypoly.io import atomic_path
from rolypoly.score.drums import DRUMS, N_DRUMS, OUTPUT_PITCHES, PITCH_TO_DRUM

DEFAULT_BPM = 120.0
DEFAULT_TSIG = (4, 4)
MIN_BPM, MAX_BPM = 10.0, 1000.0
MAX_MIDI_BYTES = 16 << 20  # a file larger than this is not a drum score
_DRUM_TRACK_NAME = re.compile(r"drum|percussion|\bkit\b|\bperc\b", re.IGNORECASE)


def bar_ms(bpm, tsig):
    """Length of one bar in ms: ``240000 * tsig / bpm`` (tsig as a fraction, bpm in quarters).

    >>> bar_ms(120.0, 1.0), bar_ms(60.0, 1.0), bar_ms(120.0, 0.75)
    (2000.0, 4000.0, 1500.0)
    """
    return 240000.0 * tsig / bpm


@dataclass
class TempoMap:
    """Piecewise-constant tempo and meter over MIDI ticks.

    ``tempo_ticks``/``us_per_beat``: tempo changes; ``meter_ticks``/``meters``: time
    signatures as (numerator, denominator).  Both start at tick 0.
    """

    ppq: int
    tempo_ticks: list[int] = field(default_factory=lambda: [0])
    us_per_beat: list[float] = field(default_factory=lambda: [500000.0])
    meter_ticks: list[int] = field(default_factory=lambda: [0])
    meters: list[tuple[int, int]] = field(default_factory=lambda: [DEFAULT_TSIG])

    def __post_init__(self) -> None:
        # Seconds at each tempo change, for O(log n) tick -> time.
        self._tempo_sec = [0.0]
        for i in range(1, len(self.tempo_ticks)):
            dt = self.tempo_ticks[i] - self.tempo_ticks[i - 1]
            self._tempo_sec.append(self._tempo_sec[-1] + dt * self.us_per_beat[i - 1] / 1e6 / self.ppq)
        # Bar index at each meter change: meters change on bar lines (a change inside a bar
        # starts a new bar there, as sequencers do).
        self._meter_bar = [0.0]
        for i in range(1, len(self.meter_ticks)):
            n, d = self.meters[i - 1]
            bar_ticks = self.ppq * 4 * n / d
            bars = (self.meter_ticks[i] - self.meter_ticks[i - 1]) / bar_ticks
            self._meter_bar.append(self._meter_bar[-1] + float(np.ceil(bars - 1e-9)))

    def seconds(self, tick: float) -> float:
        i = bisect.bisect_right(self.tempo_ticks, tick) - 1
        return self._tempo_sec[i] + (tick - self.tempo_ticks[i]) * self.us_per_beat[i] / 1e6 / self.ppq

    def tick_at(self, seconds: float) -> float:
        i = bisect.bisect_right(self._tempo_sec, seconds) - 1
        return self.tempo_ticks[i] + (seconds - self._tempo_sec[i]) * 1e6 * self.ppq / self.us_per_beat[i]

    def bpm_at(self, tick: float) -> float:
        i = bisect.bisect_right(self.tempo_ticks, tick) - 1
        return 60e6 / self.us_per_beat[i]

    def meter_at(self, tick: float) -> tuple[int, int]:
        return self.meters[bisect.bisect_right(self.meter_ticks, tick) - 1]

    def bar_position(self, tick: float) -> tuple[int, float]:
        """(bar index, phase in [0, 1)) of a tick, counting through empty bars."""
        i = bisect.bisect_right(self.meter_ticks, tick) - 1
        n, d = self.meters[i]
        bar_ticks = self.ppq * 4 * n / d
        pos = (tick - self.meter_ticks[i]) / bar_ticks
        whole = np.floor(pos + 1e-9)
        phase = min(max(pos - whole, 0.0), np.nextafter(1.0, 0.0))
        return int(self._meter_bar[i] + whole), float(phase)

    def bar_start_tick(self, bar: int) -> float:
        i = bisect.bisect_right(self._meter_bar, bar) - 1
        n, d = self.meters[i]
        return self.meter_ticks[i] + (bar - self._meter_bar[i]) * self.ppq * 4 * n / d


@dataclass
class Score:
    """The drum part of a piece as rows (see module docs).

    Attributes
    ----------
    times_ms : (N,) float64      nominal row times (ms from the start)
    vel : (N, 9) int16           velocities 0-127 (0 = silent)
    off : (N, 9) float64         per-drum offsets, fractions of a bar
    bpm, tsig, phase : (N,) float64
    bar : (N,) int64             bar index of each row
    tau_g : (N,) float64         musician's offset at the row (bar fractions; 0 = none)
    tempo : TempoMap
    path : str | None
    """

    times_ms: np.ndarray
    vel: np.ndarray
    off: np.ndarray
    bpm: np.ndarray
    tsig: np.ndarray
    phase: np.ndarray
    bar: np.ndarray
    tau_g: np.ndarray
    tempo: TempoMap
    path: str | None = None
    unknown_pitches: dict[int, int] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.times_ms)

    @property
    def bar_ms(self) -> np.ndarray:
        """Length of the bar at each row in ms."""
        return bar_ms(self.bpm, self.tsig)

    @property
    def length_ms(self) -> float:
        """From 0 to the end of the last row's bar (where a loop restarts)."""
        if self.n_rows == 0:
            return 0.0
        end_tick = self.tempo.bar_start_tick(int(self.bar[-1]) + 1)
        return 1000.0 * self.tempo.seconds(end_tick)

    def hit_times_ms(self) -> np.ndarray:
        """(N, 9) performed time of each drum (row time + offset), NaN where silent."""
        t = self.times_ms[:, None] + self.off * self.bar_ms[:, None]
        return np.where(self.vel > 0, t, np.nan)

    def hit_list(self) -> list[tuple[float, int, int]]:
        """All hits as ``(time_s, drum, velocity)`` sorted by time."""
        t = self.hit_times_ms()
        rows, drums = np.nonzero(self.vel > 0)
        hits = [(float(t[r, d]) / 1000.0, int(d), int(self.vel[r, d])) for r, d in zip(rows, drums)]
        hits.sort(key=lambda h: (h[0], h[1]))
        return hits

    def copy(self) -> "Score":
        return Score(self.times_ms.copy(), self.vel.copy(), self.off.copy(), self.bpm.copy(),
                     self.tsig.copy(), self.phase.copy(), self.bar.copy(), self.tau_g.copy(),
                     self.tempo, self.path, dict(self.unknown_pitches))

    def followed_by(self, other: "Score") -> "Score":
        """A new Score: these rows, then ``other``'s (on the same tempo map)."""
        cat = np.concatenate
        return Score(cat([self.times_ms, other.times_ms]), cat([self.vel, other.vel]).astype(self.vel.dtype),
                     cat([self.off, other.off]), cat([self.bpm, other.bpm]), cat([self.tsig, other.tsig]),
                     cat([self.phase, other.phase]), cat([self.bar, other.bar]), cat([self.tau_g, other.tau_g]),
                     self.tempo, self.path, dict(self.unknown_pitches))

    def crop_bars(self, n_bars: int) -> "Score":
        """The first ``n_bars`` bars (rows with ``bar < n_bars``)."""
        keep = self.bar < n_bars
        if not keep.any():
            raise ScoreError(f"{self.path}: no rows in the first {n_bars} bars")
        return Score(self.times_ms[keep], self.vel[keep], self.off[keep], self.bpm[keep], self.tsig[keep],
                     self.phase[keep], self.bar[keep], self.tau_g[keep], self.tempo, self.path,
                     dict(self.unknown_pitches))

    def summary_rows(self) -> list[list]:
        """Rows for printing: time, bar, phase, bpm, meter and the drums with velocities."""
        out = []
        for i in range(self.n_rows):
            hits = " ".join(f"{DRUMS[d]}:{int(self.vel[i, d])}" for d in range(N_DRUMS) if self.vel[i, d] > 0)
            out.append([i, round(float(self.times_ms[i]), 3), int(self.bar[i]), round(float(self.phase[i]), 4),
                        round(float(self.bpm[i]), 3), round(float(self.tsig[i]), 4), hits])
        return out

    def to_midi(self, note_ms: float = 50.0, ppq: int = 1920):
        """This score as a ``mido.MidiFile`` (type 1: a tempo/meter track and a drum track on channel 10)."""
        import mido
        tm = self.tempo
        scale = ppq / tm.ppq
        meta = mido.MidiTrack()
        events: list[tuple[int, int, mido.MetaMessage]] = []
        for tick, us in zip(tm.tempo_ticks, tm.us_per_beat):
            events.append((round(tick * scale), 0, mido.MetaMessage("set_tempo", tempo=int(round(us)))))
        for tick, (n, d) in zip(tm.meter_ticks, tm.meters):
            events.append((round(tick * scale), 1, mido.MetaMessage("time_signature", numerator=n, denominator=d)))
        events.sort(key=lambda e: (e[0], e[1]))
        _append_absolute(meta, [(t, m) for t, _, m in events])
        out_map = TempoMap(ppq, [round(t * scale) for t in tm.tempo_ticks], list(tm.us_per_beat),
                           [round(t * scale) for t in tm.meter_ticks], list(tm.meters))
        notes: list[tuple[int, int, object]] = []
        times = self.hit_times_ms()
        for r, d in zip(*np.nonzero(self.vel > 0)):
            t_s = float(times[r, d]) / 1000.0
            on = max(0, int(round(out_map.tick_at(t_s))))
            off = max(on + 1, int(round(out_map.tick_at(t_s + note_ms / 1000.0))))
            pitch = OUTPUT_PITCHES[d]
            notes.append((on, 1, mido.Message("note_on", channel=9, note=pitch, velocity=int(self.vel[r, d]))))
            notes.append((off, 0, mido.Message("note_off", channel=9, note=pitch, velocity=0)))
        notes.sort(key=lambda e: (e[0], e[1]))
        drums = mido.MidiTrack()
        drums.append(mido.MetaMessage("track_name", name="Drums"))
        _append_absolute(drums, [(t, m) for t, _, m in notes])
        mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
        mid.tracks.extend([meta, drums])
        return mid

    def write_midi(self, path: str | os.PathLike, **kwargs) -> Path:
        """Write the score as a standard MIDI file (atomically)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            self.to_midi(**kwargs).save(str(tmp))
        return path


def _append_absolute(track, events) -> None:
    import mido
    last = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))


@dataclass
class Note:
    tick: int
    seconds: float
    drum: int
    velocity: int


def read_midi_notes(path: str | os.PathLike, include_all_channels: bool = False):
    """Read the drum notes and tempo map of a MIDI file.

    Returns ``(notes, tempo_map, unknown_pitches)`` where ``notes`` is a list of
    :class:`Note` sorted by time, and ``unknown_pitches`` counts drum-part pitches
    outside the 9-class map (they are dropped, never turned into kicks).

    Raises
    ------
    ScoreError
        Missing file, not a MIDI file, truncated or corrupt data, bad tempo or meter.
    """
    import mido
    path = Path(path)
    if not path.exists():
        raise ScoreError(f"{path}: no such file")
    if not path.is_file():
        raise ScoreError(f"{path}: not a file ({'a directory' if path.is_dir() else 'a device or pipe'})")
    size = path.stat().st_size
    if size > MAX_MIDI_BYTES:
        raise ScoreError(f"{path}: {size} bytes is too large for a MIDI score")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ScoreError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head != b"MThd":
        raise ScoreError(f"{path}: not a MIDI file (no MThd header)")
    try:
        mid = mido.MidiFile(str(path), clip=True)
    except Exception as exc:  # mido raises many types on corrupt data; all mean "bad file"
        raise ScoreError(f"{path}: corrupt or truncated MIDI data ({type(exc).__name__}: {exc})") from None
    if mid.type == 2:
        raise ScoreError(f"{path}: MIDI type 2 (independent sequences) is not supported")
    ppq = mid.ticks_per_beat
    if not ppq or ppq <= 0 or ppq > 32767:
        raise ScoreError(f"{path}: unsupported time division {ppq!r} (SMPTE timing is not supported)")

    tempos: dict[int, float] = {}
    meters: dict[int, tuple[int, int]] = {}
    raw: list[tuple[int, int, int, bool]] = []  # tick, pitch, velocity, in drum track/channel
    for track in mid.tracks:
        flagged = False
        tick = 0
        pending: list[tuple[int, int, int, int]] = []
        for msg in track:
            tick += msg.time
            if msg.is_meta:
                if msg.type == "set_tempo":
                    if msg.tempo <= 0:
                        raise ScoreError(f"{path}: zero tempo at tick {tick}")
                    bpm = 60e6 / msg.tempo
                    if not (MIN_BPM <= bpm <= MAX_BPM):
                        raise ScoreError(f"{path}: absurd tempo {bpm:.6g} bpm at tick {tick} "
                                         f"(allowed {MIN_BPM:g}-{MAX_BPM:g})")
                    tempos[tick] = float(msg.tempo)
                elif msg.type == "time_signature":
                    if msg.numerator <= 0 or msg.denominator <= 0:
                        raise ScoreError(f"{path}: bad time signature {msg.numerator}/{msg.denominator} at tick {tick}")
                    meters[tick] = (int(msg.numerator), int(msg.denominator))
                elif msg.type in ("track_name", "instrument_name") and _DRUM_TRACK_NAME.search(msg.name or ""):
                    flagged = True
            elif msg.type == "note_on" and msg.velocity > 0:
                pending.append((tick, msg.note, msg.velocity, msg.channel))
        for t, note, v, ch in pending:
            raw.append((t, note, v, flagged or ch == 9 or include_all_channels))

    tick_list = sorted(tempos)
    tm_tempo_ticks = [0] + [t for t in tick_list if t > 0]
    tm_us = [tempos.get(0, 60e6 / DEFAULT_BPM)] + [tempos[t] for t in tick_list if t > 0]
    meter_list = sorted(meters)
    tm_meter_ticks = [0] + [t for t in meter_list if t > 0]
    tm_meters = [meters.get(0, DEFAULT_TSIG)] + [meters[t] for t in meter_list if t > 0]
    tmap = TempoMap(ppq, tm_tempo_ticks, tm_us, tm_meter_ticks, tm_meters)

    unknown: Counter = Counter()
    notes: list[Note] = []
    for tick, pitch, vel, is_drum in raw:
        if not is_drum:
            continue
        drum = PITCH_TO_DRUM.get(pitch)
        if drum is None:
            unknown[pitch] += 1
            continue
        notes.append(Note(tick, tmap.seconds(tick), drum, vel))
    notes.sort(key=lambda n: (n.tick, n.drum))
    return notes, tmap, dict(unknown)


def read_score(path: str | os.PathLike, merge_tolerance_ms: float = 10.0, warn_unknown: bool = True) -> Score:
    """Read the drum part of a MIDI file (type 0 or 1) as a :class:`Score`.

    Parameters
    ----------
    path : path to a ``.mid`` file
    merge_tolerance_ms : notes closer than this to a row's first note join that row
    warn_unknown : warn (with pitch and count) about pitches outside the drum map

    Raises
    ------
    ScoreError
        The file is missing, not MIDI, corrupt, has a bad tempo, or has no drum notes.
    """
    if not (0.0 <= merge_tolerance_ms < 1000.0):
        raise ScoreError(f"merge_tolerance_ms must be in [0, 1000), got {merge_tolerance_ms}")
    notes, tmap, unknown = read_midi_notes(path)
    if unknown and warn_unknown:
        listed = ", ".join(f"pitch {p} x{c}" for p, c in sorted(unknown.items()))
        warnings.warn(f"{path}: drum notes outside the 9-class map were skipped: {listed}", stacklevel=2)
    if not notes:
        raise ScoreError(f"{path}: no drum notes (expected notes on MIDI channel 10 or in a track named as drums)")
    return score_from_notes(notes, tmap, merge_tolerance_ms, path=str(path), unknown=unknown)


def score_from_notes(notes: list[Note], tmap: TempoMap, merge_tolerance_ms: float = 10.0,
                     path: str | None = None, unknown: dict | None = None) -> Score:
    """Group notes into rows (one per distinct onset time within the merge tolerance)."""
    groups: list[list[Note]] = []
    for n in notes:
        if groups and (n.seconds - groups[-1][0].seconds) * 1000.0 < merge_tolerance_ms:
            groups[-1].append(n)
        else:
            groups.append([n])
    N = len(groups)
    times = np.zeros(N)
    vel = np.zeros((N, N_DRUMS), dtype=np.int16)
    off = np.zeros((N, N_DRUMS))
    bpm = np.zeros(N)
    tsig = np.zeros(N)
    phase = np.zeros(N)
    bar = np.zeros(N, dtype=np.int64)
    for i, group in enumerate(groups):
        first = group[0]
        times[i] = first.seconds * 1000.0
        bpm[i] = tmap.bpm_at(first.tick)
        num, den = tmap.meter_at(first.tick)
        tsig[i] = num / den
        bar[i], phase[i] = tmap.bar_position(first.tick)
        bms = bar_ms(bpm[i], tsig[i])
        for n in group:
            if n.velocity > vel[i, n.drum]:  # two hits of one class in a row: keep the louder
                vel[i, n.drum] = n.velocity
                off[i, n.drum] = (n.seconds * 1000.0 - times[i]) / bms
    return Score(times, vel, off, bpm, tsig, phase, bar, np.zeros(N), tmap, path, dict(unknown or {}))
