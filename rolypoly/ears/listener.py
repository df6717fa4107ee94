"""The listener: streaming, causal onset detection on the musician's input.

The live engine feeds each audio block to :class:`Listener` and gets back the onset
times it found, in seconds since the stream started, with the detector's latency taken
off (the time the note began, not the time it was noticed).

Two families of detector sit behind the one interface:

``method="default"``
    Our conditioned detector, built to hold up on real instruments:

    1. conditioning — non-finite samples become silence (with one warning), channels are
       averaged, a 2nd-order high-pass at ``highpass_hz`` removes DC and rumble;
    2. a log-frequency magnitude spectrum every hop (Hann window of ``buf`` samples,
       ``bands_per_octave`` triangular bands);
    3. level normalisation that follows the input: band magnitudes are divided by a
       slowly released peak level of the recent input before the log, so a quiet player
       produces the same detection function as a loud one (never amplified beyond the
       ``silence_db`` floor, so silence stays silent);
    4. a SuperFlux-style spectral flux: positive log-magnitude differences against the
       spectrum ``lag`` hops back, max-filtered across ``max_bands`` bands either side
       (24 bands per octave: a vibrato or a slide stays inside the filter, a new note
       does not);
    5. causal peak picking: an onset fires on the first hop whose flux exceeds
       ``threshold`` plus the mean of the last ``avg_ms`` and is the largest of the last
       ``max_ms``; then nothing for ``min_ioi_ms``, and nothing until the flux has fallen
       under ``rearm`` times the peak of that onset (a slow swell is one rise, one onset);
    6. level gates: nothing under ``silence_db`` (absolute), nor more than ``gate_db``
       under the loudest recent playing (key clicks, breath, bleed between notes).  The
       playing level starts at ``player_db`` (the sound check measures it) and is not
       forgotten during silence;
    7. run-ups: an onset more than ``quiet_db`` under the playing is held back (its time
       kept) for up to ``hold_ms``.  If a note follows — a non-quiet onset more than 30 ms
       later, or the level rising 6 dB over the quiet line and 10 dB over the held onset —
       the held one was breath or a scrape before it and is dropped; otherwise it is
       reported as it was (a ghost note: exact time, reported late).  A note that
       arrives by swelling (no onset of its own) is dated where the pitch tracker
       found it periodic, less half its window, when that is recent (a tone swelling
       out of breath starts with the tone, not where it got loud);
    8. dips: a note rising out of a level dip inside a tone (the band spectrum's flatness
       under 0.4 at the bottom, a louder sound before it, 6 dB of rise) is dated at the
       bottom of the dip, at most ``dip_ms`` back: a tongued or re-articulated wind note
       starts there, not where the flux noticed its swell.

    9. the slur cue (``slur=True``; off in the ``percussion`` preset) for notes with no
       attack at all: a YIN pitch track (``pitch_window_ms`` window on the input
       low-passed and decimated to about 8 kHz) gives a periodicity and a pitch every
       hop; an onset fires where a steady pitch steps to another steady pitch by
       ``slur_semitones`` or more (15 ms of each, 25 ms apart; the old note steady for
       25 ms more and the new one holding for 15 ms more, so a vibrato, a bend or a
       drum's falling pitch does not count; octave slips of the tracker do not; the new
       note must be at playing level).  It is dated where the pitch had moved a quarter
       of the way, so it is exact but reported about 60 ms late;
    10. optionally (``tonal=True``; on in the ``voice`` preset) the voicing cue: an onset
       where periodic sound starts after ``periodicity < 0.5`` for 20 ms (a blown or sung
       tone out of breath noise), dated back to where the change entered the window.
       A flux onset and a pitch onset closer than ``tonal_merge_ms`` (or ``min_ioi_ms``)
       are one note: whichever was reported first stands.

    The whole chain runs in one numba kernel per block (a radix-2 real FFT included), so
    a 128-frame block costs one call and a 4096-frame block no more per frame; any split
    of the stream into blocks gives the same onsets.

    The reported time is the detection time minus :attr:`Listener.latency_s`, which is
    measured once per (sr, hop, buf) by running the detector on synthetic plucks with
    known onsets, so the compensation stays exact for any setting.

``method="hfc" | "complex" | "specflux" | "energy" | "phase" | "specdiff" | "kl" | "mkl"``
    Plain aubio (``aubio.onset``), kept as a baseline; its own latency estimate
    (``get_delay_s``) is the compensation.

Examples
--------
>>> import numpy as np
>>> from rolypoly.ears.listener import Listener
>>> lis = Listener(sr=48000, hop=128)
>>> x = np.zeros(48000, np.float32); x[24000:24100] = 0.5
>>> found = []
>>> for i in range(0, x.size, 128):
...     found += lis.process(x[i:i + 128])
>>> [round(t, 2) for t in found]   # doctest: +SKIP
[0.5]
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
from numba import njit

from rolypoly.errors import AudioError, ConfigError

AUBIO_METHODS = ("hfc", "complex", "specflux", "energy", "phase", "specdiff", "kl", "mkl", "wphase")
METHODS = ("default",) + AUBIO_METHODS

# Settings of the default detector.  Sound-check presets start from these.
DEFAULTS = dict(
    method="default",
    buf=1024,            # analysis window in samples at 48 kHz (scaled with sr)
    threshold=0.15,      # flux above the running mean needed for an onset
    silence_db=-70.0,    # below this input level nothing is an onset
    min_ioi_ms=50.0,     # shortest time between two onsets
    latency_ms=None,     # None: measured; a number: forced compensation
    highpass_hz=30.0,    # DC and rumble removal
    gain_db=0.0,         # input trim before the detector (sound check sets it)
    bands_per_octave=24, # SuperFlux resolution: a vibrato stays inside the max filter
    fmin=40.0,
    fmax=16000.0,
    lag=4,               # hops between compared spectra
    compression=1000.0,  # lambda in log(1 + lambda * normalised magnitude)
    release_s=3.0,       # level follower: time for the tracked peak to fall 60 dB
    avg_ms=60.0,         # adaptive threshold: running mean over this past
    max_ms=30.0,         # the detection must be the largest flux over this past
    ref_frames=3,        # reference spectrum: max over this many frames, lag hops back
    max_bands=1,         # vibrato suppression: reference is the max over +-this many bands
    rearm=0.5,           # after an onset, re-arm once the flux falls under this share of its peak
    gate_db=35.0,        # relative gate: ignore input this far under the recent playing level
    gate_release_s=10.0, # the relative gate's level follower: time to fall 60 dB
    player_db=-30.0,     # expected playing level (dBFS RMS) before any is heard (sound check sets it)
    quiet_db=12.0,       # an onset this far under the recent playing is held back ...
    hold_ms=200.0,       # ... this long: if a note follows, it was breath or a scrape (0: off)
    dip_ms=80.0,         # an onset rising out of a level dip is dated at its bottom, this far back at most
    slur=True,           # the slur cue: a steady pitch stepping to another steady pitch is a note
    slur_semitones=0.6,  # ... when it moves this far (a vibrato is not steady, a glide neither)
    tonal=False,         # the voicing cue: onsets where a tone starts out of breath noise
                         # (on for voice; off by default: real drums' ringing fools it)
    voicing=0.75,        # periodicity (1 - YIN aperiodicity) that counts as a tone
    pitch_window_ms=40.0,  # the pitch tracker's analysis window
    pitch_fmin=70.0,     # lowest pitch the tonal cue follows (Hz)
    tonal_merge_ms=60.0, # a tonal and a flux onset closer than this are one note
)

# Settings older takes may carry that no longer mean anything; accepted and ignored.
_RETIRED = ("floor_rise_db", "floor_weight")

# Instrument presets: starting points a sound check refines.
PRESETS = {
    "guitar": dict(),
    "bass": dict(highpass_hz=25.0, fmin=30.0, buf=2048),
    "keys": dict(),
    "voice": dict(threshold=0.2, min_ioi_ms=60.0, tonal=True),
    "percussion": dict(min_ioi_ms=30.0, slur=False),
}


def _warn_default(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


# ---------------------------------------------------------------------------------
# the audio-thread kernel (numba): one call per block, no allocation, no locks.

@njit(cache=True)
def _fft(re, im, rev, cos_t, sin_t):
    """In-place iterative radix-2 complex FFT (forward) of ``re + 1j*im``.

    ``rev``: bit-reversal permutation; ``cos_t``/``sin_t``: cos/sin(2πk/n), k < n/2.
    """
    n = re.size
    for i in range(n):
        j = rev[i]
        if j > i:
            t = re[i]
            re[i] = re[j]
            re[j] = t
            t = im[i]
            im[i] = im[j]
            im[j] = t
    # first stage: twiddles are 1
    for s in range(0, n, 2):
        a = re[s]
        b = im[s]
        re[s] = a + re[s + 1]
        im[s] = b + im[s + 1]
        re[s + 1] = a - re[s + 1]
        im[s + 1] = b - im[s + 1]
    size = 4
    while size <= n:
        half = size // 2
        step = n // size
        # twiddle outermost: each is loaded once per stage
        for k in range(half):
            wr = cos_t[k * step]
            wi = -sin_t[k * step]
            for j in range(k, n, size):
                m = j + half
                tr = wr * re[m] - wi * im[m]
                ti = wr * im[m] + wi * re[m]
                re[m] = re[j] - tr
                im[m] = im[j] - ti
                re[j] += tr
                im[j] += ti
        size *= 2


@njit(cache=True)
def _rfft_mag(frame, win, re, im, rev, cos_t, sin_t, cos_n, sin_n, mag):
    """|rfft(frame * win)| into ``mag`` (n_fft/2 + 1 bins), via a half-size complex FFT."""
    n = re.size
    for m in range(n):
        re[m] = frame[2 * m] * win[2 * m]
        im[m] = frame[2 * m + 1] * win[2 * m + 1]
    _fft(re, im, rev, cos_t, sin_t)
    for k in range(n + 1):
        a = re[k % n]
        b = im[k % n]
        c = re[(n - k) % n]
        d = -im[(n - k) % n]
        er = 0.5 * (a + c)
        ei = 0.5 * (b + d)
        orr = 0.5 * (b - d)
        oi = -0.5 * (a - c)
        xr = er + cos_n[k] * orr + sin_n[k] * oi
        xi = ei + cos_n[k] * oi - sin_n[k] * orr
        mag[k] = math.sqrt(xr * xr + xi * xi)


@njit(cache=True)
def _detect_hop(frame, mag, lo, hi, wts, hist, odf_hist, st, params, tp):
    """Detection function and peak picking for the hop just analysed; returns the flux.

    Writes 1.0 to ``st[4]`` when this hop is an onset.  See :class:`Listener` for the
    meaning of ``params`` (packed in ``Listener._setup_default``).
    """
    lam, thr, rel, floor = params[0], params[1], params[2], params[3]
    lag, n_avg, n_max, min_ioi = int(params[4]), int(params[5]), int(params[6]), int(params[7])
    n_ref, width, rearm, gate = int(params[8]), int(params[9]), params[10], params[11]
    loud_rel = params[12]
    n_bands = lo.size
    nh = hist.shape[0]
    pos = int(st[3])
    slog = 0.0
    ssum = 0.0
    for b in range(n_bands):
        acc = 0.0
        for k in range(lo[b], hi[b]):
            acc += mag[k] * wts[b, k - lo[b]]
        hist[pos, b] = acc
        slog += math.log(acc + 1e-12)
        ssum += acc
    # spectral flatness of the bands: near 1 for noise (breath), small for a tone
    st[16] = math.exp(slog / n_bands) / (ssum / n_bands + 1e-12)
    ms = 0.0
    for i in range(frame.size):
        ms += frame[i] * frame[i]
    rms = math.sqrt(ms / frame.size)
    # level follower: instant attack, slow release; one gain for both compared frames so
    # the normalisation itself never looks like a change
    level = st[1] * rel
    if rms > level:
        level = rms
    ref = st[1] if st[1] > floor else floor
    st[1] = level
    # the loudest recent playing (slower release): the relative gate's reference
    # ... which is not forgotten in silence: after a long rest (or before the first note,
    # when it is the expected level) a first breath or key click is still quiet next to
    # the notes to come
    loud = st[9] * loud_rel if rms >= floor else st[9]
    if rms > loud:
        loud = rms
    st[9] = loud
    g = lam / ref
    flux = 0.0
    if st[0] >= lag + n_ref:
        for b in range(n_bands):
            m = 0.0
            lo_b = b - width if b >= width else 0
            hi_b = b + width + 1 if b + width + 1 <= n_bands else n_bands
            for r in range(n_ref):
                prev = (pos - lag - r) % nh
                for bb in range(lo_b, hi_b):
                    if hist[prev, bb] > m:
                        m = hist[prev, bb]
            now = hist[pos, b]
            # log1p(g*now) - log1p(g*m), one log, and only where the band grew
            if now > m:
                flux += math.log((1.0 + g * now) / (1.0 + g * m))
        flux /= n_bands
    # level gates: nothing under the absolute floor, nor far under the recent playing
    st[13] = rms / loud if loud > 0.0 else 0.0
    if rms < floor or rms < gate * loud:
        flux = 0.0
        st[12] = 0.0
    else:
        st[12] = 1.0
    op = int(st[5])
    nodf = odf_hist.size
    mean = 0.0
    mx = 0.0
    for j in range(1, n_avg + 1):
        v = odf_hist[(op - j) % nodf]
        mean += v
        if j <= n_max and v > mx:
            mx = v
    mean /= n_avg
    odf_hist[op] = flux
    st[5] = (op + 1) % nodf
    # re-arm only once the detection function has fallen well below the peak of the last
    # onset: a slow swell or a long attack is one rise, so one onset
    # (and not while the level is still climbing: a swell is one note however it wobbles)
    rising = rms > 1.25 * st[10]
    st[10] = 0.5 * st[10] + 0.5 * rms
    if st[7] == 0.0:
        if flux > st[8]:
            st[8] = flux
        if rearm <= 0.0 or (flux < rearm * st[8] and not rising):
            st[7] = 1.0
    onset = 0.0
    if (st[0] >= n_avg and st[7] != 0.0 and flux > thr + mean and flux >= mx
            and st[0] - st[2] >= min_ioi and st[0] + 1.0 - tp[16] - st[11] >= tp[15]):
        onset = 1.0
        st[2] = st[0]
        st[7] = 0.0
        st[8] = flux
    st[4] = onset
    st[3] = (pos + 1) % nh
    st[0] += 1.0
    return flux


@njit(cache=True)
def _yin_update(dring, pos, dsum, w, tmax, exact):
    """Slide the YIN difference function one decimated sample (the one just written at
    ``pos``): ``dsum[t]`` = sum over the last ``w`` samples of (y[n] - y[n-t])^2.

    Two multiply-adds per lag instead of ``w``; ``exact`` recomputes the sums from the
    ring (done every few windows, so rounding never accumulates).
    """
    nr = dring.size
    if exact:
        for t in range(1, tmax + 1):
            acc = 0.0
            for j in range(w):
                d = dring[(pos - j) % nr] - dring[(pos - j - t) % nr]
                acc += d * d
            dsum[t] = acc
        return
    y_new = dring[pos]
    y_old = dring[(pos - w) % nr]
    for t in range(1, tmax + 1):
        a = y_new - dring[(pos - t) % nr]
        b = y_old - dring[(pos - w - t) % nr]
        v = dsum[t] + a * a - b * b
        dsum[t] = v if v > 0.0 else 0.0


@njit(cache=True)
def _tonal_hop(ybuf, dprime, ts, tp, hop_no, level_ok):
    """Periodicity and pitch for the hop just analysed, and the voicing cue (numba).

    A YIN-style aperiodicity (difference function ``ybuf``, see :func:`_yin_update`) gives a
    periodicity in [0, 1] (``ts[3]``) and a pitch in semitones re 1 Hz (``ts[4]``).
    With the voicing cue on (``tp[13]``), an onset candidate (``ts[13]``, in hops of
    true time, -1 when none) is raised where periodic sound starts after a stretch
    without it (a blown or sung tone starting out of breath noise), dated back to where
    the change entered the analysis window.
    """
    ts[13] = -1.0
    tmin = int(tp[2])
    tmax = int(tp[3])
    p = 0.0
    semi = 0.0
    if level_ok:
        # difference function (kept sliding in ``ybuf``), cumulative-mean normalised (YIN)
        run = 0.0
        for t in range(1, tmax + 1):
            acc = ybuf[t]
            run += acc
            dprime[t] = acc * t / run if run > 0.0 else 1.0
        # first dip under the absolute threshold, else the global minimum (lag >= tmin)
        best_t = -1
        for t in range(tmin, tmax + 1):
            if dprime[t] < tp[4]:
                while t + 1 <= tmax and dprime[t + 1] < dprime[t]:
                    t += 1
                best_t = t
                break
        if best_t < 0:
            best = 1e9
            for t in range(tmin, tmax + 1):
                if dprime[t] < best:
                    best = dprime[t]
                    best_t = t
        p = 1.0 - dprime[best_t]
        if p < 0.0:
            p = 0.0
        # parabolic interpolation of the lag, then semitones re 1 Hz
        tau = float(best_t)
        if tmin < best_t < tmax:
            a = dprime[best_t - 1]
            b = dprime[best_t]
            c = dprime[best_t + 1]
            den = a - 2.0 * b + c
            if den > 0.0:
                tau += 0.5 * (a - c) / den
        semi = 12.0 * math.log2(tp[0] / tau)
    ts[3] = p
    ts[4] = semi
    if tp[13] == 0.0:
        return
    confirm = int(tp[8])
    if p >= tp[5]:
        if ts[6] == 0.0:
            ts[7] = hop_no
            ts[14] = ts[5]
        ts[6] += 1.0
        ts[5] = 0.0
        # voicing onset: periodic sound after at least tp[7] hops without it
        if ts[6] == confirm and ts[14] >= tp[7]:
            ts[13] = ts[7] - tp[11]
    else:
        ts[6] = 0.0
        if p < tp[6]:
            ts[5] += 1.0


@njit(cache=True)
def _median_small(buf, n):
    """Median of ``buf[:n]`` (sorted in place; n is a handful)."""
    for i in range(1, n):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    if n % 2:
        return buf[n // 2]
    return 0.5 * (buf[n // 2 - 1] + buf[n // 2])


@njit(cache=True)
def _pitch_window(pring, end, n, voic):
    """(median, min, max) of the pitch over the ``n`` hops ending at hop ``end``; the
    median is NaN when any of them is not periodic (under ``voic``)."""
    nrg = pring.shape[1]
    lo = 1e9
    hi = -1e9
    for j in range(n):
        k = (end - j) % nrg
        if pring[0, k] < voic:
            return math.nan, lo, hi
        v = pring[1, k]
        lo = min(lo, v)
        hi = max(hi, v)
        pring[2, j] = v
    return _median_small(pring[2], n), lo, hi


@njit(cache=True)
def _slur_hop(pring, lring, ts, tp, h, loud):
    """The slur cue: a stable pitch that steps to another stable pitch (numba).

    ``pring`` rows: periodicity, pitch (semitones), scratch; one column per hop.  At hop
    ``h`` the last ``tp[17]`` hops (the new note) and ``tp[19]`` hops ending ``tp[18]``
    hops before them (the old note) must both be periodic (``tp[27]``) and steady
    (pitch spread under ``tp[10]`` semitones; the old note's under 0.5 over ``tp[33]``
    hops more: a glide or a drum's falling pitch keeps moving, a held note does not), their
    median pitches ``tp[9]`` semitones or more apart (not an octave: the tracker slips
    by octaves; not more than 14: the tracker jumping between a drum's partials), and
    the new note at playing level (not under the quiet line ``tp[21]``: a ringing tail
    is no new note), and it must hold for ``tp[34]`` hops more (a bend goes on moving).
    The onset (``ts[9]``, hops of true time, -1 when none) is where the
    pitch had moved a quarter of the way, less half the analysis window.
    """
    ts[9] = -1.0
    nrg = pring.shape[1]
    nR = int(tp[17])
    g = int(tp[18])
    nO = int(tp[19])
    nC = int(tp[34])
    # judged nC hops late: the new pitch must hold (a bend keeps going)
    h0 = h - nC
    if h - ts[8] < tp[20] or h0 < nR + g + nO + int(tp[33]):
        return
    voic = tp[27]
    m_new, lo_r, hi_r = _pitch_window(pring, h0, nR, voic)
    if m_new != m_new or hi_r - lo_r > tp[10]:
        return
    m_old, lo_o, hi_o = _pitch_window(pring, h0 - nR - g, nO, voic)
    if m_old != m_old or hi_o - lo_o > tp[10]:
        return
    # ... and the old note was steady for a while before: a glide (a drum's falling
    # pitch, a bend) keeps moving, a note held before a slur does not
    for j in range(nO, nO + int(tp[33])):
        k = (h0 - nR - g - j) % nrg
        if pring[0, k] >= voic:
            lo_o = min(lo_o, pring[1, k])
            hi_o = max(hi_o, pring[1, k])
    if hi_o - lo_o > 0.5:
        return
    d = m_new - m_old
    ad = abs(d)
    if ad < tp[9] or ad > 14.0 or abs(ad - 12.0) < 0.7:
        return
    nl = lring.size
    for j in range(nR):
        pring[2, j] = lring[(h0 - j) % nl]
    if _median_small(pring[2], nR) < tp[21] * loud:
        return
    m_held, _, _ = _pitch_window(pring, h, nC, voic)
    if m_held != m_held or abs(m_held - m_new) > 0.25 * ad:
        return
    # date it: the first hop after the old note where the pitch has moved a quarter of the way
    target = m_old + 0.25 * d
    at = h0 - nR + 1
    for j in range(h0 - nR - g + 1, h0 - nR + 1):
        if (pring[1, j % nrg] - target) * d > 0.0:
            at = j
            break
    ts[8] = h
    ts[9] = at - tp[12]


@njit(cache=True)
def _dip_start(lring, fring, h, nmax, centre):
    """Where a note rising out of a level dip inside a tone began (hop), or -1.

    ``lring``/``fring``: per-hop frame level and band flatness (rings).  Walks back from
    hop ``h`` down the rise to its bottom (at most ``nmax`` hops); a dip needs 3 dB of
    rise so far, a sound at least 6 dB louder before the bottom (a swell out of silence
    or breath is no dip), a bottom that is a tone (flatness under 0.4), and more than 2
    hops of rise (a pluck's attack is dated by the flux alone).  The level is that of a
    whole analysis frame, so its bottom shows ``centre`` hops (half a frame) late.
    """
    nl = lring.size
    m = lring[h % nl]
    cur = m
    hm = h
    for j in range(1, nmax + 1):
        v = lring[(h - j) % nl]
        if v > 1.05 * m:
            break
        if v < m:
            m = v
            hm = h - j
    before = 0.0
    for j in range(1, nmax + 1):
        if hm - j <= h - nl:
            break
        v = lring[(hm - j) % nl]
        if v > before:
            before = v
    if hm < h - 2 and cur >= 1.41 * m and before >= 2.0 * m and fring[hm % nl] < 0.4:
        return hm + 1.0 - centre
    return -1.0


@njit(cache=True)
def _voiced_start(pring, h, nmax, thr):
    """First hop of the run of periodic hops (periodicity >= ``thr``) that ends at hop
    ``h``, or -1 when hop ``h`` is not periodic or the run is longer than ``nmax``."""
    n = pring.shape[1]
    if h < 0 or pring[0, h % n] < thr:
        return -1.0
    for j in range(1, min(nmax, n - 1) + 1):
        if pring[0, (h - j) % n] < thr:
            return float(h - j + 1)
    return -1.0


@njit(cache=True)
def _process_block(x, st, stats, params, hp, pend, frame, win, fft_tabs, rev, re, im, mag,
                   lo, hi, wts, hist, odf_hist, out_hops, odf_out, ts, tp, dring, ybuf, dprime, out_kind, lring, fring,
                   pring):
    """Run the default detector over a block ``x`` of shape (n, channels), float32.

    Channels are averaged, non-finite samples become 0 (counted in ``stats[0]``),
    near-full-scale samples are counted in ``stats[1]``, the raw sum goes to ``stats[2]``.
    Samples are trimmed, high-passed (biquad; ``hp`` = b0 b1 b2 a1 a2 z1 z2 on) and
    gathered into hops; each full hop is analysed.  Onset hop numbers (1-based count of
    hops since reset) go to ``out_hops``; the flux of every hop to ``odf_out`` when it is
    large enough.  Returns (number of onsets, number of hops).
    """
    n, ch = x.shape
    hop = pend.size
    gain = params[13]
    b0, b1, b2, a1, a2 = hp[0], hp[1], hp[2], hp[3], hp[4]
    z1, z2 = hp[5], hp[6]
    use_hp = hp[7] != 0.0
    npend = int(st[6])
    n_on = 0
    n_hops = 0
    nf = frame.size
    cos_t = fft_tabs[0]
    sin_t = fft_tabs[1]
    cos_n = fft_tabs[2]
    sin_n = fft_tabs[3]
    dec = int(tp[14])
    tonal = tp[13] != 0.0
    slur = tp[26] != 0.0
    pitched = tonal or slur
    dn = int(ts[1])
    # anti-alias low-pass before decimation: two biquads with one set of coefficients
    c0, c1, c2, c3, c4 = tp[28], tp[29], tp[30], tp[31], tp[32]
    u1, u2, w1, w2 = ts[16], ts[17], ts[18], ts[19]
    nr = dring.size
    for i in range(n):
        v = 0.0
        for c in range(ch):
            s = x[i, c]
            if not math.isfinite(s):
                stats[0] += 1.0
                s = 0.0
            elif abs(s) >= 0.999:
                stats[1] += 1.0
            v += s
        v /= ch
        stats[2] += v
        v *= gain
        if use_hp:
            y = b0 * v + z1
            z1 = b1 * v - a1 * y + z2
            z2 = b2 * v - a2 * y
            v = y
        if pitched:
            # decimate for the pitch analysis (low-pass, then keep one in `dec`)
            y1 = c0 * v + u1
            u1 = c1 * v - c3 * y1 + u2
            u2 = c2 * v - c4 * y1
            y2 = c0 * y1 + w1
            w1 = c1 * y1 - c3 * y2 + w2
            w2 = c2 * y1 - c4 * y2
            dn += 1
            if dn == dec:
                dp = int(ts[2])
                dring[dp] = y2
                ts[2] = (dp + 1) % nr
                dn = 0
                ts[20] += 1.0
                _yin_update(dring, dp, ybuf, int(tp[1]), int(tp[3]), ts[20] % (8.0 * tp[1]) == 0.0)
        pend[npend] = v
        npend += 1
        if npend == hop:
            npend = 0
            for k in range(nf - hop):
                frame[k] = frame[k + hop]
            for k in range(hop):
                frame[nf - hop + k] = pend[k]
            _rfft_mag(frame, win, re, im, rev, cos_t, sin_t, cos_n, sin_n, mag)
            last, armed, peak = st[2], st[7], st[8]
            flux = _detect_hop(frame, mag, lo, hi, wts, hist, odf_hist, st, params, tp)
            lring[int(st[0]) % lring.size] = st[13] * st[9]
            fring[int(st[0]) % fring.size] = st[16]
            if n_hops < odf_out.size:
                odf_out[n_hops] = flux
            n_hops += 1
            # A quiet onset (well under the recent playing) is held back, with its time, for
            # up to tp[22] hops: breath before a blown note and the scrape before a bowed
            # one are quiet and are followed by the note; if the note arrives the held onset
            # was its run-up and is dropped, else it is reported as it was.
            quiet = st[13] < tp[21]
            emit = -1.0
            if st[4] > 0.0:
                if quiet and tp[22] > 0.0:
                    if st[14] <= 0.0:
                        st[14] = st[0]
                        st[15] = st[13]
                        st[18] = st[16]
                        # the time it will carry if it turns out to be a note
                        d = _dip_start(lring, fring, int(st[0]), int(tp[23]), tp[25])
                        st[19] = d + tp[16] if d >= 0.0 else st[0]
                    st[2] = last
                    st[7] = armed
                    st[8] = peak
                else:
                    # a held quiet onset just before is this note's run-up if it was noise
                    # (breath): the note starts here, not at the bottom of the breath
                    held = st[14] > 0.0
                    run_up = held and st[18] >= 0.4
                    emit = st[0]
                    if held and st[0] - st[14] <= tp[24]:
                        # so soon after the held onset, this is the same note's attack
                        # growing (a soft pluck): the held onset was the note
                        emit = st[19]
                    elif not run_up:
                        d = _dip_start(lring, fring, int(st[0]), int(tp[23]), tp[25])
                        if d >= 0.0:
                            emit = d + tp[16]
                    st[14] = 0.0
            elif st[14] > 0.0:
                if st[13] >= 2.0 * tp[21] and st[12] != 0.0 and st[13] > 3.0 * st[15]:
                    # the note arrived (6 dB over the quiet line, 10 dB over the held onset)
                    # without an onset of its own: it starts here, unless that is so soon
                    # after the held onset that it was the note's own attack
                    emit = st[0] if st[0] - st[14] > tp[24] else st[19]
                    if emit == st[0] and pitched:
                        # a tone swelling out of breath starts where it became periodic
                        v = _voiced_start(pring, int(st[0]) - 1, int(tp[23]), tp[6])
                        if v >= 0.0:
                            emit = v - tp[11] + tp[16]
                    if emit == st[0] and st[18] < 0.4:
                        d = _dip_start(lring, fring, int(st[0]), int(tp[23]), tp[25])
                        if d >= 0.0:
                            emit = d + tp[16]
                    st[14] = 0.0
                    st[2] = st[0] - 1.0
                    st[7] = 0.0
                    st[8] = flux
                elif st[0] - st[14] >= tp[22]:
                    emit = st[19]
                    st[14] = 0.0
            # one note, one onset: whichever cue reported it first keeps it
            if emit >= 0.0 and abs(emit - tp[16] - st[20]) < params[7]:
                emit = -1.0
            if emit >= 0.0 and n_on < out_hops.size:
                out_hops[n_on] = emit
                out_kind[n_on] = 0.0
                n_on += 1
                st[20] = emit - tp[16]
            if pitched:
                h = st[0]
                _tonal_hop(ybuf, dprime, ts, tp, h, st[12] != 0.0)
                k = int(h) % pring.shape[1]
                pring[0, k] = ts[3]
                pring[1, k] = ts[4]
                if slur:
                    _slur_hop(pring, lring, ts, tp, int(h), st[9])
                for tb in (ts[13] if tonal else -1.0, ts[9] if slur else -1.0):
                    # a tonal onset, unless the flux (percussive) cue already took this note
                    if (tb >= 0.0 and tb - (st[2] - tp[16]) >= tp[15] and tb - st[11] >= params[7]
                            and abs(tb - st[20]) >= params[7] and n_on < out_hops.size):
                        out_hops[n_on] = tb
                        out_kind[n_on] = 1.0
                        n_on += 1
                        st[11] = tb
                        st[20] = tb
    hp[5] = z1
    hp[6] = z2
    ts[16], ts[17], ts[18], ts[19] = u1, u2, w1, w2
    ts[1] = dn
    st[6] = npend
    return n_on, n_hops


def _filterbank(sr, n_fft, bands_per_octave, fmin, fmax):
    """Triangular log-frequency bands over rfft bins; empty and duplicate bands dropped."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    fmax = min(fmax, sr / 2.0 * 0.95)
    n = int(np.floor(np.log2(fmax / fmin) * bands_per_octave)) + 1
    centres = fmin * 2.0 ** (np.arange(-1, n + 1) / bands_per_octave)
    bins = np.unique(np.round(centres / (sr / n_fft)).astype(int))
    bins = bins[(bins >= 1) & (bins < freqs.size)]
    lo, hi, rows = [], [], []
    for a, c, b in zip(bins[:-2], bins[1:-1], bins[2:]):
        w = np.zeros(b - a + 1)
        w[: c - a + 1] = np.linspace(0.0, 1.0, c - a + 1, endpoint=True) if c > a else 1.0
        w[c - a:] = np.linspace(1.0, 0.0, b - c + 1, endpoint=True) if b > c else 1.0
        w[c - a] = 1.0
        w /= w.sum()
        lo.append(a)
        hi.append(b + 1)
        rows.append(w)
    width = max(len(r) for r in rows)
    wts = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        wts[i, :r.size] = r
    return np.array(lo, np.int64), np.array(hi, np.int64), wts


def _lowpass_coef(sr, fc):
    """2nd-order Butterworth low-pass (bilinear transform), as b0 b1 b2 a1 a2."""
    w = math.tan(math.pi * fc / sr)
    q = math.sqrt(2.0)
    n = 1.0 / (1.0 + q * w + w * w)
    b0 = w * w * n
    return np.array([b0, 2.0 * b0, b0, 2.0 * (w * w - 1.0) * n, (1.0 - q * w + w * w) * n])


def _highpass_coef(sr, fc):
    """2nd-order Butterworth high-pass (bilinear transform), as b0 b1 b2 a1 a2."""
    w = math.tan(math.pi * fc / sr)
    q = math.sqrt(2.0)
    n = 1.0 / (1.0 + q * w + w * w)
    b0 = n
    return np.array([b0, -2.0 * b0, b0, 2.0 * (w * w - 1.0) * n, (1.0 - q * w + w * w) * n])


class Listener:
    """Streaming onset detector; feed it blocks, get onset times back.

    Parameters
    ----------
    sr : int
        Sample rate of the input.
    hop : int
        Analysis hop in samples (128 at 48 kHz gives an onset decision every 2.7 ms).
    on_warning : callable, optional
        Called with a message the first time the input misbehaves (NaN/inf, clipping,
        DC, extra channels); default: :func:`warnings.warn`.
    **settings
        Any key of :data:`DEFAULTS` (``method``, ``threshold``, ``min_ioi_ms`` ...), and
        ``instrument`` to start from a preset.

    Attributes
    ----------
    latency_s : float
        Subtracted from each detection time.
    settings : dict
        Everything needed to rebuild this listener (saved with each take).

    Examples
    --------
    >>> lis = Listener(48000, 128, threshold=0.4)
    >>> lis.process(np.zeros(256, np.float32))
    []
    """

    def __init__(self, sr: int = 48000, hop: int = 128, on_warning: Callable[[str], None] | None = None,
                 **settings):
        instrument = settings.pop("instrument", None)
        merged = dict(DEFAULTS)
        if instrument is not None:
            if instrument not in PRESETS:
                raise ConfigError(f"listen.instrument: unknown preset {instrument!r}; "
                                  f"choose one of {', '.join(PRESETS)}")
            merged.update(PRESETS[instrument])
        for key in _RETIRED:
            settings.pop(key, None)
        unknown = sorted(set(settings) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"listen: unknown setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
        merged.update({k: v for k, v in settings.items() if v is not None or k == "latency_ms"})
        self.sr = int(sr)
        self.hop = int(hop)
        self._check(merged)
        self._s = merged
        self.instrument = instrument
        self._warn = on_warning or _warn_default
        self._warned: set[str] = set()
        if merged["method"] == "default":
            self._setup_default()
        else:
            self._setup_aubio()
        if merged["latency_ms"] is not None:
            self.latency_s = float(merged["latency_ms"]) / 1000.0
        elif merged["method"] == "default":
            self.latency_s = measured_latency(self.sr, self.hop, {k: v for k, v in merged.items()
                                                                   if k != "latency_ms"})
        if merged["method"] == "default":
            # the flux cue's latency in hops, for merging it with the tonal cue
            self._tp[16] = self.latency_s * self.sr / self.hop
        self.reset()

    # -- construction -----------------------------------------------------------
    def _check(self, s):
        if self.sr < 8000 or self.sr > 384000:
            raise ConfigError(f"listen: sample rate {self.sr} is out of range (8000..384000)")
        if not 16 <= self.hop <= 8192:
            raise ConfigError(f"listen.hop: {self.hop} is out of range (16..8192)")
        if s["method"] not in METHODS:
            raise ConfigError(f"listen.method: unknown method {s['method']!r}; choose one of {', '.join(METHODS)}")
        for key in ("buf", "threshold", "min_ioi_ms", "compression", "release_s", "avg_ms", "max_ms"):
            v = s[key]
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"listen.{key}: must be a non-negative number, got {v!r}")
        if int(s["buf"]) < self.hop:
            raise ConfigError(f"listen.buf ({s['buf']}) must be at least listen.hop ({self.hop})")
        if s["lag"] < 1:
            raise ConfigError("listen.lag must be >= 1")
        v = s["player_db"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v > 0:
            raise ConfigError(f"listen.player_db: must be a level in dBFS (<= 0), got {v!r}")
        for key in ("quiet_db", "hold_ms"):
            v = s[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"listen.{key}: must be a non-negative number, got {v!r}")
        for key in ("voicing", "slur_semitones", "pitch_fmin", "tonal_merge_ms", "pitch_window_ms"):
            v = s[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"listen.{key}: must be a positive number, got {v!r}")
        for key in ("tonal", "slur"):
            if not isinstance(s[key], bool):
                raise ConfigError(f"listen.{key}: must be true or false, got {s[key]!r}")

    def _setup_default(self):
        s = self._s
        # the window keeps its duration whatever the sample rate
        n_fft = int(2 ** round(math.log2(max(self.hop, s["buf"] * self.sr / 48000.0))))
        self.n_fft = max(n_fft, self.hop, 16)
        self._window = np.hanning(self.n_fft + 1)[:-1].astype(np.float64)
        # normalise so a full-scale sine peaks near 1 in its band
        self._window /= self._window.sum() / 2.0
        half = self.n_fft // 2
        bits = int(round(math.log2(half)))
        idx = np.arange(half)
        self._rev = np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in idx], np.int64)
        k_half = np.arange(half // 2 + 1) * 2.0 * np.pi / half
        k_full = np.arange(half + 1) * 2.0 * np.pi / self.n_fft
        tabs = np.zeros((4, half + 1))
        tabs[0, :k_half.size] = np.cos(k_half)
        tabs[1, :k_half.size] = np.sin(k_half)
        tabs[2] = np.cos(k_full)
        tabs[3] = np.sin(k_full)
        self._fft_tabs = tabs
        self._lo, self._hi, self._wts = _filterbank(self.sr, self.n_fft, s["bands_per_octave"],
                                                    s["fmin"], s["fmax"])
        hop_s = self.hop / self.sr
        n_avg = max(1, int(round(s["avg_ms"] / 1000.0 / hop_s)))
        n_max = max(1, int(round(s["max_ms"] / 1000.0 / hop_s)))
        self._params = np.array([
            s["compression"], s["threshold"],
            10.0 ** (-3.0 * hop_s / max(s["release_s"], 1e-3)),
            10.0 ** (s["silence_db"] / 20.0),
            s["lag"], n_avg, min(n_max, n_avg), max(1, int(round(s["min_ioi_ms"] / 1000.0 / hop_s))),
            s["ref_frames"], s["max_bands"], s["rearm"], 10.0 ** (-s["gate_db"] / 20.0),
            10.0 ** (-3.0 * hop_s / max(s["gate_release_s"], 1e-3)),
            10.0 ** (s["gain_db"] / 20.0),
        ])
        self._odf_len = n_avg + 1
        # pitch cues: YIN on the input decimated to about 8 kHz
        dec = max(1, int(round(self.sr / 8000.0)))
        fs_d = self.sr / dec
        w = int(round(s["pitch_window_ms"] / 1000.0 * fs_d))
        tmin = max(2, int(fs_d / 1000.0))
        tmax = max(tmin + 2, int(math.ceil(fs_d / max(s["pitch_fmin"], 20.0))))
        hop_d = self.hop / dec
        # a change is seen once it fills about half the window; the hop count is the newest sample
        back = (w / 2.0 + tmin) / hop_d

        def hops(ms):
            return max(1, int(round(ms / 1000.0 / hop_s)))

        self._tp = np.zeros(35)
        self._tp[:26] = [
            fs_d, w, tmin, tmax, 0.15, s["voicing"], 0.5, hops(20.0),
            hops(8.0), s["slur_semitones"], 0.35, back, w / 2.0 / hop_d,
            1.0 if s["tonal"] else 0.0, dec, s["tonal_merge_ms"] / 1000.0 / hop_s, 1.0,
            hops(15.0), hops(25.0), hops(15.0), hops(80.0),
            10.0 ** (-s["quiet_db"] / 20.0), s["hold_ms"] / 1000.0 / hop_s,
            hops(s["dip_ms"]), 0.03 / hop_s,
            self.n_fft / 2.0 / self.hop,
        ]
        # slur cue: on/off, the periodicity its notes need; anti-alias low-pass at 0.4 fs_d
        self._tp[26] = 1.0 if s["slur"] else 0.0
        self._tp[27] = 0.7
        self._tp[28:33] = _lowpass_coef(self.sr, 0.4 * fs_d) if dec > 1 else [1.0, 0.0, 0.0, 0.0, 0.0]
        self._tp[33] = hops(25.0)
        self._tp[34] = hops(15.0)
        self._pring_len = int(2 ** math.ceil(math.log2(hops(15.0) * 3 + hops(25.0) * 2 + 2)))
        self._dring_len = int(2 ** math.ceil(math.log2(w + tmax + 2)))
        self._hp = np.zeros(8)
        if s["highpass_hz"] > 0:
            self._hp[:5] = _highpass_coef(self.sr, s["highpass_hz"])
            self._hp[7] = 1.0

    def _setup_aubio(self):
        try:
            import aubio  # noqa: F401
        except ImportError as exc:
            raise ConfigError(f"listen.method={self._s['method']} needs aubio, which is not installed "
                              f"({exc}); use method=default") from None
        self.n_fft = int(2 ** round(math.log2(max(self.hop, self._s["buf"] * self.sr / 48000.0))))
        self.latency_s = 0.0  # set from aubio in reset()

    @classmethod
    def from_config(cls, cfg, sr: int, on_warning=None) -> "Listener":
        """Build from the ``listen`` config group (``cfg.listen``).

        Examples
        --------
        >>> from rolypoly.config import load_config
        >>> lis = Listener.from_config(load_config().listen, 48000)   # doctest: +SKIP
        """
        try:
            from omegaconf import OmegaConf
            d = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
        except ImportError:
            d = dict(cfg)
        hop = int(d.pop("hop", 128))
        instrument = d.pop("instrument", None)
        extra = d.pop("settings", None) or {}
        d.update(extra)
        return cls(sr, hop, on_warning=on_warning, instrument=instrument, **d)

    # -- state ---------------------------------------------------------------
    @property
    def settings(self) -> dict:
        """The settings that rebuild this listener (plus its latency, for the record)."""
        out = dict(self._s)
        out.update(sr=self.sr, hop=self.hop, instrument=self.instrument,
                   latency_ms=round(self.latency_s * 1000.0, 4))
        return out

    def reset(self) -> None:
        """Forget everything heard: the next block is time zero."""
        self._pending = np.zeros(self.hop, np.float32)
        self._n_pending = 0
        self._hops = 0
        self._clip_run = 0
        self._dc = 0.0
        self._gain = 10.0 ** (self._s["gain_db"] / 20.0)
        if self._s["method"] == "default":
            self._pend = np.zeros(self.hop, np.float64)
            self._frame = np.zeros(self.n_fft, np.float64)
            self._hp[5:7] = 0.0
            half = self.n_fft // 2
            self._re = np.zeros(half)
            self._im = np.zeros(half)
            self._mag = np.zeros(half + 1)
            self._hist = np.zeros((self._s["lag"] + self._s["ref_frames"], self._lo.size))
            self._odf_hist = np.zeros(self._odf_len)
            self._st = np.zeros(24)
            self._st[2] = -1e9
            self._st[11] = -1e9
            self._st[20] = -1e9
            self._ts = np.zeros(24)
            self._dring = np.zeros(self._dring_len)
            self._ybuf = np.zeros(int(self._tp[3]) + 2)
            self._dprime = np.zeros(int(self._tp[3]) + 2)
            self._out_kind = np.zeros(64)
            self._lring = np.zeros(int(2 ** math.ceil(math.log2(2 * self._tp[23] + 4))))
            self._fring = np.zeros(self._lring.size)
            self._pring = np.zeros((3, self._pring_len))
            self._ts[8] = -1e9
            self._ts[9] = -1.0
            self._st[7] = 1.0
            # the playing level the relative gate and the hold start from: the sound check's
            # measurement, else a working input level; real playing takes over at once
            self._st[9] = 10.0 ** (self._s["player_db"] / 20.0)
            self._stats = np.zeros(4)
            self._out_hops = np.zeros(64)
            self._odf_out = np.zeros(0)
        else:
            import aubio
            o = aubio.onset(self._s["method"], self.n_fft, self.hop, self.sr)
            o.set_silence(float(self._s["silence_db"]))
            o.set_minioi_ms(float(self._s["min_ioi_ms"]))
            if self._s.get("threshold_aubio") is not None:
                o.set_threshold(float(self._s["threshold_aubio"]))
            self._aubio = o
            self.latency_s = float(o.get_delay_s())
        self.odf: list[float] | None = None  # set to [] to record the detection function

    # -- input checks --------------------------------------------------------
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(message)

    def _as_2d(self, block) -> np.ndarray:
        x = np.asarray(block)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        elif x.ndim != 2:
            raise AudioError(f"listener input must be (n,) or (n, channels), got shape {x.shape}")
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        return x

    def _check_input(self, n: int, n_bad: float, n_clip: float, total: float) -> None:
        """Warnings from the kernel's input statistics for the last block."""
        if n_bad:
            self._warn_once("nan", "listener: input has NaN/inf samples (broken driver?); "
                                   "they are treated as silence")
        if n_clip:
            self._clip_run += int(n_clip)
            if self._clip_run > 0.01 * self.sr:
                self._warn_once("clip", "listener: input is clipping; turn the input gain down")
        if n:
            self._dc = 0.99 * self._dc + 0.01 * total / n
            if abs(self._dc) > 0.05:
                self._warn_once("dc", f"listener: input has a DC offset of {self._dc:+.2f} "
                                      "(removed before detection)")

    def _sanitise(self, block) -> np.ndarray:
        """Mono float32 with non-finite samples zeroed (the aubio path's conditioning)."""
        x = self._as_2d(block)
        if x.shape[1] > 1 and "channels" not in self._warned:
            self._warned.add("channels")
        bad = ~np.isfinite(x)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            x = np.where(bad, np.float32(0.0), x)
        mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
        self._check_input(mono.size, n_bad, int(np.count_nonzero(np.abs(x) >= 0.999)), float(np.sum(mono)))
        return mono

    # -- processing ----------------------------------------------------------
    def process(self, block) -> list[float]:
        """Feed one block (any length); returns onset times (s since stream start).

        Any split of the stream into blocks gives the same onsets: the default detector
        works hop by hop on its own buffer.

        Parameters
        ----------
        block : np.ndarray
            Mono ``(n,)`` or multichannel ``(n, ch)`` samples, float.

        Returns
        -------
        list of float
            Latency-compensated onset times found while processing this block.
        """
        if self._s["method"] != "default":
            return self._process_aubio(self._sanitise(block))
        x = self._as_2d(block)
        n = x.shape[0]
        max_hops = (n + self._n_pending) // self.hop + 1
        if self._out_hops.size < 2 * max_hops:
            self._out_hops = np.zeros(2 * max_hops)
            self._out_kind = np.zeros(2 * max_hops)
        if self.odf is not None and self._odf_out.size < max_hops:
            self._odf_out = np.zeros(max_hops)
        stats = self._stats
        stats[:] = 0.0
        n_on, n_hops = _process_block(x, self._st, stats, self._params, self._hp, self._pend, self._frame,
                                      self._window, self._fft_tabs, self._rev, self._re, self._im, self._mag,
                                      self._lo, self._hi, self._wts, self._hist, self._odf_hist,
                                      self._out_hops, self._odf_out if self.odf is not None else self._odf_out[:0],
                                      self._ts, self._tp, self._dring, self._ybuf, self._dprime, self._out_kind,
                                      self._lring, self._fring, self._pring)
        self._n_pending = int(self._st[6])
        self._hops += n_hops
        if stats[0] or stats[1] or abs(stats[2]) > 0.05 * n or abs(self._dc) > 0.05:
            self._check_input(n, stats[0], stats[1], stats[2])
        if self.odf is not None and n_hops:
            self.odf.extend(self._odf_out[:n_hops].tolist())
        if not n_on:
            return []
        scale = self.hop / self.sr
        # flux onsets carry the detection hop (minus the measured latency); tonal onsets
        # are already dated where the change entered the window
        return [max(0.0, h * scale - (self.latency_s if k == 0.0 else 0.0))
                for h, k in zip(self._out_hops[:n_on].tolist(), self._out_kind[:n_on].tolist())]

    def _process_aubio(self, x) -> list[float]:
        out: list[float] = []
        i = 0
        n = x.size
        hop = self.hop
        o = self._aubio
        while i < n:
            take = min(hop - self._n_pending, n - i)
            self._pending[self._n_pending:self._n_pending + take] = x[i:i + take]
            self._n_pending += take
            i += take
            if self._n_pending == hop:
                self._n_pending = 0
                self._hops += 1
                if o(self._pending * np.float32(self._gain)):
                    out.append(max(0.0, float(o.get_last_s())))
        return out


def detect_onsets(audio, sr: int, hop: int = 128, block: int | None = None, **settings) -> np.ndarray:
    """Onset times (s) in a whole recording, by the same streaming :class:`Listener`.

    Examples
    --------
    >>> x = np.zeros(48000, np.float32); x[12000:12200] = np.hanning(200)
    >>> detect_onsets(x, 48000).round(2)   # doctest: +SKIP
    array([0.25])
    """
    lis = settings.pop("listener", None) or Listener(sr, hop, **settings)
    x = np.asarray(audio)
    block = block or max(hop, 4096)
    found: list[float] = []
    for i in range(0, x.shape[0], block):
        found += lis.process(x[i:i + block])
    return np.asarray(found, dtype=np.float64)


# ---------------------------------------------------------------------------------
# latency: measured on synthetic plucks with known onsets

_LATENCY_CACHE: dict = {}


def measured_latency(sr: int, hop: int, settings: dict) -> float:
    """Median delay (s) from true onset to detection of the default detector on clean
    synthetic plucks at these settings; cached per setting."""
    key = (sr, hop, tuple(sorted((k, v) for k, v in settings.items() if k not in ("latency_ms", "gain_db"))))
    if key in _LATENCY_CACHE:
        return _LATENCY_CACHE[key]
    from rolypoly.metrics import onset_f_measure
    from rolypoly.sim.musician import play, rhythm
    times, phases, bar = rhythm(n_bars=4, bpm=100, steps_per_bar=4, fill=1.0, seed=7)
    delays = []
    for style in ("pluck", "hard", "soft"):
        audio, truth = play(times, phases, bar, "on_grid", sr=sr, seed=11, style=style, level_db=-18.0)
        lis = Listener(sr, hop, latency_ms=0.0, **{k: v for k, v in settings.items() if k != "latency_ms"})
        found = detect_onsets(audio, sr, hop, listener=lis)
        delays.extend(onset_f_measure(found, truth, 0.05)["delays"])
    lat = float(np.median(delays)) if delays else 0.0
    _LATENCY_CACHE[key] = lat
    return lat


# ---------------------------------------------------------------------------------
# sound check

def soundcheck(audio, sr: int, instrument: str | None = "guitar", hop: int = 128, base: dict | None = None) -> dict:
    """Listen to a few seconds of the musician and choose listener settings.

    Starts from the ``instrument`` preset (or ``base``), then sets the input trim so
    quiet players reach a working level, the player's level (``player_db``, where the
    relative gate and the hold of quiet onsets start), the silence floor a little above
    the measured room noise but no lower than 35 dB under the player, and the flux
    threshold from the spread of the detection function on this player (the busier and
    noisier the input, the higher).

    Parameters
    ----------
    audio : np.ndarray
        The musician playing, mono or (n, ch); a few seconds with several notes.
    sr : int
        Its sample rate.
    instrument : str or None
        A key of :data:`PRESETS`.

    Returns
    -------
    dict
        Settings for :class:`Listener` (``Listener(sr, hop, **result)``): ``gain_db``,
        ``silence_db``, ``player_db``, ``threshold``, the preset's keys and ``instrument``.

    Examples
    --------
    >>> from rolypoly.sim.musician import play, rhythm
    >>> t, ph, bar = rhythm(2, seed=1)
    >>> x, _ = play(t, ph, bar, sr=48000, level_db=-35)
    >>> s = soundcheck(x, 48000, "guitar")
    >>> s["gain_db"] > 0
    True
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise AudioError(f"soundcheck: audio must be mono or (n, channels), got shape {x.shape}")
    x = np.where(np.isfinite(x), x, 0.0)
    if x.size < sr // 2:
        raise AudioError(f"soundcheck: need at least 0.5 s of audio, got {x.size / sr:.2f} s")
    x = x - np.mean(x)
    settings = dict(base or {})
    if instrument is not None:
        if instrument not in PRESETS:
            raise ConfigError(f"soundcheck: unknown instrument {instrument!r}; choose one of {', '.join(PRESETS)}")
        settings = {**PRESETS[instrument], **settings}
    # frame levels (20 ms): the quiet end is the room, the loud end is the player
    n = int(0.02 * sr)
    frames = x[: x.size // n * n].reshape(-1, n)
    db = 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)
    room_db = float(np.percentile(db, 10))
    play_db = float(np.percentile(db, 95))
    if play_db - room_db < 10.0 or play_db < -90.0:
        raise AudioError(f"soundcheck: heard no playing (level {play_db:.0f} dBFS over a room at "
                         f"{room_db:.0f} dBFS); play a few notes during the sound check")
    # trim: bring the player to about -20 dBFS RMS, never more than +30 dB, never down
    gain_db = float(np.clip(-20.0 - play_db, 0.0, 30.0))
    # silence floor: 6 dB over the room, and no lower than 35 dB under the player (on a
    # recording with digital silence between takes the room alone would put it at -90 dB and
    # every breath and key click would count), but at least 30 dB under the player
    silence_db = float(np.clip(max(room_db + 6.0, play_db - 35.0) + gain_db, -90.0, play_db + gain_db - 30.0))
    # the player's level: the relative gate and the hold of quiet onsets start from it
    settings.update(gain_db=round(gain_db, 1), silence_db=round(silence_db, 1),
                    player_db=round(float(min(0.0, play_db + gain_db)), 1))
    # threshold from this player's detection function: above its typical ripple
    probe = Listener(sr, hop, latency_ms=0.0, instrument=instrument,
                     **{k: v for k, v in settings.items() if k in DEFAULTS and k != "latency_ms"})
    probe.odf = []
    detect_onsets(x.astype(np.float32), sr, hop, listener=probe)
    odf = np.asarray(probe.odf)
    active = odf[odf > 0]
    base_thr = settings.get("threshold", DEFAULTS["threshold"])
    if active.size > 20:
        med = float(np.median(active))
        mad = float(np.median(np.abs(active - med)))
        # never under the preset: on real players a lower threshold only added false alarms
        thr = float(np.clip(med + 3.0 * mad, base_thr, 2.0 * base_thr))
    else:
        thr = base_thr
    settings["threshold"] = round(thr, 4)
    settings["instrument"] = instrument
    return settings
