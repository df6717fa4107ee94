"""The virtual musician: guitar-like takes of a rhythm, with a feel and known onset times.

Tests, benchmarks and the demo need a musician who plays a score's rhythm the way a
person would (late on the backbeat, rushing, swinging), and whose true note onsets are
known to the sample.  :func:`play` renders such a take with Karplus–Strong plucked
strings (or, for the ``wind`` and ``tabla`` styles, additive tones and damped
resonances) and returns the audio together with the true onset times.

Harder players for the listener are styles of the same function: soft and hard
picking, legato (slurred notes whose pitch changes with no new pluck), bass register,
strummed chords, palm mutes, plus room noise and mains hum at chosen levels.

Examples
--------
>>> from rolypoly.sim.musician import Feel, play, rhythm
>>> times, phases, bar_s = rhythm(n_bars=4, bpm=100, seed=1)
>>> audio, onsets = play(times, phases, bar_s, Feel.named("laid_back"), sr=48000)
>>> audio.dtype, len(onsets) == len(times)
(dtype('float32'), True)
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from rolypoly.errors import RolypolyError

STYLES = ("pluck", "soft", "hard", "legato", "bass", "strum", "palm_mute", "wind", "tabla")
FEELS = ("on_grid", "laid_back", "rushing", "swing")

# Pitches in Hz the line is drawn from: a guitar's middle register and a bass's low one.
_GUITAR_MIDI = np.arange(45, 72)      # A2 .. B4
_BASS_MIDI = np.arange(28, 48)        # E1 .. B2
_WIND_MIDI = np.arange(44, 77)        # a tenor saxophone's written range, roughly
# Open-position chord shapes (MIDI notes, low to high) for strums.
_CHORDS = (
    (40, 47, 52, 56, 59, 64),  # E major
    (45, 52, 57, 61, 64),      # A major
    (50, 57, 62, 66),          # D major
    (43, 47, 50, 55, 59, 67),  # G major
    (48, 52, 55, 60, 64),      # C major
    (40, 47, 52, 55, 59, 64),  # E minor
)


@dataclass(frozen=True)
class Feel:
    """How a player bends the grid.

    Parameters
    ----------
    name : str
        A label for tables.
    offset_ms : float
        Added to every note (negative = ahead of the beat, "rushing").
    backbeat_ms : float
        Added to notes inside beats 2 and 4 of a 4-beat bar (positive = laid back).
    swing : float
        Where the off-beat eighth falls inside the beat: 0.5 is straight, 0.62 a medium
        swing.  Positions inside each beat are warped piecewise-linearly.
    jitter_ms : float
        Standard deviation of random timing error added to every note.
    dynamics_db : float
        Standard deviation of random note level, in dB.
    accent_db : float
        Extra level on the first note of each beat.
    beats_per_bar : int
        Beats in a bar, for ``backbeat_ms`` and ``swing``.

    Examples
    --------
    >>> Feel.named("swing").offset_s(0.375, 2.0)   # the "and" of beat 2 at 120 bpm
    0.06
    """

    name: str = "on_grid"
    offset_ms: float = 0.0
    backbeat_ms: float = 0.0
    swing: float = 0.5
    jitter_ms: float = 0.0
    dynamics_db: float = 0.0
    accent_db: float = 0.0
    beats_per_bar: int = 4

    def __post_init__(self):
        if not 0.0 < self.swing < 1.0:
            raise RolypolyError(f"feel {self.name!r}: swing must lie in (0, 1), got {self.swing}")
        if self.jitter_ms < 0 or self.dynamics_db < 0:
            raise RolypolyError(f"feel {self.name!r}: jitter_ms and dynamics_db must be >= 0")
        if self.beats_per_bar < 1:
            raise RolypolyError(f"feel {self.name!r}: beats_per_bar must be >= 1")

    @classmethod
    def named(cls, name: str, **overrides) -> "Feel":
        """A stock feel: ``on_grid``, ``laid_back`` (+25 ms on beats 2 and 4),
        ``rushing`` (-15 ms everywhere) or ``swing`` (eighths at 0.62); keyword
        arguments override fields (e.g. ``jitter_ms=5``)."""
        stock = {
            "on_grid": cls("on_grid"),
            "laid_back": cls("laid_back", backbeat_ms=25.0, jitter_ms=4.0, dynamics_db=2.0, accent_db=2.0),
            "rushing": cls("rushing", offset_ms=-15.0, jitter_ms=4.0, dynamics_db=2.0, accent_db=2.0),
            "swing": cls("swing", swing=0.62, jitter_ms=4.0, dynamics_db=2.0, accent_db=2.0),
        }
        if name not in stock:
            raise RolypolyError(f"unknown feel {name!r}; choose one of {', '.join(FEELS)}")
        return replace(stock[name], **overrides) if overrides else stock[name]

    def offset_s(self, phase, bar_s):
        """Systematic timing offset in seconds at bar position(s) ``phase`` (no jitter)."""
        phase = np.asarray(phase, dtype=np.float64) % 1.0
        beat_pos = phase * self.beats_per_bar
        beat = np.floor(beat_pos + 1e-9)
        frac = np.clip(beat_pos - beat, 0.0, 1.0)
        beat_s = np.asarray(bar_s, dtype=np.float64) / self.beats_per_bar
        # piecewise-linear warp of the beat: its middle moves to `swing`
        warped = np.where(frac < 0.5, frac * (self.swing / 0.5),
                          self.swing + (frac - 0.5) * ((1.0 - self.swing) / 0.5))
        out = (warped - frac) * beat_s + self.offset_ms / 1000.0
        backbeat = (self.beats_per_bar == 4) & ((beat == 1) | (beat == 3))
        out = out + np.where(backbeat, self.backbeat_ms / 1000.0, 0.0)
        return float(out) if out.ndim == 0 else out


def rhythm(n_bars: int = 8, bpm: float = 110.0, steps_per_bar: int = 8, fill: float = 0.7,
           seed: int = 0, start_s: float = 0.5):
    """A random single-line rhythm on a grid, for takes that need no score.

    Returns
    -------
    times_s, phases : np.ndarray
        Nominal note times and their positions in the bar.
    bar_s : float
        Bar duration (4 beats).

    Examples
    --------
    >>> t, ph, bar = rhythm(2, bpm=120, steps_per_bar=4, fill=1.0)
    >>> t.tolist(), bar
    ([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0], 2.0)
    """
    if n_bars < 1 or steps_per_bar < 1 or not 0 < fill <= 1 or bpm <= 0:
        raise RolypolyError("rhythm: n_bars, steps_per_bar, bpm must be positive and fill in (0, 1]")
    rng = np.random.default_rng(seed)
    bar_s = 4 * 60.0 / bpm
    steps = np.arange(n_bars * steps_per_bar)
    keep = rng.random(steps.size) < fill
    keep[steps % steps_per_bar == 0] = True  # every downbeat is played
    steps = steps[keep]
    phases = (steps % steps_per_bar) / steps_per_bar
    times = start_s + steps * bar_s / steps_per_bar
    return times, phases, bar_s


@njit(cache=True)
def _karplus_strong(excitation, periods, losses, brightness):
    """Plucked string: a delay line fed back through a two-tap lowpass.

    ``periods`` (samples, per sample) may change over time: the energy in the loop then
    slides to the new pitch with no new excitation, which is what a slur does.
    """
    n = excitation.size
    size = 16384
    line = np.zeros(size)
    out = np.zeros(n, dtype=np.float32)
    w = 0
    for i in range(n):
        p = periods[i]
        a = line[(w - p) % size]
        b = line[(w - p - 1) % size]
        y = excitation[i] + losses[i] * ((1.0 - brightness) * a + brightness * b)
        line[w] = y
        out[i] = y
        w = (w + 1) % size
    return out


def _excitation(rng, sr, n, style, period):
    """The pluck: a short noise burst, darker and slower for soft playing."""
    burst = rng.uniform(-1.0, 1.0, n)
    # pick position: a comb notch makes the tone less buzzy and more guitar-like
    pos = max(1, int(period * rng.uniform(0.12, 0.3)))
    burst[pos:] -= burst[:-pos]
    lp = {"soft": 0.85, "bass": 0.7, "palm_mute": 0.75, "hard": 0.0}.get(style, 0.35)
    if lp > 0:
        from scipy.signal import lfilter
        burst = lfilter([1.0 - lp], [1.0, -lp], burst)
    if style == "soft":
        # a fingertip, not a pick: the burst swells over a few milliseconds
        ramp = np.minimum(1.0, np.arange(n) / (0.006 * sr))
        burst *= ramp
    burst /= max(np.max(np.abs(burst)), 1e-9)
    if style == "hard":
        click = int(0.0015 * sr)
        burst[:click] += rng.uniform(-1.0, 1.0, click) * 1.5
    return burst


def _t60_loss(f0, t60):
    """Feedback gain per period so the loop decays 60 dB in ``t60`` seconds."""
    return 10.0 ** (-3.0 / (f0 * t60))


def _midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69) / 12.0)


def _pink(rng, n):
    """Noise with a 1/f power spectrum (room-like), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec /= np.sqrt(f)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / max(np.sqrt(np.mean(x ** 2)), 1e-12)


def play(times_s, phases, bar_s, feel: Feel | str = "on_grid", sr: int = 48000, seed: int = 0,
         style: str = "pluck", level_db: float = -12.0, noise_db: float | None = None,
         hum_db: float | None = None, hum_hz: float = 50.0, tail_s: float = 1.0,
         legato_run: int = 4, strum_ms: float = 18.0):
    """Render a take: one note at each nominal time, moved by the feel.

    Parameters
    ----------
    times_s : array_like
        Nominal (score) note times in seconds, ascending.
    phases : array_like
        Position in the bar, in [0, 1), of each time.
    bar_s : float or array_like
        Bar duration in seconds (per time, or one for all).
    feel : Feel or str
        Timing and dynamics; a string picks :meth:`Feel.named`.
    sr : int
        Sample rate.
    seed : int
        Everything random (pitches, jitter, levels, noise) follows from it.
    style : str
        ``pluck`` (picked guitar), ``soft`` (fingertip: dark, slow attack), ``hard`` (pick
        click), ``legato`` (runs of ``legato_run`` notes where only the first is plucked
        and the others are slurred: the string's pitch changes with no new pluck),
        ``bass`` (E1–B2, fingerstyle), ``strum`` (chords, strings spread over
        ``strum_ms``), ``palm_mute`` (short, muffled notes), ``wind`` (a breathy reed:
        phrases that start with breath noise before the tone swells in, vibrato, and
        notes inside a phrase joined by a light tongue or a pure slur), ``tabla``
        (resonant open strokes that ring on under the next ones, a low drum with a
        falling pitch, and damped ghost strokes 10–22 dB softer).
    level_db : float
        Peak level of the take in dBFS (before noise and hum).
    noise_db, hum_db : float or None
        RMS level in dBFS of pink room noise and of mains hum (``hum_hz`` and harmonics).
    tail_s : float
        Audio after the last note.

    Returns
    -------
    audio : np.ndarray
        float32 mono.
    true_onsets_s : np.ndarray
        When each note really starts (first string of a strum; the pitch change of a slur;
        the start of the tone, not of the breath before it),
        in the order of ``times_s``.

    Examples
    --------
    >>> audio, onsets = play([0.5, 1.0], [0.0, 0.25], 2.0, "laid_back", jitter_ms=0) \
  # doctest: +SKIP
    """
    if isinstance(feel, str):
        feel = Feel.named(feel)
    if style not in STYLES:
        raise RolypolyError(f"unknown musician style {style!r}; choose one of {', '.join(STYLES)}")
    times = np.asarray(times_s, dtype=np.float64).ravel()
    phases = np.broadcast_to(np.asarray(phases, dtype=np.float64), times.shape)
    bar = np.broadcast_to(np.asarray(bar_s, dtype=np.float64), times.shape)
    if times.size and (np.any(np.diff(times) < 0) or not np.all(np.isfinite(times))):
        raise RolypolyError("play: times_s must be finite and ascending")
    if sr < 8000:
        raise RolypolyError(f"play: sample rate {sr} is too low")
    rng = np.random.default_rng(seed)
    onsets = times + feel.offset_s(phases, bar)
    if feel.jitter_ms > 0:
        onsets = onsets + rng.normal(0.0, feel.jitter_ms / 1000.0, times.size)
    # A player never plays two notes of one line in the wrong order or at once.
    onsets = np.maximum(onsets, 0.0)
    if onsets.size > 1:
        onsets = np.maximum.accumulate(onsets)
        onsets[1:] = np.maximum(onsets[1:], onsets[:-1] + 0.03)
    starts = np.round(onsets * sr).astype(np.int64)
    onsets = starts / sr
    n_total = int((starts[-1] if starts.size else 0) + tail_s * sr + 1)
    out = np.zeros(n_total, dtype=np.float64)

    levels_db = rng.normal(0.0, feel.dynamics_db, times.size) if feel.dynamics_db > 0 else np.zeros(times.size)
    beat_frac = (phases * feel.beats_per_bar) % 1.0
    levels_db = levels_db + np.where(beat_frac < 1e-6, feel.accent_db, 0.0)
    gains = 10.0 ** (levels_db / 20.0)

    pool = _BASS_MIDI if style == "bass" else _GUITAR_MIDI
    ends = np.append(starts[1:], n_total)
    if style == "legato":
        _render_legato(out, starts, ends, gains, rng, sr, legato_run)
    elif style == "wind":
        _render_wind(out, starts, ends, gains, rng, sr)
    elif style == "tabla":
        _render_tabla(out, starts, gains, rng, sr)
    else:
        for i, (s, e) in enumerate(zip(starts, ends)):
            if style == "strum":
                _render_strum(out, s, e, gains[i], rng, sr, strum_ms)
                continue
            midi = rng.choice(pool)
            f0 = float(_midi_hz(midi))
            t60 = {"palm_mute": 0.12, "bass": 1.5}.get(style, 1.0)
            # a single line: the player damps a note when the next one starts
            note = _note(rng, sr, f0, t60, style, e - s + int(0.012 * sr))
            _add_damped(out, note * gains[i], s, e, sr)
    peak = np.max(np.abs(out)) if out.size else 0.0
    if peak > 0:
        out *= 10.0 ** (level_db / 20.0) / peak
    if noise_db is not None:
        out += _pink(rng, out.size) * 10.0 ** (noise_db / 20.0)
    if hum_db is not None:
        t = np.arange(out.size) / sr
        hum = sum(a * np.sin(2 * np.pi * hum_hz * k * t + rng.uniform(0, 2 * np.pi))
                  for k, a in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)))
        hum /= max(np.sqrt(np.mean(hum ** 2)), 1e-12)
        out += hum * 10.0 ** (hum_db / 20.0)
    return out.astype(np.float32), onsets


def _note(rng, sr, f0, t60, style, n):
    period = sr / f0
    p = max(2, int(round(period - 0.5)))
    exc = np.zeros(n)
    burst = _excitation(rng, sr, min(p, n), style, period)
    exc[:burst.size] = burst
    periods = np.full(n, p, dtype=np.int64)
    losses = np.full(n, _t60_loss(f0, t60))
    bright = {"hard": 0.5, "soft": 0.5, "palm_mute": 0.5}.get(style, 0.5)
    y = _karplus_strong(exc, periods, losses, bright)
    if style == "palm_mute":
        from scipy.signal import lfilter
        y = lfilter([0.35], [1.0, -0.65], y)
    return y


def _add_damped(out, note, start, end, sr):
    """Add ``note`` at ``start``; fade it out over 10 ms from ``end`` (the next note)."""
    n = min(note.size, out.size - start)
    seg = np.array(note[:n], dtype=np.float64)
    fade = int(0.010 * sr)
    k = end - start
    if k < n:
        m = min(fade, n - k)
        seg[k:k + m] *= np.linspace(1.0, 0.0, m)
        seg[k + m:] = 0.0
    out[start:start + n] += seg


def _render_strum(out, start, end, gain, rng, sr, strum_ms):
    chord = _CHORDS[rng.integers(len(_CHORDS))]
    down = rng.random() < 0.7
    order = chord if down else chord[::-1]
    spread = max(0.0, rng.uniform(0.5, 1.0) * strum_ms) / 1000.0
    step = spread / max(1, len(order) - 1)
    for j, midi in enumerate(order):
        s = start + int(round(j * step * sr))
        if s >= end:
            break
        note = _note(rng, sr, float(_midi_hz(midi)), 1.2, "pluck", end - s + int(0.012 * sr))
        _add_damped(out, note * gain * 0.5, s, end, sr)


def _render_legato(out, starts, ends, gains, rng, sr, run):
    """Runs of slurred notes: one pluck, then hammer-ons and pull-offs of 2–5 semitones.

    The string's period changes with no pick transient; the fretting finger adds only a
    soft, dark push 8–16 dB under the pluck (as on a real guitar, where a slurred note
    sounds a few dB under the picked one instead of dying away), and the loop loss follows
    the current pitch so every note decays with the same T60.
    """
    run = max(1, int(run))
    for r0 in range(0, starts.size, run):
        idx = np.arange(r0, min(r0 + run, starts.size))
        s0, e_last = starts[idx[0]], ends[idx[-1]]
        n = e_last - s0 + int(0.012 * sr)
        midi = int(rng.choice(_GUITAR_MIDI[:-8]))
        periods = np.empty(n, dtype=np.int64)
        losses = np.empty(n)
        notes = [midi]
        for _ in idx[1:]:
            step = int(rng.integers(2, 6)) * (1 if rng.random() < 0.6 else -1)
            notes.append(int(np.clip(notes[-1] + step, _GUITAR_MIDI[0], _GUITAR_MIDI[-1])))
        exc = np.zeros(n)
        for j, i in enumerate(idx):
            a = starts[i] - s0
            f0 = float(_midi_hz(notes[j]))
            periods[a:] = max(2, int(round(sr / f0 - 0.5)))
            losses[a:] = _t60_loss(f0, 2.5)
            if j == 0:
                burst = _excitation(rng, sr, int(sr / f0), "pluck", sr / f0)
                exc[:burst.size] = burst * gains[i]
            else:
                # the finger, not a pick: a dark push with a 3 ms swell, well under the pluck
                m = min(int(sr / f0), n - a)
                push = _excitation(rng, sr, m, "soft", sr / f0)
                push *= np.minimum(1.0, np.arange(m) / (0.003 * sr))
                exc[a:a + m] += push * gains[i] * 10.0 ** (-rng.uniform(8.0, 16.0) / 20.0)
        y = _karplus_strong(exc, periods, losses, 0.5)
        _add_damped(out, y, s0, e_last, sr)


def _render_wind(out, starts, ends, gains, rng, sr):
    """A reed instrument, additively: one continuous tone per phrase.

    A phrase begins after a rest (or with probability 0.3 anyway): 50–150 ms of breath
    noise swell in before the tone, whose attack takes 10–80 ms.  Inside a phrase the
    pitch glides to the next note in 5–40 ms; steps of one or two semitones are as
    common as wider leaps.  Half the joins are tongued (the level dips 8–14 dB just
    before the new note), half are pure slurs, during which the level sags 1–6 dB (the
    reed passes between two fingerings).  Vibrato (5–6 Hz, 15–35 cents) grows in after
    150 ms of each note.  Breath noise stays under the tone.
    """
    n = out.size
    f0 = np.zeros(n)
    amp = np.zeros(n)
    breath = np.zeros(n)
    t = np.arange(n) / sr
    midi = float(rng.choice(_WIND_MIDI))
    for i, (s, e) in enumerate(zip(starts, ends)):
        new_phrase = i == 0 or (s - starts[i - 1]) > 0.6 * sr or rng.random() < 0.3
        if i > 0:
            step = rng.choice([-2, -1, 1, 2]) if rng.random() < 0.5 else rng.choice([-5, -4, -3, 3, 4, 5, 7])
            prev_midi = midi
            midi = float(np.clip(midi + step, _WIND_MIDI[0], _WIND_MIDI[-1]))
            if midi == prev_midi:  # at the edge of the range: step the other way
                midi = prev_midi - step
        hz = float(_midi_hz(midi))
        seg = slice(s, e)
        k = np.arange(e - s) / sr
        vib = 1.0 + (2.0 ** (rng.uniform(15, 35) / 1200.0 * np.sin(2 * np.pi * rng.uniform(5.0, 6.0) * k)) - 1.0) \
            * np.clip((k - 0.15) / 0.2, 0.0, 1.0)
        glide = int(rng.uniform(0.005, 0.040) * sr)
        prev = f0[s - 1] if s > 0 and f0[s - 1] > 0 else hz
        track = np.full(e - s, hz)
        if not new_phrase and glide > 0:
            m = min(glide, e - s)
            track[:m] = prev * (hz / prev) ** (np.arange(m) / m)
        f0[seg] = track * vib
        g = gains[i]
        # release: a phrase's last note stops 60-120 ms before the next phrase
        nxt_new = i + 1 < starts.size and ((starts[i + 1] - s) > 0.6 * sr)
        stop = e - int(rng.uniform(0.06, 0.12) * sr) if nxt_new else e
        stop = max(s + int(0.03 * sr), stop)
        env = np.ones(e - s) * g
        if new_phrase:
            att = rng.uniform(0.010, 0.080)
            env *= 1.0 - np.exp(-k / (att / 3.0))
            pre = int(rng.uniform(0.05, 0.15) * sr)
            a = max(0, s - pre)
            breath[a:s] = np.maximum(breath[a:s], g * 0.1 * np.linspace(0.0, 1.0, s - a) ** 2)
        elif rng.random() < 0.5:
            # tongued: the reed is stopped briefly, the level dips into the new note
            dip = 10.0 ** (-rng.uniform(8.0, 14.0) / 20.0)
            m = int(0.015 * sr)
            a = max(0, s - m)
            amp[a:s] *= np.linspace(1.0, dip, s - a)
            env *= dip + (1.0 - dip) * (1.0 - np.exp(-k / 0.006))
        else:
            # slurred: the level sags while the fingering changes
            sag = 10.0 ** (-rng.uniform(1.0, 6.0) / 20.0)
            m = min(max(glide, int(0.02 * sr)), e - s)
            env[:m] *= 1.0 - (1.0 - sag) * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m))
        if stop < e:
            r = np.arange(e - stop) / sr
            env[stop - s:] *= np.exp(-r / 0.015)
        amp[seg] = env
        breath[seg] = np.maximum(breath[seg], env * 0.03)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = np.zeros(n)
    for h in range(1, 13):
        a = h ** -0.9 * (1.0 if h % 2 else 0.7)
        # partials above 5 kHz are weak in a reed; none above Nyquist
        fade = np.clip((0.45 * sr - h * f0) / (0.05 * sr), 0.0, 1.0) * np.exp(-h * f0 / 5000.0)
        y += a * fade * np.sin(h * phase)
    y *= amp
    from scipy.signal import lfilter
    noise = lfilter([1.0, -0.7], [1.0], rng.standard_normal(n))
    y += breath * noise
    out += y


def _render_tabla(out, starts, gains, rng, sr):
    """Tabla-like strokes: open and ringing, low and gliding, or damped ghosts.

    Open strokes (45%) ring for 0.3–0.9 s at a fixed pitch (near-harmonic partials)
    and are not stopped by the next stroke; low strokes (25%) glide down 15–25% in pitch;
    damped strokes (30%) are 20–40 ms noise thuds, 10–22 dB softer.
    """
    from scipy.signal import lfilter
    n = out.size
    dayan = rng.uniform(280.0, 420.0)
    for i, s in enumerate(starts):
        kind = rng.random()
        m = min(n - s, int(1.0 * sr))
        k = np.arange(m) / sr
        click = np.zeros(m)
        c = min(m, int(0.003 * sr))
        click[:c] = rng.uniform(-1, 1, c) * np.linspace(1.0, 0.0, c)
        if kind < 0.45:
            t60 = rng.uniform(0.3, 0.9)
            y = sum(a * np.sin(2 * np.pi * dayan * r * k + rng.uniform(0, 6.3)) * np.exp(-6.9 * k / (t60 / r ** 0.5))
                    for r, a in ((1.0, 1.0), (2.0, 0.6), (3.0, 0.4), (4.02, 0.25), (5.05, 0.15)))
            y = y + 0.5 * click
        elif kind < 0.7:
            f = rng.uniform(90.0, 140.0) * (1.0 - rng.uniform(0.15, 0.25) * (1.0 - np.exp(-k / 0.08)))
            y = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-6.9 * k / rng.uniform(0.4, 0.7))
            y = y + 0.4 * lfilter([0.3], [1.0, -0.7], click)
        else:
            y = lfilter([0.4], [1.0, -0.6], rng.standard_normal(m)) * np.exp(-k / rng.uniform(0.007, 0.013))
            y *= 10.0 ** (-rng.uniform(10.0, 22.0) / 20.0) * 2.0
        out[s:s + m] += y * gains[i]
