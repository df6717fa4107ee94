"""The default detector's audio-thread kernel (numba): one call per block, no allocation.

Everything the detector remembers between hops lives in a few float64 arrays whose
slots are named here, as in :mod:`rolypoly.synth.voice`:

``st`` (``S_*``)
    the spectral-flux detector, the level followers, the gates and the hold of quiet onsets;
``ts`` (``T_*``)
    the pitch tracker (decimation filter, YIN ring, periodicity and pitch, the slur and
    voicing cues);
``params`` (``P_*``) and ``tp`` (``K_*``)
    constants derived from the settings by :func:`build` (never written by the kernel);
``hp`` (``H_*``)
    the input high-pass: coefficients and its two state samples;
``env``
    scratch for the attack dating (1 ms levels over the frame, written only at an onset).

:func:`process_block` is the entry point; the other functions are its pieces, kept
separate so they can be tested (the FFT against numpy, the sliding YIN sums against
direct ones).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---- state of the flux detector (st) --------------------------------------------------
(S_HOP, S_LEVEL, S_LAST_ONSET, S_HIST_POS, S_ONSET, S_ODF_POS, S_PENDING, S_ARMED, S_PEAK,
 S_LOUD, S_RMS_SMOOTH, S_LAST_PITCH_ONSET, S_GATE_OPEN, S_REL_LEVEL, S_HELD, S_HELD_LEVEL,
 S_FLATNESS, S_HELD_FLATNESS, S_HELD_TIME, S_LAST_NOTE, S_HELD_PEAK, S_HELD_DECAYED) = range(22)
N_ST = 22

# ---- state of the pitch tracker (ts) ----------------------------------------------------
(T_DEC_COUNT, T_RING_POS, T_PERIODICITY, T_PITCH, T_UNVOICED_RUN, T_VOICED_RUN, T_VOICED_FROM,
 T_LAST_SLUR, T_SLUR_ONSET, T_TONAL_ONSET, T_UNVOICED_BEFORE, T_AA_U1, T_AA_U2, T_AA_W1,
 T_AA_W2, T_DEC_SAMPLES) = range(16)
N_TS = 16

# ---- flux detector constants (params) ---------------------------------------------------
(P_COMPRESSION, P_THRESHOLD, P_RELEASE, P_FLOOR, P_LAG, P_N_AVG, P_N_MAX, P_MIN_IOI, P_N_REF,
 P_WIDTH, P_REARM, P_GATE, P_LOUD_RELEASE, P_GAIN) = range(14)
N_P = 14

# ---- pitch-cue and hold constants (tp) ----------------------------------------------------
(K_FS_D, K_WIN, K_TMIN, K_TMAX, K_YIN_THRESHOLD, K_VOICING, K_UNVOICED, K_UNVOICED_HOPS,
 K_CONFIRM_HOPS, K_SLUR_SEMITONES, K_STEADY_SEMITONES, K_TONAL_BACK, K_HALF_WINDOW, K_TONAL,
 K_DECIMATE, K_MERGE_HOPS, K_FLUX_LATENCY, K_NEW_HOPS, K_GAP_HOPS, K_OLD_HOPS, K_SLUR_IOI_HOPS,
 K_QUIET, K_HOLD_HOPS, K_DIP_HOPS, K_SAME_NOTE_HOPS, K_FRAME_CENTRE, K_SLUR, K_SLUR_VOICING,
 K_AA_B0, K_AA_B1, K_AA_B2, K_AA_A1, K_AA_A2, K_OLD_STEADY_HOPS, K_HELD_HOPS,
 K_RUNUP_FLATNESS, K_STROKE_DECAY, K_SWELL, K_ATTACK, K_ATTACK_STEP, K_ATTACK_WIN, K_ATTACK_RISE,
 K_ATTACK_FLOOR, K_ATTACK_PEAK, K_ATTACK_BEFORE, K_ATTACK_OFFSET, K_ATTACK_SLOW, K_ATTACK_SWELL,
 K_HOLD_FLATNESS) = range(49)
N_K = 49

# ---- high-pass (hp) and per-block input statistics (stats) ------------------------------
(H_B0, H_B1, H_B2, H_A1, H_A2, H_Z1, H_Z2, H_ON) = range(8)
STAT_BAD, STAT_CLIP, STAT_SUM = range(3)


@njit(cache=True)
def fft(re, im, rev, cos_t, sin_t):
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
def rfft_mag(frame, win, re, im, rev, cos_t, sin_t, cos_n, sin_n, mag):
    """|rfft(frame * win)| into ``mag`` (n_fft/2 + 1 bins), via a half-size complex FFT."""
    n = re.size
    for m in range(n):
        re[m] = frame[2 * m] * win[2 * m]
        im[m] = frame[2 * m + 1] * win[2 * m + 1]
    fft(re, im, rev, cos_t, sin_t)
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
def detect_hop(frame, mag, lo, hi, wts, hist, odf_hist, st, params, tp):
    """Detection function and peak picking for the hop just analysed; returns the flux.

    Writes 1.0 to ``st[S_ONSET]`` when this hop is an onset.  See :class:`Listener` for the
    meaning of ``params`` (packed in ``Listener._setup_default``).
    """
    lam, thr, rel, floor = params[P_COMPRESSION], params[P_THRESHOLD], params[P_RELEASE], params[P_FLOOR]
    lag, n_avg, n_max, min_ioi = int(params[P_LAG]), int(params[P_N_AVG]), int(params[P_N_MAX]), int(params[P_MIN_IOI])
    n_ref, width, rearm, gate = int(params[P_N_REF]), int(params[P_WIDTH]), params[P_REARM], params[P_GATE]
    loud_rel = params[P_LOUD_RELEASE]
    n_bands = lo.size
    nh = hist.shape[0]
    pos = int(st[S_HIST_POS])
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
    st[S_FLATNESS] = math.exp(slog / n_bands) / (ssum / n_bands + 1e-12)
    ms = 0.0
    for i in range(frame.size):
        ms += frame[i] * frame[i]
    rms = math.sqrt(ms / frame.size)
    # level follower: instant attack, slow release; one gain for both compared frames so
    # the normalisation itself never looks like a change
    level = st[S_LEVEL] * rel
    if rms > level:
        level = rms
    ref = st[S_LEVEL] if st[S_LEVEL] > floor else floor
    st[S_LEVEL] = level
    # the loudest recent playing (slower release): the relative gate's reference
    # ... which is not forgotten in silence: after a long rest (or before the first note,
    # when it is the expected level) a first breath or key click is still quiet next to
    # the notes to come
    loud = st[S_LOUD] * loud_rel if rms >= floor else st[S_LOUD]
    if rms > loud:
        loud = rms
    st[S_LOUD] = loud
    g = lam / ref
    flux = 0.0
    if st[S_HOP] >= lag + n_ref:
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
    st[S_REL_LEVEL] = rms / loud if loud > 0.0 else 0.0
    if rms < floor or rms < gate * loud:
        flux = 0.0
        st[S_GATE_OPEN] = 0.0
    else:
        st[S_GATE_OPEN] = 1.0
    op = int(st[S_ODF_POS])
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
    st[S_ODF_POS] = (op + 1) % nodf
    # re-arm only once the detection function has fallen well below the peak of the last
    # onset: a slow swell or a long attack is one rise, so one onset
    # (and not while the level is still climbing: a swell is one note however it wobbles)
    rising = rms > 1.25 * st[S_RMS_SMOOTH]
    st[S_RMS_SMOOTH] = 0.5 * st[S_RMS_SMOOTH] + 0.5 * rms
    if st[S_ARMED] == 0.0:
        if flux > st[S_PEAK]:
            st[S_PEAK] = flux
        if rearm <= 0.0 or (flux < rearm * st[S_PEAK] and not rising):
            st[S_ARMED] = 1.0
    onset = 0.0
    if (st[S_HOP] >= n_avg and st[S_ARMED] != 0.0 and flux > thr + mean and flux >= mx
            and st[S_HOP] - st[S_LAST_ONSET] >= min_ioi and st[S_HOP] + 1.0 - tp[K_FLUX_LATENCY] - st[S_LAST_PITCH_ONSET] >= tp[K_MERGE_HOPS]):
        onset = 1.0
        st[S_LAST_ONSET] = st[S_HOP]
        st[S_ARMED] = 0.0
        st[S_PEAK] = flux
    st[S_ONSET] = onset
    st[S_HIST_POS] = (pos + 1) % nh
    st[S_HOP] += 1.0
    return flux


@njit(cache=True)
def yin_update(dring, pos, dsum, w, tmax, exact):
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
def tonal_hop(ybuf, dprime, ts, tp, hop_no, level_ok):
    """Periodicity and pitch for the hop just analysed, and the voicing cue (numba).

    A YIN-style aperiodicity (difference function ``ybuf``, see :func:`yin_update`) gives a
    periodicity in [0, 1] (``ts[T_PERIODICITY]``) and a pitch in semitones re 1 Hz (``ts[T_PITCH]``).
    With the voicing cue on (``tp[K_TONAL]``), an onset candidate (``ts[T_TONAL_ONSET]``, in hops of
    true time, -1 when none) is raised where periodic sound starts after a stretch
    without it (a blown or sung tone starting out of breath noise), dated back to where
    the change entered the analysis window.
    """
    ts[T_TONAL_ONSET] = -1.0
    tmin = int(tp[K_TMIN])
    tmax = int(tp[K_TMAX])
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
            if dprime[t] < tp[K_YIN_THRESHOLD]:
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
        semi = 12.0 * math.log2(tp[K_FS_D] / tau)
    ts[T_PERIODICITY] = p
    ts[T_PITCH] = semi
    if tp[K_TONAL] == 0.0:
        return
    confirm = int(tp[K_CONFIRM_HOPS])
    if p >= tp[K_VOICING]:
        if ts[T_VOICED_RUN] == 0.0:
            ts[T_VOICED_FROM] = hop_no
            ts[T_UNVOICED_BEFORE] = ts[T_UNVOICED_RUN]
        ts[T_VOICED_RUN] += 1.0
        ts[T_UNVOICED_RUN] = 0.0
        # voicing onset: periodic sound after at least tp[K_UNVOICED_HOPS] hops without it
        if ts[T_VOICED_RUN] == confirm and ts[T_UNVOICED_BEFORE] >= tp[K_UNVOICED_HOPS]:
            ts[T_TONAL_ONSET] = ts[T_VOICED_FROM] - tp[K_TONAL_BACK]
    else:
        ts[T_VOICED_RUN] = 0.0
        if p < tp[K_UNVOICED]:
            ts[T_UNVOICED_RUN] += 1.0


@njit(cache=True)
def median_small(buf, n):
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
def pitch_window(pring, end, n, voic):
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
    return median_small(pring[2], n), lo, hi


@njit(cache=True)
def slur_hop(pring, lring, ts, tp, h, loud):
    """The slur cue: a stable pitch that steps to another stable pitch (numba).

    ``pring`` rows: periodicity, pitch (semitones), scratch; one column per hop.  At hop
    ``h`` the last ``tp[K_NEW_HOPS]`` hops (the new note) and ``tp[K_OLD_HOPS]`` hops ending ``tp[K_GAP_HOPS]``
    hops before them (the old note) must both be periodic (``tp[K_SLUR_VOICING]``) and steady
    (pitch spread under ``tp[K_STEADY_SEMITONES]`` semitones; the old note's under 0.5 over ``tp[K_OLD_STEADY_HOPS]``
    hops more: a glide or a drum's falling pitch keeps moving, a held note does not), their
    median pitches ``tp[K_SLUR_SEMITONES]`` semitones or more apart (not an octave: the tracker slips
    by octaves; not more than 14: the tracker jumping between a drum's partials), and
    the new note at playing level (not under the quiet line ``tp[K_QUIET]``: a ringing tail
    is no new note), and it must hold for ``tp[K_HELD_HOPS]`` hops more (a bend goes on moving).
    The onset (``ts[T_SLUR_ONSET]``, hops of true time, -1 when none) is where the
    pitch had moved a quarter of the way, less half the analysis window.
    """
    ts[T_SLUR_ONSET] = -1.0
    nrg = pring.shape[1]
    nR = int(tp[K_NEW_HOPS])
    g = int(tp[K_GAP_HOPS])
    nO = int(tp[K_OLD_HOPS])
    nC = int(tp[K_HELD_HOPS])
    # judged nC hops late: the new pitch must hold (a bend keeps going)
    h0 = h - nC
    if h - ts[T_LAST_SLUR] < tp[K_SLUR_IOI_HOPS] or h0 < nR + g + nO + int(tp[K_OLD_STEADY_HOPS]):
        return
    voic = tp[K_SLUR_VOICING]
    m_new, lo_r, hi_r = pitch_window(pring, h0, nR, voic)
    if m_new != m_new or hi_r - lo_r > tp[K_STEADY_SEMITONES]:
        return
    m_old, lo_o, hi_o = pitch_window(pring, h0 - nR - g, nO, voic)
    if m_old != m_old or hi_o - lo_o > tp[K_STEADY_SEMITONES]:
        return
    # ... and the old note was steady for a while before: a glide (a drum's falling
    # pitch, a bend) keeps moving, a note held before a slur does not
    for j in range(nO, nO + int(tp[K_OLD_STEADY_HOPS])):
        k = (h0 - nR - g - j) % nrg
        if pring[0, k] >= voic:
            lo_o = min(lo_o, pring[1, k])
            hi_o = max(hi_o, pring[1, k])
    if hi_o - lo_o > 0.5:
        return
    d = m_new - m_old
    ad = abs(d)
    if ad < tp[K_SLUR_SEMITONES] or ad > 14.0 or abs(ad - 12.0) < 0.7:
        return
    nl = lring.size
    for j in range(nR):
        pring[2, j] = lring[(h0 - j) % nl]
    if median_small(pring[2], nR) < tp[K_QUIET] * loud:
        return
    m_held, _, _ = pitch_window(pring, h, nC, voic)
    if m_held != m_held or abs(m_held - m_new) > 0.25 * ad:
        return
    # date it: the first hop after the old note where the pitch has moved a quarter of the way
    target = m_old + 0.25 * d
    at = h0 - nR + 1
    for j in range(h0 - nR - g + 1, h0 - nR + 1):
        if (pring[1, j % nrg] - target) * d > 0.0:
            at = j
            break
    ts[T_LAST_SLUR] = h
    ts[T_SLUR_ONSET] = at - tp[K_HALF_WINDOW]


@njit(cache=True)
def dip_start(lring, fring, h, nmax, centre):
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
def attack_start(frame, env, tp):
    """Where the attack now in the analysis frame began: samples before the frame's end, or -1.

    ``env`` (scratch) gets the mean square of the ``tp[K_ATTACK_WIN]`` samples (1 ms) ending
    every ``tp[K_ATTACK_STEP]`` samples of ``frame``.  From the frame's quietest point (the
    floor: silence, or the tail of the note before) to the loudest one after it, the rise
    must be ``tp[K_ATTACK_RISE]`` (energy ratio) or more, else -1 (no attack of its own in
    the broadband level: the caller keeps the fixed latency).  The attack starts where the
    level last crossed, before that peak, the larger of ``tp[K_ATTACK_FLOOR]`` times the
    floor and ``tp[K_ATTACK_PEAK]`` times the peak (interpolated in dB between two points);
    the 1 ms level is dated at its window's centre, like the corpus truth.  Nothing before
    the crossing may come within ``tp[K_ATTACK_BEFORE]`` of the peak (else -1: a tone's
    ripple).  A pluck and a 10 ms ramp are both dated by their own rise, not by one
    latency; a slower rise is dated early (its peak is not reached yet).
    """
    nf = frame.size
    step = int(tp[K_ATTACK_STEP])
    w = int(tp[K_ATTACK_WIN])
    n = (nf - w) // step + 1
    for j in range(n):
        end = w + j * step
        acc = 0.0
        for k in range(end - w, end):
            acc += frame[k] * frame[k]
        env[j] = acc / w + 1e-20
    m = 0
    for j in range(1, n):
        if env[j] < env[m]:
            m = j
    p = m
    for j in range(m + 1, n):
        if env[j] > env[p]:
            p = j
    if env[p] < tp[K_ATTACK_RISE] * env[m]:
        return -1.0
    thr = max(tp[K_ATTACK_FLOOR] * env[m], tp[K_ATTACK_PEAK] * env[p])
    i = p
    while i > m and env[i - 1] >= thr:
        i -= 1
    if i <= m:
        # the rise starts with the floor itself: the frame's first point (begun before it)
        return -1.0
    # a sound before the rise about as loud as its peak: a tone's own ripple (a low note's
    # 1 ms level swings), not an attack
    if tp[K_ATTACK_BEFORE] > 0.0:
        for j in range(0, i - 1):
            if env[j] >= tp[K_ATTACK_BEFORE] * env[p]:
                return -1.0
    a = env[i - 1]
    b = env[i]
    frac = math.log(thr / a) / math.log(b / a) if b > a else 1.0
    # the crossing point's window ends at w + (i - 1 + frac) * step; dated at its centre
    at = w + (i - 1 + frac) * step - 0.5 * w
    return nf - at


@njit(cache=True)
def swell_ratio(frame):
    """Mean square of the newest quarter of the frame over that of its oldest half."""
    nf = frame.size
    old = 0.0
    new = 0.0
    for k in range(nf // 2):
        old += frame[k] * frame[k]
    for k in range(nf - nf // 4, nf):
        new += frame[k] * frame[k]
    return 2.0 * new / (old + 1e-20)


@njit(cache=True)
def flux_time(frame, env, tp, h, hop):
    """A flux onset at hop ``h`` dated by its own attack (:func:`attack_start`) plus the
    calibrated ``tp[K_ATTACK_OFFSET]`` (hops of true time), or -1 (off).  With no attack
    of its own in the frame but a level climbing over it (``tp[K_ATTACK_SWELL]``) the note
    swelled in slowly: the flux latency plus the calibrated ``tp[K_ATTACK_SLOW]`` (hops);
    else the flux latency alone."""
    if tp[K_ATTACK] == 0.0:
        return -1.0
    a = attack_start(frame, env, tp)
    if a < 0.0:
        if tp[K_ATTACK_SWELL] > 0.0 and swell_ratio(frame) < tp[K_ATTACK_SWELL]:
            # the level is not climbing (a change inside a held tone): the plain latency
            return h - tp[K_FLUX_LATENCY]
        return h - tp[K_FLUX_LATENCY] - tp[K_ATTACK_SLOW]
    return h - a / hop + tp[K_ATTACK_OFFSET]


@njit(cache=True)
def flux_onset_start(lring, fring, frame, env, tp, h, hop):
    """Where a flux onset at hop ``h`` began (hops, before the flux latency), or -1: at the
    bottom of a level dip inside a tone (:func:`dip_start`), else by its own attack
    (:func:`flux_time`)."""
    d = dip_start(lring, fring, int(h), int(tp[K_DIP_HOPS]), tp[K_FRAME_CENTRE])
    if d < 0.0:
        d = flux_time(frame, env, tp, h, hop)
    return d


@njit(cache=True)
def voiced_start(pring, h, nmax, thr):
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
def process_block(x, st, stats, params, hp, pend, frame, win, fft_tabs, rev, re, im, mag,
                   lo, hi, wts, hist, odf_hist, out_hops, odf_out, ts, tp, dring, ybuf, dprime, out_kind, lring, fring,
                   pring, env):
    """Run the default detector over a block ``x`` of shape (n, channels), float32.

    Channels are averaged, non-finite samples become 0 (counted in ``stats[STAT_BAD]``),
    near-full-scale samples are counted in ``stats[STAT_CLIP]``, the raw sum goes to ``stats[STAT_SUM]``.
    Samples are trimmed, high-passed (biquad; ``hp`` = b0 b1 b2 a1 a2 z1 z2 on) and
    gathered into hops; each full hop is analysed.  Onset hop numbers (1-based count of
    hops since reset) go to ``out_hops``; the flux of every hop to ``odf_out`` when it is
    large enough.  Returns (number of onsets, number of hops).
    """
    n, ch = x.shape
    hop = pend.size
    gain = params[P_GAIN]
    b0, b1, b2, a1, a2 = hp[H_B0], hp[H_B1], hp[H_B2], hp[H_A1], hp[H_A2]
    z1, z2 = hp[H_Z1], hp[H_Z2]
    use_hp = hp[H_ON] != 0.0
    npend = int(st[S_PENDING])
    n_on = 0
    n_hops = 0
    nf = frame.size
    cos_t = fft_tabs[0]
    sin_t = fft_tabs[1]
    cos_n = fft_tabs[2]
    sin_n = fft_tabs[3]
    dec = int(tp[K_DECIMATE])
    tonal = tp[K_TONAL] != 0.0
    slur = tp[K_SLUR] != 0.0
    pitched = tonal or slur
    dn = int(ts[T_DEC_COUNT])
    # anti-alias low-pass before decimation: two biquads with one set of coefficients
    c0, c1, c2, c3, c4 = tp[K_AA_B0], tp[K_AA_B1], tp[K_AA_B2], tp[K_AA_A1], tp[K_AA_A2]
    u1, u2, w1, w2 = ts[T_AA_U1], ts[T_AA_U2], ts[T_AA_W1], ts[T_AA_W2]
    nr = dring.size
    for i in range(n):
        v = 0.0
        for c in range(ch):
            s = x[i, c]
            if not math.isfinite(s):
                stats[STAT_BAD] += 1.0
                s = 0.0
            elif abs(s) >= 0.999:
                stats[STAT_CLIP] += 1.0
            v += s
        v /= ch
        stats[STAT_SUM] += v
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
                dp = int(ts[T_RING_POS])
                dring[dp] = y2
                ts[T_RING_POS] = (dp + 1) % nr
                dn = 0
                ts[T_DEC_SAMPLES] += 1.0
                yin_update(dring, dp, ybuf, int(tp[K_WIN]), int(tp[K_TMAX]), ts[T_DEC_SAMPLES] % (8.0 * tp[K_WIN]) == 0.0)
        pend[npend] = v
        npend += 1
        if npend == hop:
            npend = 0
            for k in range(nf - hop):
                frame[k] = frame[k + hop]
            for k in range(hop):
                frame[nf - hop + k] = pend[k]
            rfft_mag(frame, win, re, im, rev, cos_t, sin_t, cos_n, sin_n, mag)
            last, armed, peak = st[S_LAST_ONSET], st[S_ARMED], st[S_PEAK]
            flux = detect_hop(frame, mag, lo, hi, wts, hist, odf_hist, st, params, tp)
            lring[int(st[S_HOP]) % lring.size] = st[S_REL_LEVEL] * st[S_LOUD]
            fring[int(st[S_HOP]) % fring.size] = st[S_FLATNESS]
            if n_hops < odf_out.size:
                odf_out[n_hops] = flux
            n_hops += 1
            # A quiet onset (well under the recent playing) is held back, with its time, for
            # up to tp[K_HOLD_HOPS] hops: breath before a blown note and the scrape before a bowed
            # one are quiet and are followed by the note; if the note arrives the held onset
            # was its run-up and is dropped, else it is reported as it was.
            # a held onset whose sound died away again (6 dB or more under its peak) was a
            # stroke of its own (a hat, a ghost note); breath swells on into the note
            if st[S_HELD] > 0.0 and tp[K_STROKE_DECAY] > 0.0:
                if st[S_REL_LEVEL] > st[S_HELD_PEAK]:
                    st[S_HELD_PEAK] = st[S_REL_LEVEL]
                elif st[S_REL_LEVEL] < tp[K_STROKE_DECAY] * st[S_HELD_PEAK]:
                    st[S_HELD_DECAYED] = 1.0
            quiet = st[S_REL_LEVEL] < tp[K_QUIET]
            emit = -1.0
            early = -1.0
            if st[S_ONSET] > 0.0:
                # breath and scrapes are noise: a quiet onset more tonal than that is reported at once
                hold = quiet and tp[K_HOLD_HOPS] > 0.0 and st[S_FLATNESS] >= tp[K_HOLD_FLATNESS]
                if hold:
                    if st[S_HELD] <= 0.0:
                        st[S_HELD] = st[S_HOP]
                        st[S_HELD_LEVEL] = st[S_REL_LEVEL]
                        st[S_HELD_FLATNESS] = st[S_FLATNESS]
                        st[S_HELD_PEAK] = st[S_REL_LEVEL]
                        st[S_HELD_DECAYED] = 0.0
                        # the time it will carry if it turns out to be a note
                        d = flux_onset_start(lring, fring, frame, env, tp, st[S_HOP], hop)
                        st[S_HELD_TIME] = d + tp[K_FLUX_LATENCY] if d >= 0.0 else st[S_HOP]
                    st[S_LAST_ONSET] = last
                    st[S_ARMED] = armed
                    st[S_PEAK] = peak
                else:
                    # a held quiet onset just before is this note's run-up if it was noise
                    # (breath): the note starts here, not at the bottom of the breath
                    held = st[S_HELD] > 0.0
                    stroke = held and st[S_HELD_DECAYED] != 0.0
                    run_up = held and st[S_HELD_FLATNESS] >= 0.4 and not stroke
                    emit = st[S_HOP]
                    if held and st[S_HOP] - st[S_HELD] <= tp[K_SAME_NOTE_HOPS]:
                        # so soon after the held onset, this is the same note's attack
                        # growing (a soft pluck): the held onset was the note
                        emit = st[S_HELD_TIME]
                    elif held and (st[S_HELD_FLATNESS] < tp[K_RUNUP_FLATNESS] or stroke):
                        # a tonal quiet onset well before this one was a soft note of its own
                        # (a soft piano note before a loud one), not a run-up: both are notes
                        early = st[S_HELD_TIME]
                    if emit == st[S_HOP] and not run_up:
                        d = flux_onset_start(lring, fring, frame, env, tp, st[S_HOP], hop)
                        if d >= 0.0:
                            emit = d + tp[K_FLUX_LATENCY]
                    st[S_HELD] = 0.0
            elif st[S_HELD] > 0.0:
                if st[S_REL_LEVEL] >= 2.0 * tp[K_QUIET] and st[S_GATE_OPEN] != 0.0 and st[S_REL_LEVEL] > 3.0 * st[S_HELD_LEVEL]:
                    # the note arrived (6 dB over the quiet line, 10 dB over the held onset)
                    # without an onset of its own: it starts here, unless that is so soon
                    # after the held onset that it was the note's own attack
                    emit = st[S_HOP] if st[S_HOP] - st[S_HELD] > tp[K_SAME_NOTE_HOPS] else st[S_HELD_TIME]
                    if emit == st[S_HOP] and pitched and tp[K_SWELL] != 0.0:
                        # periodic since the held onset: that onset was this tone's beginning
                        # (a slow bow or a soft voice swelling), not breath before it
                        since = st[S_HOP] - st[S_HELD] + tp[K_SAME_NOTE_HOPS]
                        v = voiced_start(pring, int(st[S_HOP]) - 1, int(since), tp[K_UNVOICED])
                        if v >= 0.0 and v - tp[K_TONAL_BACK] + tp[K_FLUX_LATENCY] <= st[S_HELD] + tp[K_SAME_NOTE_HOPS]:
                            emit = st[S_HELD_TIME]
                    if emit == st[S_HOP] and pitched:
                        # a tone swelling out of breath starts where it became periodic
                        v = voiced_start(pring, int(st[S_HOP]) - 1, int(tp[K_DIP_HOPS]), tp[K_UNVOICED])
                        if v >= 0.0:
                            emit = v - tp[K_TONAL_BACK] + tp[K_FLUX_LATENCY]
                    if emit == st[S_HOP] and st[S_HELD_FLATNESS] < 0.4:
                        d = dip_start(lring, fring, int(st[S_HOP]), int(tp[K_DIP_HOPS]), tp[K_FRAME_CENTRE])
                        if d >= 0.0:
                            emit = d + tp[K_FLUX_LATENCY]
                    st[S_HELD] = 0.0
                    st[S_LAST_ONSET] = st[S_HOP] - 1.0
                    st[S_ARMED] = 0.0
                    st[S_PEAK] = flux
                elif st[S_HOP] - st[S_HELD] >= tp[K_HOLD_HOPS]:
                    emit = st[S_HELD_TIME]
                    st[S_HELD] = 0.0
            if early >= 0.0 and abs(early - tp[K_FLUX_LATENCY] - st[S_LAST_NOTE]) >= params[P_MIN_IOI] \
                    and n_on < out_hops.size:
                out_hops[n_on] = early
                out_kind[n_on] = 0.0
                n_on += 1
                st[S_LAST_NOTE] = early - tp[K_FLUX_LATENCY]
            # one note, one onset: whichever cue reported it first keeps it
            if emit >= 0.0 and abs(emit - tp[K_FLUX_LATENCY] - st[S_LAST_NOTE]) < params[P_MIN_IOI]:
                emit = -1.0
            if emit >= 0.0 and n_on < out_hops.size:
                out_hops[n_on] = emit
                out_kind[n_on] = 0.0
                n_on += 1
                st[S_LAST_NOTE] = emit - tp[K_FLUX_LATENCY]
            if pitched:
                h = st[S_HOP]
                tonal_hop(ybuf, dprime, ts, tp, h, st[S_GATE_OPEN] != 0.0)
                k = int(h) % pring.shape[1]
                pring[0, k] = ts[T_PERIODICITY]
                pring[1, k] = ts[T_PITCH]
                if slur:
                    slur_hop(pring, lring, ts, tp, int(h), st[S_LOUD])
                for tb in (ts[T_TONAL_ONSET] if tonal else -1.0, ts[T_SLUR_ONSET] if slur else -1.0):
                    # a tonal onset, unless the flux (percussive) cue already took this note
                    if (tb >= 0.0 and tb - (st[S_LAST_ONSET] - tp[K_FLUX_LATENCY]) >= tp[K_MERGE_HOPS] and tb - st[S_LAST_PITCH_ONSET] >= params[P_MIN_IOI]
                            and abs(tb - st[S_LAST_NOTE]) >= params[P_MIN_IOI] and n_on < out_hops.size):
                        out_hops[n_on] = tb
                        out_kind[n_on] = 1.0
                        n_on += 1
                        st[S_LAST_PITCH_ONSET] = tb
                        st[S_LAST_NOTE] = tb
    hp[H_Z1] = z1
    hp[H_Z2] = z2
    ts[T_AA_U1], ts[T_AA_U2], ts[T_AA_W1], ts[T_AA_W2] = u1, u2, w1, w2
    ts[T_DEC_COUNT] = dn
    st[S_PENDING] = npend
    return n_on, n_hops


def filterbank(sr, n_fft, bands_per_octave, fmin, fmax):
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


def lowpass_coef(sr, fc):
    """2nd-order Butterworth low-pass (bilinear transform), as b0 b1 b2 a1 a2."""
    w = math.tan(math.pi * fc / sr)
    q = math.sqrt(2.0)
    n = 1.0 / (1.0 + q * w + w * w)
    b0 = w * w * n
    return np.array([b0, 2.0 * b0, b0, 2.0 * (w * w - 1.0) * n, (1.0 - q * w + w * w) * n])


def highpass_coef(sr, fc):
    """2nd-order Butterworth high-pass (bilinear transform), as b0 b1 b2 a1 a2."""
    w = math.tan(math.pi * fc / sr)
    q = math.sqrt(2.0)
    n = 1.0 / (1.0 + q * w + w * w)
    b0 = n
    return np.array([b0, -2.0 * b0, b0, 2.0 * (w * w - 1.0) * n, (1.0 - q * w + w * w) * n])



# ---------------------------------------------------------------------------------
# setting the kernel up: constants from the settings, fresh state

class Tables:
    """The kernel's constants for one (sample rate, hop, settings): window, FFT tables,
    filterbank, ``params`` and ``tp`` (see the layouts above), buffer sizes."""

    def __init__(self, sr: int, hop: int, s: dict):
        self.sr, self.hop = int(sr), int(hop)
        # the window keeps its duration whatever the sample rate
        n_fft = int(2 ** round(math.log2(max(hop, s["buf"] * sr / 48000.0))))
        self.n_fft = n_fft = max(n_fft, hop, 16)
        window = np.hanning(n_fft + 1)[:-1].astype(np.float64)
        self.window = window / (window.sum() / 2.0)   # a full-scale sine peaks near 1 in its band
        half = n_fft // 2
        bits = int(round(math.log2(half)))
        self.rev = np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(half)], np.int64)
        k_half = np.arange(half // 2 + 1) * 2.0 * np.pi / half
        k_full = np.arange(half + 1) * 2.0 * np.pi / n_fft
        tabs = np.zeros((4, half + 1))
        tabs[0, :k_half.size] = np.cos(k_half)
        tabs[1, :k_half.size] = np.sin(k_half)
        tabs[2] = np.cos(k_full)
        tabs[3] = np.sin(k_full)
        self.fft_tabs = tabs
        self.lo, self.hi, self.wts = filterbank(sr, n_fft, s["bands_per_octave"], s["fmin"], s["fmax"])
        hop_s = hop / sr

        def hops(ms):
            return max(1, int(round(ms / 1000.0 / hop_s)))

        n_avg = hops(s["avg_ms"])
        p = np.zeros(N_P)
        p[P_COMPRESSION] = s["compression"]
        p[P_THRESHOLD] = s["threshold"]
        p[P_RELEASE] = 10.0 ** (-3.0 * hop_s / max(s["release_s"], 1e-3))
        p[P_FLOOR] = 10.0 ** (s["silence_db"] / 20.0)
        p[P_LAG] = s["lag"]
        p[P_N_AVG] = n_avg
        p[P_N_MAX] = min(hops(s["max_ms"]), n_avg)
        p[P_MIN_IOI] = hops(s["min_ioi_ms"])
        p[P_N_REF] = s["ref_frames"]
        p[P_WIDTH] = s["max_bands"]
        p[P_REARM] = s["rearm"]
        p[P_GATE] = 10.0 ** (-s["gate_db"] / 20.0)
        p[P_LOUD_RELEASE] = 10.0 ** (-3.0 * hop_s / max(s["gate_release_s"], 1e-3))
        p[P_GAIN] = 10.0 ** (s["gain_db"] / 20.0)
        self.params = p
        self.odf_len = n_avg + 1
        # pitch cues: YIN on the input decimated to about 8 kHz
        dec = max(1, int(round(sr / 8000.0)))
        fs_d = sr / dec
        w = int(round(s["pitch_window_ms"] / 1000.0 * fs_d))
        tmin = max(2, int(fs_d / 1000.0))
        tmax = max(tmin + 2, int(math.ceil(fs_d / max(s["pitch_fmin"], 20.0))))
        hop_d = hop / dec
        k = np.zeros(N_K)
        k[K_FS_D], k[K_WIN], k[K_TMIN], k[K_TMAX] = fs_d, w, tmin, tmax
        k[K_YIN_THRESHOLD] = 0.15
        k[K_VOICING] = s["voicing"]
        k[K_UNVOICED] = 0.5
        k[K_UNVOICED_HOPS] = hops(20.0)
        k[K_CONFIRM_HOPS] = hops(8.0)
        k[K_SLUR_SEMITONES] = s["slur_semitones"]
        k[K_STEADY_SEMITONES] = 0.35
        # a change is seen once it fills about half the window; the hop count is the newest sample
        k[K_TONAL_BACK] = (w / 2.0 + tmin) / hop_d
        k[K_HALF_WINDOW] = w / 2.0 / hop_d
        k[K_TONAL] = 1.0 if s["tonal"] else 0.0
        k[K_DECIMATE] = dec
        k[K_MERGE_HOPS] = s["tonal_merge_ms"] / 1000.0 / hop_s
        k[K_FLUX_LATENCY] = 1.0    # set from the detector's latency by the listener
        k[K_NEW_HOPS], k[K_GAP_HOPS], k[K_OLD_HOPS] = hops(15.0), hops(25.0), hops(15.0)
        k[K_SLUR_IOI_HOPS] = hops(80.0)
        k[K_QUIET] = 10.0 ** (-s["quiet_db"] / 20.0)
        k[K_HOLD_HOPS] = s["hold_ms"] / 1000.0 / hop_s
        k[K_DIP_HOPS] = hops(s["dip_ms"])
        k[K_SAME_NOTE_HOPS] = 0.03 / hop_s
        k[K_FRAME_CENTRE] = n_fft / 2.0 / hop
        k[K_SLUR] = 1.0 if s["slur"] else 0.0
        k[K_SLUR_VOICING] = 0.7
        # anti-alias low-pass at 0.4 fs_d before decimating
        k[K_AA_B0:K_AA_A2 + 1] = lowpass_coef(sr, 0.4 * fs_d) if dec > 1 else [1.0, 0.0, 0.0, 0.0, 0.0]
        k[K_OLD_STEADY_HOPS] = hops(25.0)
        k[K_HELD_HOPS] = hops(15.0)
        k[K_RUNUP_FLATNESS] = s["runup_flatness"]
        k[K_SWELL] = 1.0 if s["tonal_swell"] else 0.0
        k[K_HOLD_FLATNESS] = s["hold_flatness"]
        # dating a flux onset by its attack (1 ms levels every 8 samples at 48 kHz); the
        # offset is calibrated (latency.json), set by the listener
        k[K_ATTACK] = 1.0 if s["attack_dating"] else 0.0
        k[K_ATTACK_WIN] = max(1, int(round(s["attack_window_ms"] / 1000.0 * sr)))
        k[K_ATTACK_STEP] = max(1, int(round(sr / 6000.0)))
        k[K_ATTACK_RISE] = 10.0 ** (s["attack_rise_db"] / 10.0)
        k[K_ATTACK_FLOOR] = 10.0 ** (s["attack_floor_db"] / 10.0)
        k[K_ATTACK_PEAK] = 10.0 ** (-s["attack_peak_db"] / 10.0)
        k[K_ATTACK_OFFSET] = 0.0
        k[K_ATTACK_BEFORE] = 10.0 ** (-s["attack_before_db"] / 10.0) if s["attack_before_db"] > 0 else 0.0
        k[K_ATTACK_SLOW] = 0.0
        k[K_ATTACK_SWELL] = 10.0 ** (s["attack_swell_db"] / 10.0) if s["attack_swell_db"] > 0 else 0.0
        k[K_STROKE_DECAY] = 10.0 ** (-s["stroke_decay_db"] / 20.0) if s["stroke_decay_db"] > 0 else 0.0
        self.tp = k
        # long enough to look back over a whole hold (a held onset that swelled into a tone)
        self.pring_len = int(2 ** math.ceil(math.log2(max(hops(15.0) * 3 + hops(25.0) * 2 + 2,
                                                          k[K_HOLD_HOPS] + k[K_SAME_NOTE_HOPS] + 2))))
        self.dring_len = int(2 ** math.ceil(math.log2(w + tmax + 2)))
        self.lring_len = int(2 ** math.ceil(math.log2(2 * k[K_DIP_HOPS] + 4)))
        self.hp = np.zeros(8)
        if s["highpass_hz"] > 0:
            self.hp[H_B0:H_A2 + 1] = highpass_coef(sr, s["highpass_hz"])
            self.hp[H_ON] = 1.0
        self.hist_len = s["lag"] + s["ref_frames"]
        self.player = 10.0 ** (s["player_db"] / 20.0)


class State:
    """Everything the kernel remembers between blocks (fresh = nothing heard)."""

    def __init__(self, t: Tables):
        half = t.n_fft // 2
        self.hp = t.hp.copy()          # coefficients and the filter's state
        self.pend = np.zeros(t.hop)
        self.frame = np.zeros(t.n_fft)
        self.re = np.zeros(half)
        self.im = np.zeros(half)
        self.mag = np.zeros(half + 1)
        self.hist = np.zeros((t.hist_len, t.lo.size))
        self.odf_hist = np.zeros(t.odf_len)
        self.st = np.zeros(N_ST)
        self.st[S_LAST_ONSET] = -1e9
        self.st[S_LAST_PITCH_ONSET] = -1e9
        self.st[S_LAST_NOTE] = -1e9
        self.st[S_ARMED] = 1.0
        # the playing level the relative gate and the hold start from: the sound check's
        # measurement, else a working input level; real playing takes over at once
        self.st[S_LOUD] = t.player
        self.ts = np.zeros(N_TS)
        self.ts[T_LAST_SLUR] = -1e9
        self.ts[T_SLUR_ONSET] = -1.0
        self.dring = np.zeros(t.dring_len)
        self.ybuf = np.zeros(int(t.tp[K_TMAX]) + 2)
        self.dprime = np.zeros(int(t.tp[K_TMAX]) + 2)
        self.lring = np.zeros(t.lring_len)
        self.fring = np.zeros(t.lring_len)
        self.pring = np.zeros((3, t.pring_len))
        self.env = np.zeros(t.n_fft // max(1, int(t.tp[K_ATTACK_STEP])) + 2)
        self.stats = np.zeros(3)
        self.out_hops = np.zeros(64)
        self.out_kind = np.zeros(64)

    @property
    def pending(self) -> int:
        """Samples waiting for the next full hop."""
        return int(self.st[S_PENDING])

    def run(self, t: Tables, x: np.ndarray, odf_out: np.ndarray):
        """One :func:`process_block` call on ``x`` (n, channels) float32; returns
        (number of onsets, number of hops); onsets in ``out_hops``/``out_kind``."""
        max_hops = (x.shape[0] + self.pending) // t.hop + 1
        if self.out_hops.size < 2 * max_hops:
            self.out_hops = np.zeros(2 * max_hops)
            self.out_kind = np.zeros(2 * max_hops)
        self.stats[:] = 0.0
        return process_block(x, self.st, self.stats, t.params, self.hp, self.pend, self.frame, t.window,
                             t.fft_tabs, t.rev, self.re, self.im, self.mag, t.lo, t.hi, t.wts, self.hist,
                             self.odf_hist, self.out_hops, odf_out, self.ts, t.tp, self.dring, self.ybuf,
                             self.dprime, self.out_kind, self.lring, self.fring, self.pring, self.env)
