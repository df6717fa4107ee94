"""The supertonic voice: Microtonic-style drum synthesis in numba.

A voice is two float64 rows: ``coef`` (everything derived from the patch and
the velocity, computed once at trigger time by :func:`voice_setup`) and
``state`` (oscillator phase, filter memories, envelope positions, noise
generator).  :func:`voice_process` advances one voice by a block and *adds* it
into a stereo buffer; :func:`process_bank` runs a whole bank of voices for the
live engine in one call.  Nothing here allocates, so the same kernels serve
the offline renderer and the audio callback.

Only the branches a patch uses are computed: the oscillator is skipped when
the mix curve gives it no weight, the second noise channel when ``nStereo`` is
off (then the whole chain runs once, mono), and each modulation mode only runs
its own code.

Examples
--------
>>> import numpy as np
>>> from rolypoly.synth.voice import N_COEF, N_STATE, voice_setup, voice_process
>>> params = np.array([...])          # 22 values in PARAM_NAMES order  # doctest: +SKIP
>>> c, s = np.zeros(N_COEF), np.zeros(N_STATE)
>>> n = voice_setup(params, 100.0, 48000.0, 1, c, s)                       # doctest: +SKIP
>>> out = np.zeros((n, 2), np.float32); voice_process(c, s, out, 0, n)    # doctest: +SKIP
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# The patch parameters, in the order of the float64 vector the kernels take.
PARAM_NAMES = (
    "oscWave", "oscFreq", "oscAtk", "oscDcy", "modMode", "modRate", "modAmt",
    "nFilMod", "nFilFrq", "nFilQ", "nStereo", "nEnvMod", "nEnvAtk", "nEnvDcy",
    "mix", "distAmt", "eQFreq", "eQGain", "level", "oscVel", "nVel", "modVel",
)
N_PARAMS = len(PARAM_NAMES)
(P_WAVE, P_OFREQ, P_OATK, P_ODCY, P_MODMODE, P_MODRATE, P_MODAMT, P_NFILMOD, P_NFILFRQ,
 P_NFILQ, P_NSTEREO, P_NENVMOD, P_NENVATK, P_NENVDCY, P_MIX, P_DIST, P_EQFREQ, P_EQGAIN,
 P_LEVEL, P_OSCVEL, P_NVEL, P_MODVEL) = range(N_PARAMS)

# ---- coefficient layout -------------------------------------------------------------
(C_USE_OSC, C_USE_NOISE, C_STEREO, C_WAVE, C_F0, C_OSC_REPL, C_MODMODE, C_PM_K, C_PM_B,
 C_PM_COS, C_PM_SIN, C_HOLD, C_LAG, C_OSC_GAIN,
 C_RL_B0, C_RL_B1, C_RL_B2, C_RL_A1, C_RL_A2,          # n2 low-pass replacing the osc
 C_NF_B0, C_NF_B1, C_NF_B2, C_NF_A1, C_NF_A2,          # noise filter
 C_BL_A, C_BL_B, C_BL_COS, C_BL_SIN,                   # high-Q sine blend
 C_NENVMOD, C_NOISE_GAIN, C_CLAP_DEC, C_CLAP_PERIOD, C_CLAP_GATE,
 C_W_NOISE, C_W_OSC, C_DIST_G,
 C_EQ_B0, C_EQ_B1, C_EQ_B2, C_EQ_A1, C_EQ_A2,
 C_HP_B0, C_HP_B1, C_HP_B2, C_HP_A1, C_HP_A2,
 C_OUT_L, C_OUT_R, C_LENGTH) = range(49)
# two 3-segment envelopes: (start, end, samples, linear?) per segment
C_ENVO = 49
C_ENVN = C_ENVO + 12
C_NLP_A = C_ENVN + 12     # one-pole low-pass after the noise soft clip
C_NLP_B = C_NLP_A + 1
N_COEF = C_NLP_B + 1

# ---- state layout --------------------------------------------------------------------
(S_PHASE, S_PM, S_PM_S, S_PM_C, S_HOLD_CNT, S_HOLD_VAL, S_LAG_Y, S_RL_Z1, S_RL_Z2,
 S_NL_Z1, S_NL_Z2, S_NR_Z1, S_NR_Z2, S_BL_S, S_BL_C,
 S_CLAP_Y, S_CLAP_CNT, S_CLAP_GATE,
 S_EQL_Z1, S_EQL_Z2, S_EQR_Z1, S_EQR_Z2, S_HPL_Z1, S_HPL_Z2, S_HPR_Z1, S_HPR_Z2,
 S_RNG, S_POS, S_DELAY, S_FADE, S_FADE_STEP, S_FADE_DELAY, S_FADING, S_NLP_L, S_NLP_R, S_NX_L, S_NX_R) = range(37)
S_ENVO = 37        # level, segment, remaining, step
S_ENVN = S_ENVO + 4
N_STATE = S_ENVN + 4

LN001 = math.log(0.001)
# The original engine's noise is darker than white: against the reference renders its
# spectrum follows a one-pole (bilinear) low-pass at about 3.8 kHz applied after the noise
# stage's soft clip (placing it before the clip under-saturates bright hats).  Fitted on the
# original's reference renders (median distance 5.3 -> 2.0 dB).
NOISE_LP_HZ = 3800.0
TWO_PI = 2.0 * math.pi


# ---- small pieces (inlined by numba) ---------------------------------------------------
@njit(cache=True, inline="always", nogil=True, error_model="numpy")
def _softclip(x):
    # SuperCollider's softclip: linear up to 0.5, then (|x| - 0.25) / x
    ax = abs(x)
    if ax <= 0.5:
        return x
    return (ax - 0.25) / x


@njit(cache=True, inline="always", nogil=True, error_model="numpy")
def _fast_sin(x):
    # sin to ~1e-7: range-reduce to [-pi/2, pi/2], then a degree-11 odd Taylor polynomial;
    # a few times cheaper than libm's sin in the per-sample loops
    x -= TWO_PI * math.floor(x * (1.0 / TWO_PI) + 0.5)
    if x > 0.5 * math.pi:
        x = math.pi - x
    elif x < -0.5 * math.pi:
        x = -math.pi - x
    x2 = x * x
    return x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (
        1.0 / 362880.0 - x2 * (1.0 / 39916800.0))))))


@njit(cache=True, inline="always", nogil=True, error_model="numpy")
def _fast_exp(x):
    # e^x for |x| < ~700 to ~2e-7 relative: 2^k times a degree-6 polynomial of the fraction
    y = x * 1.4426950408889634
    k = math.floor(y)
    f = (y - k) * 0.6931471805599453
    poly = 1.0 + f * (1.0 + f * (0.5 + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (
        1.0 / 120.0 + f * (1.0 / 720.0))))))
    return math.ldexp(poly, int(k))


@njit(cache=True, inline="always", nogil=True, error_model="numpy")
def _xfade(a, b, w):
    return a * math.cos(0.5 * math.pi * w) + b * math.sin(0.5 * math.pi * w)


@njit(cache=True, inline="always", nogil=True, error_model="numpy")
def _rng_next(x):
    # xorshift32 held in an int64; returns (new state, uniform in [-1, 1))
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x, x * (2.0 / 4294967296.0) - 1.0


@njit(cache=True, inline="always", nogil=True, error_model="numpy")
def _noise(u):
    # clip(100 * U(-1, 1), -1, 1): nearly binary noise
    y = 100.0 * u
    if y > 1.0:
        return 1.0
    if y < -1.0:
        return -1.0
    return y


@njit(cache=True, nogil=True, error_model="numpy")
def _rbj(kind, freq, alpha_q, gain_db, sr, c, at):
    """RBJ-cookbook biquad into ``c[at:at+5]`` (b0, b1, b2, a1, a2, normalised).

    kind 0 low-pass, 1 band-pass (0 dB peak; ``alpha_q`` is the bandwidth in octaves),
    2 high-pass, 3 peaking (``alpha_q`` is 1/Q).  For 0 and 2 ``alpha_q`` is 1/Q.
    """
    f = min(max(freq, 1.0), 0.49 * sr)
    w0 = TWO_PI * f / sr
    cw, sw = math.cos(w0), math.sin(w0)
    if kind == 1:
        alpha = sw * math.sinh(0.5 * math.log(2.0) * alpha_q * w0 / sw)
    else:
        alpha = 0.5 * sw * alpha_q
    if kind == 0:
        b0, b1, b2 = (1 - cw) / 2, 1 - cw, (1 - cw) / 2
        a0, a1, a2 = 1 + alpha, -2 * cw, 1 - alpha
    elif kind == 1:
        b0, b1, b2 = alpha, 0.0, -alpha
        a0, a1, a2 = 1 + alpha, -2 * cw, 1 - alpha
    elif kind == 2:
        b0, b1, b2 = (1 + cw) / 2, -(1 + cw), (1 + cw) / 2
        a0, a1, a2 = 1 + alpha, -2 * cw, 1 - alpha
    else:
        a = 10.0 ** (gain_db / 40.0)
        b0, b1, b2 = 1 + alpha * a, -2 * cw, 1 - alpha * a
        a0, a1, a2 = 1 + alpha / a, -2 * cw, 1 - alpha / a
    c[at] = b0 / a0
    c[at + 1] = b1 / a0
    c[at + 2] = b2 / a0
    c[at + 3] = a1 / a0
    c[at + 4] = a2 / a0


@njit(cache=True, nogil=True, error_model="numpy")
def _env_set(c, at, seg, start, end, seconds, linear, sr):
    base = at + 4 * seg
    c[base] = start
    c[base + 1] = end
    c[base + 2] = float(max(0, int(round(seconds * sr))))
    c[base + 3] = 1.0 if linear else 0.0


@njit(cache=True, inline="always", nogil=True, error_model="numpy")
def _env_enter(c, cat, seg):
    """Start segment ``seg`` (skipping empty ones): returns (level, seg, remaining, step)."""
    while seg < 3:
        base = cat + 4 * seg
        n = c[base + 2]
        if n > 0:
            a, b = c[base], c[base + 1]
            if c[base + 3] > 0.5:
                return a, float(seg), n, (b - a) / n
            return a, float(seg), n, (b / a) ** (1.0 / n)
        seg += 1
    return 0.0, 3.0, 0.0, 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def _env_length(c, cat):
    return c[cat + 2] + c[cat + 6] + c[cat + 10]


@njit(cache=True, nogil=True, error_model="numpy")
def voice_setup(p, vel, sr, seed, c, s):
    """Derive coefficients ``c`` and a fresh state ``s`` for patch ``p`` at velocity ``vel``.

    Returns the voice's natural length in samples (its governing envelopes' end).
    """
    c[:] = 0.0
    s[:] = 0.0
    v = vel / 64.0
    mix = p[P_MIX]
    m = 100.0 / (1.0 + math.exp((50.0 - mix) / 8.0))
    w = m / 50.0
    if w <= 1.0:
        w_noise = 0.5 * math.cos(0.5 * math.pi * w) + 2.0 * math.sin(0.5 * math.pi * w)
        w_osc = 0.0
    else:
        w_noise = 2.0 * math.cos(0.5 * math.pi * (w - 1.0))
        w_osc = math.sin(0.5 * math.pi * (w - 1.0))
    osc_gain = (1.0 - p[P_OSCVEL] / 200.0) * v
    noise_gain = 0.7071 * (1.0 - p[P_NVEL] / 200.0) * v
    use_osc = w_osc > 1e-9 and osc_gain != 0.0
    use_noise = w_noise > 1e-9 and noise_gain != 0.0
    c[C_USE_OSC] = 1.0 if use_osc else 0.0
    c[C_USE_NOISE] = 1.0 if use_noise else 0.0
    c[C_STEREO] = 1.0 if (p[P_NSTEREO] > 0.5 and use_noise) else 0.0
    c[C_W_NOISE] = w_noise
    c[C_W_OSC] = w_osc
    c[C_OSC_GAIN] = osc_gain
    c[C_NOISE_GAIN] = noise_gain
    d = p[P_DIST] / 100.0
    dec = _xfade(0.05, 0.3 * d, d)

    # oscillator and pitch modulation
    t_oa, t_od = p[P_OATK] / 1000.0, p[P_ODCY] / 1000.0
    c[C_WAVE] = p[P_WAVE]
    c[C_F0] = (p[P_OFREQ] + 5.0) / sr
    mode = int(p[P_MODMODE])
    rate = p[P_MODRATE]
    c[C_MODMODE] = mode
    semis = p[P_MODAMT] / 2.0 * (2.0 - p[P_MODVEL] / 100.0) * v
    c[C_PM_K] = semis * math.log(2.0) / 12.0
    if mode == 0:
        if rate > 0.0:
            b = math.exp(LN001 / (sr / (2.0 * rate)))
            s[S_PM] = 1.0 + b
        else:
            b = 1.0
            s[S_PM] = 1.0
        c[C_PM_B] = b
    elif mode == 1:
        c[C_PM_COS] = math.cos(TWO_PI * rate / sr)
        c[C_PM_SIN] = math.sin(TWO_PI * rate / sr)
        s[S_PM_C] = 1.0
    else:
        r = max(rate, 1e-3)
        c[C_HOLD] = sr / (4.0 * r)
        c[C_LAG] = math.exp(LN001 / (sr / (4.0 * r)))
        if t_od >= 0.1:
            c[C_OSC_REPL] = 1.0
            _rbj(0, r, math.sqrt(2.0), 0.0, sr, c, C_RL_B0)
    _env_set(c, C_ENVO, 0, 1e-4, 1.0, t_oa, False, sr)
    _env_set(c, C_ENVO, 1, 1.0, 0.9, t_od * dec, False, sr)
    _env_set(c, C_ENVO, 2, 0.9, 1e-4, t_od, False, sr)

    # noise: filter, high-Q sine blend, envelope
    fmode = int(p[P_NFILMOD])
    q = max(p[P_NFILQ], 1e-6)
    if fmode == 1:
        _rbj(1, p[P_NFILFRQ], min(max(2.0 / q, 0.1), 6.0), 0.0, sr, c, C_NF_B0)
    else:
        _rbj(0 if fmode == 0 else 2, p[P_NFILFRQ], min(max(1.0 / q, 0.5), 3.0), 0.0, sr, c, C_NF_B0)
    bw = min(max(0.1092 * math.log(q) + 0.0343, 0.0), 1.0)
    c[C_BL_A] = math.cos(0.5 * math.pi * bw)
    c[C_BL_B] = math.sin(0.5 * math.pi * bw)
    fb = min(p[P_NFILFRQ], 0.5 * sr)
    c[C_BL_COS] = math.cos(TWO_PI * fb / sr)
    c[C_BL_SIN] = math.sin(TWO_PI * fb / sr)
    s[S_BL_C] = 1.0
    k = math.tan(math.pi * min(NOISE_LP_HZ, 0.45 * sr) / sr)
    c[C_NLP_A] = k / (1.0 + k)
    c[C_NLP_B] = (1.0 - k) / (1.0 + k)
    t_na, t_nd = p[P_NENVATK] / 1000.0, 1.4 * p[P_NENVDCY] / 1000.0
    emode = int(p[P_NENVMOD])
    c[C_NENVMOD] = emode
    if emode == 0:
        _env_set(c, C_ENVN, 0, 0.001, 1.0, t_na, False, sr)
        _env_set(c, C_ENVN, 1, 1.0, 1e-4, t_nd, False, sr)
    elif emode == 1:
        _env_set(c, C_ENVN, 0, 1e-4, 1.0, t_na, True, sr)
        _env_set(c, C_ENVN, 1, 1.0, 0.9, t_nd * dec, True, sr)
        _env_set(c, C_ENVN, 2, 0.9, 1e-4, t_nd * (1.0 - dec), True, sr)
    else:
        fclap = 4311.0 / (p[P_NENVATK] + 28.4) + 11.44
        c[C_CLAP_PERIOD] = sr / fclap
        c[C_CLAP_DEC] = math.exp(LN001 / (sr / fclap))
        c[C_CLAP_GATE] = float(int(round((t_na + 0.001) * sr)))
        _env_set(c, C_ENVN, 0, 0.001, 0.001, t_na, False, sr)
        _env_set(c, C_ENVN, 1, 0.001, 1.0, 0.001, False, sr)
        _env_set(c, C_ENVN, 2, 1.0, 1e-4, t_nd, False, sr)
        s[S_CLAP_GATE] = c[C_CLAP_GATE]

    # output chain
    c[C_DIST_G] = 1.0 + 10.0 / (1.0 + math.exp((50.0 - p[P_DIST]) / 8.0))
    _rbj(3, p[P_EQFREQ], 1.0, p[P_EQGAIN] / 2.0, sr, c, C_EQ_B0)
    _rbj(2, 20.0, math.sqrt(2.0), 0.0, sr, c, C_HP_B0)
    lev = p[P_LEVEL]
    g = 0.0 if lev < -200.0 else 10.0 ** (lev / 20.0) * 0.2
    c[C_OUT_L] = g
    c[C_OUT_R] = g

    n_osc = _env_length(c, C_ENVO) if use_osc else 0.0
    n_noise = _env_length(c, C_ENVN) if use_noise else 0.0
    length = max(n_osc, n_noise, 1.0)
    c[C_LENGTH] = length

    lo, seg, rem, step = _env_enter(c, C_ENVO, 0)
    s[S_ENVO], s[S_ENVO + 1], s[S_ENVO + 2], s[S_ENVO + 3] = lo, seg, rem, step
    lo, seg, rem, step = _env_enter(c, C_ENVN, 0)
    s[S_ENVN], s[S_ENVN + 1], s[S_ENVN + 2], s[S_ENVN + 3] = lo, seg, rem, step
    s[S_RNG] = float((seed * 2654435761 + 12345) % 4294967295 + 1)
    s[S_FADE] = 1.0
    return int(length)


@njit(cache=True, inline="always", nogil=True, error_model="numpy")
def _env_tick(c, cat, level, seg, rem, step):
    """Advance an envelope one sample: returns the value to use now and the new state."""
    out = level
    if seg >= 3.0:
        return 0.0, level, seg, rem, step
    if c[cat + 4 * int(seg) + 3] > 0.5:
        level += step
    else:
        level *= step
    rem -= 1.0
    if rem <= 0.0:
        level, seg, rem, step = _env_enter(c, cat, int(seg) + 1)
    return out, level, seg, rem, step


@njit(cache=True, fastmath=True, nogil=True, error_model="numpy")
def voice_process(c, s, out, start, stop):
    """Add one voice into ``out[start:stop]`` (shape (n, 2)); returns True when it has ended."""
    use_osc = c[C_USE_OSC] > 0.5
    use_noise = c[C_USE_NOISE] > 0.5
    stereo = c[C_STEREO] > 0.5
    wave = int(c[C_WAVE])
    repl = c[C_OSC_REPL] > 0.5
    mode = int(c[C_MODMODE])
    emode = int(c[C_NENVMOD])
    f0, pm_k, pm_b = c[C_F0], c[C_PM_K], c[C_PM_B]
    pm_cos, pm_sin, hold, lag = c[C_PM_COS], c[C_PM_SIN], c[C_HOLD], c[C_LAG]
    osc_gain, noise_gain = c[C_OSC_GAIN], c[C_NOISE_GAIN]
    rb0, rb1, rb2, ra1, ra2 = c[C_RL_B0], c[C_RL_B1], c[C_RL_B2], c[C_RL_A1], c[C_RL_A2]
    nb0, nb1, nb2, na1, na2 = c[C_NF_B0], c[C_NF_B1], c[C_NF_B2], c[C_NF_A1], c[C_NF_A2]
    bla, blb, blcos, blsin = c[C_BL_A], c[C_BL_B], c[C_BL_COS], c[C_BL_SIN]
    lpa, lpb = c[C_NLP_A], c[C_NLP_B]
    lpl, lpr, nxl, nxr = s[S_NLP_L], s[S_NLP_R], s[S_NX_L], s[S_NX_R]
    clap_dec, clap_period = c[C_CLAP_DEC], c[C_CLAP_PERIOD]
    wn, wo, dg = c[C_W_NOISE], c[C_W_OSC], c[C_DIST_G]
    eb0, eb1, eb2, ea1, ea2 = c[C_EQ_B0], c[C_EQ_B1], c[C_EQ_B2], c[C_EQ_A1], c[C_EQ_A2]
    hb0, hb1, hb2, ha1, ha2 = c[C_HP_B0], c[C_HP_B1], c[C_HP_B2], c[C_HP_A1], c[C_HP_A2]
    gl, gr = c[C_OUT_L], c[C_OUT_R]
    length = c[C_LENGTH]

    phase, pm, pm_s, pm_c = s[S_PHASE], s[S_PM], s[S_PM_S], s[S_PM_C]
    hold_cnt, hold_val, lag_y = s[S_HOLD_CNT], s[S_HOLD_VAL], s[S_LAG_Y]
    rz1, rz2 = s[S_RL_Z1], s[S_RL_Z2]
    nl1, nl2, nr1, nr2 = s[S_NL_Z1], s[S_NL_Z2], s[S_NR_Z1], s[S_NR_Z2]
    bls, blc = s[S_BL_S], s[S_BL_C]
    clap_y, clap_cnt, clap_gate = s[S_CLAP_Y], s[S_CLAP_CNT], s[S_CLAP_GATE]
    el1, el2, er1, er2 = s[S_EQL_Z1], s[S_EQL_Z2], s[S_EQR_Z1], s[S_EQR_Z2]
    hl1, hl2, hr1, hr2 = s[S_HPL_Z1], s[S_HPL_Z2], s[S_HPR_Z1], s[S_HPR_Z2]
    rng = int(s[S_RNG])
    pos = s[S_POS]
    fade, fade_step, fade_delay, fading = s[S_FADE], s[S_FADE_STEP], s[S_FADE_DELAY], s[S_FADING] > 0.5
    eo_l, eo_seg, eo_rem, eo_step = s[S_ENVO], s[S_ENVO + 1], s[S_ENVO + 2], s[S_ENVO + 3]
    en_l, en_seg, en_rem, en_step = s[S_ENVN], s[S_ENVN + 1], s[S_ENVN + 2], s[S_ENVN + 3]

    done = False
    for i in range(start, stop):
        osc = 0.0
        if use_osc and eo_seg < 3.0:      # nothing to compute once the osc envelope has ended
            if repl:
                rng, u = _rng_next(rng)
                x = _noise(u)
                y = rb0 * x + rz1
                rz1 = rb1 * x - ra1 * y + rz2
                rz2 = rb2 * x - ra2 * y
                raw = y
            else:
                if mode == 0:
                    p = pm
                    pm *= pm_b
                elif mode == 1:
                    p = -pm_s
                    ns = pm_s * pm_cos + pm_c * pm_sin
                    pm_c = pm_c * pm_cos - pm_s * pm_sin
                    pm_s = ns
                else:
                    if hold_cnt <= 0.0:
                        rng, u = _rng_next(rng)
                        if pos == 0.0:
                            lag_y = u
                        hold_val = u
                        hold_cnt += hold
                    hold_cnt -= 1.0
                    lag_y = hold_val + lag * (lag_y - hold_val)
                    p = lag_y
                dt = f0 * _fast_exp(p * pm_k)
                # advance first so the very first sample of a hit is already non-zero
                phase += dt
                if phase >= 1.0:
                    phase -= math.floor(phase)
                if wave == 0:
                    raw = -_fast_sin(TWO_PI * (phase - 0.5))
                elif wave == 1:
                    if phase < 0.25:
                        raw = 2.0 * phase
                    elif phase < 0.75:
                        raw = 1.0 - 2.0 * phase
                    else:
                        raw = 2.0 * phase - 2.0
                else:
                    # polyBLEP saw, peak +-0.25
                    sw = 2.0 * phase - 1.0
                    if dt < 0.5:
                        if phase < dt:
                            t = phase / dt
                            sw -= t + t - t * t - 1.0
                        elif phase > 1.0 - dt:
                            t = (phase - 1.0) / dt
                            sw -= t * t + t + t + 1.0
                    raw = 0.25 * sw
            eo, eo_l, eo_seg, eo_rem, eo_step = _env_tick(c, C_ENVO, eo_l, eo_seg, eo_rem, eo_step)
            osc = _softclip(raw * eo * osc_gain)
        nl = 0.0
        nr = 0.0
        if use_noise and (en_seg < 3.0 or clap_gate > 0.0):
            if emode == 2:
                env = 0.0
                if clap_gate > 0.0:
                    if clap_cnt <= 0.0:
                        clap_y += 1.0
                        clap_cnt += clap_period
                    clap_cnt -= 1.0
                    env = clap_y * 0.85 + 0.15
                    clap_y *= clap_dec
                    clap_gate -= 1.0
                en, en_l, en_seg, en_rem, en_step = _env_tick(c, C_ENVN, en_l, en_seg, en_rem, en_step)
                env += en
            else:
                env, en_l, en_seg, en_rem, en_step = _env_tick(c, C_ENVN, en_l, en_seg, en_rem, en_step)
            sine = bls
            nsn = bls * blcos + blc * blsin
            blc = blc * blcos - bls * blsin
            bls = nsn
            g = env * noise_gain
            rng, u = _rng_next(rng)
            x = _noise(u)
            y = nb0 * x + nl1
            nl1 = nb1 * x - na1 * y + nl2
            nl2 = nb2 * x - na2 * y
            x = _softclip((bla * y + blb * sine) * g)
            lpl = lpa * (x + nxl) + lpb * lpl
            nxl = x
            nl = lpl
            if stereo:
                rng, u = _rng_next(rng)
                x = _noise(u)
                y = nb0 * x + nr1
                nr1 = nb1 * x - na1 * y + nr2
                nr2 = nb2 * x - na2 * y
                x = _softclip((bla * y + blb * sine) * g)
                lpr = lpa * (x + nxr) + lpb * lpr
                nxr = x
                nr = lpr
        # mix, distortion, EQ, high-pass
        sl = _softclip(dg * _fast_sin(wn * nl + wo * osc))
        y = eb0 * sl + el1
        el1 = eb1 * sl - ea1 * y + el2
        el2 = eb2 * sl - ea2 * y
        sl = y
        y = hb0 * sl + hl1
        hl1 = hb1 * sl - ha1 * y + hl2
        hl2 = hb2 * sl - ha2 * y
        sl = y
        if stereo:
            sr_ = _softclip(dg * _fast_sin(wn * nr + wo * osc))
            y = eb0 * sr_ + er1
            er1 = eb1 * sr_ - ea1 * y + er2
            er2 = eb2 * sr_ - ea2 * y
            sr_ = y
            y = hb0 * sr_ + hr1
            hr1 = hb1 * sr_ - ha1 * y + hr2
            hr2 = hb2 * sr_ - ha2 * y
            sr_ = y
        else:
            sr_ = sl
        if fading:
            if fade_delay > 0.0:
                fade_delay -= 1.0
            else:
                fade -= fade_step
                if fade <= 0.0:
                    fade = 0.0
                    done = True
            out[i, 0] += sl * gl * fade
            out[i, 1] += sr_ * gr * fade
        else:
            out[i, 0] += sl * gl
            out[i, 1] += sr_ * gr
        pos += 1.0
        if pos >= length:
            done = True
        if done:
            break

    s[S_PHASE], s[S_PM], s[S_PM_S], s[S_PM_C] = phase, pm, pm_s, pm_c
    s[S_HOLD_CNT], s[S_HOLD_VAL], s[S_LAG_Y] = hold_cnt, hold_val, lag_y
    s[S_RL_Z1], s[S_RL_Z2] = rz1, rz2
    s[S_NL_Z1], s[S_NL_Z2], s[S_NR_Z1], s[S_NR_Z2] = nl1, nl2, nr1, nr2
    s[S_BL_S], s[S_BL_C] = bls, blc
    s[S_CLAP_Y], s[S_CLAP_CNT], s[S_CLAP_GATE] = clap_y, clap_cnt, clap_gate
    s[S_EQL_Z1], s[S_EQL_Z2], s[S_EQR_Z1], s[S_EQR_Z2] = el1, el2, er1, er2
    s[S_HPL_Z1], s[S_HPL_Z2], s[S_HPR_Z1], s[S_HPR_Z2] = hl1, hl2, hr1, hr2
    s[S_RNG] = float(rng)
    s[S_NLP_L], s[S_NLP_R], s[S_NX_L], s[S_NX_R] = lpl, lpr, nxl, nxr
    s[S_POS] = pos
    s[S_FADE] = fade
    s[S_FADE_DELAY] = fade_delay
    s[S_ENVO], s[S_ENVO + 1], s[S_ENVO + 2], s[S_ENVO + 3] = eo_l, eo_seg, eo_rem, eo_step
    s[S_ENVN], s[S_ENVN + 1], s[S_ENVN + 2], s[S_ENVN + 3] = en_l, en_seg, en_rem, en_step
    return done


@njit(cache=True, fastmath=True, nogil=True, error_model="numpy")
def output_stage(out, start, stop):
    """Make a mix safe in place: NaN/inf to 0, transparent below 0.9, soft knee to +-1 above."""
    for i in range(start, stop):
        for ch in range(2):
            x = out[i, ch]
            if not math.isfinite(x):
                out[i, ch] = 0.0
                continue
            ax = abs(x)
            if ax > 0.9:
                y = 0.9 + 0.1 * math.tanh((ax - 0.9) / 0.1)
                out[i, ch] = y if x > 0 else -y


@njit(cache=True, nogil=True, error_model="numpy")
def process_bank(coefs, states, active, out):
    """Fill ``out`` (block, 2) with every active voice of a bank; ends finished voices.

    ``active[v]`` is 1 for a sounding voice; a voice whose ``S_DELAY`` is non-zero
    starts that many samples into the block (a hit inside the block).
    """
    n = out.shape[0]
    for i in range(n):
        out[i, 0] = 0.0
        out[i, 1] = 0.0
    for v in range(coefs.shape[0]):
        if active[v] == 0:
            continue
        st = states[v]
        start = int(st[S_DELAY])
        if start >= n:
            st[S_DELAY] = start - n
            continue
        st[S_DELAY] = 0.0
        if voice_process(coefs[v], st, out, start, n):
            active[v] = 0
    output_stage(out, 0, n)


@njit(cache=True, nogil=True, error_model="numpy")
def start_fade(states, v, delay, samples):
    """Fade voice ``v`` to silence over ``samples``, beginning ``delay`` samples into the block."""
    st = states[v]
    if st[S_FADING] > 0.5:
        return
    st[S_FADING] = 1.0
    st[S_FADE_DELAY] = max(float(delay) - st[S_DELAY], 0.0)
    st[S_FADE_STEP] = 1.0 / max(float(samples), 1.0)


def render_voice(params: np.ndarray, vel: float, sr: float = 48000.0, seed: int = 1,
                 pan_gains: tuple[float, float] = (1.0, 1.0), length: int | None = None) -> np.ndarray:
    """Render one voice at its natural length (or ``length`` samples) as (n, 2) float32.

    Examples
    --------
    >>> from rolypoly.synth.patch import Patch
    >>> x = render_voice(Patch().to_array(), 100)
    >>> x.shape[1]
    2
    """
    c = np.zeros(N_COEF)
    s = np.zeros(N_STATE)
    n = voice_setup(np.asarray(params, np.float64), float(vel), float(sr), int(seed), c, s)
    c[C_OUT_L] *= pan_gains[0]
    c[C_OUT_R] *= pan_gains[1]
    out = np.zeros((n if length is None else int(length), 2), np.float32)
    voice_process(c, s, out, 0, min(n, out.shape[0]))
    output_stage(out, 0, out.shape[0])
    return out
