"""Calibration: the default detector's latency (stored), and the sound check.

The listener reports an onset at the time the note began, not when it noticed it: the
detection time less the detector's latency.  The latency depends on the analysis
structure (sample rate, hop, window, spectral lag), not on the player, so it is a
stored property of the detector: :data:`LATENCY_FILE` holds the value for the common
structures, and any other is measured once per process.

Measuring: the median delay on synthetic notes made here (:func:`test_notes`: plucked
tones, tones with a 10 ms attack, noise bursts, at known onsets and several levels),
plus the *attack offset*: how much later real instruments become detectable than these
notes, measured once on the development corpus (:mod:`rolypoly.ears.corpus`, whose
truth is each note's first audible sample) at the default structure and stored with the
table.  :func:`calibrate` re-measures and rewrites it.

Most flux onsets are dated by their own attack instead (the listener's ``attack_dating``);
its two constants (the shift added to an attack-dated onset, the extra latency of a slow
swell with no clear attack) are fitted on the corpus and the virtual plucks by
:func:`attack_dating_fit` and stored in the same file (:func:`calibrate_attack_dating`
refits only them).

The sound check (:func:`soundcheck`) calibrates to the player: a few seconds of playing
choose the input trim, the player's level, the silence floor and the threshold.

Examples
--------
>>> from rolypoly.ears.calibration import latency_s
>>> 0.0 < latency_s(48000, 128, 1024, 4, 3) < 0.02
True
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rolypoly.errors import AudioError, ConfigError

LATENCY_FILE = Path(__file__).with_name("latency.json")
TRIM_OVER_PLAYER_DB = 10.0   # the sound check trims a quiet player up to player_db + this (-20 dBFS RMS)
QUIET_PLAYER_DB = 10.0       # ... a player more than this under player_db (louder ones are left alone)
_MEASURED: dict = {}


def key(sr: int, hop: int, n_fft: int, lag: int, ref_frames: int) -> str:
    """The table key of one analysis structure."""
    return f"sr={int(sr)} hop={int(hop)} n_fft={int(n_fft)} lag={int(lag)} ref={int(ref_frames)}"


def _stored() -> dict:
    if "_file" not in _MEASURED:
        try:
            _MEASURED["_file"] = json.loads(LATENCY_FILE.read_text())
        except (OSError, ValueError):
            _MEASURED["_file"] = {}
    return _MEASURED["_file"]


def _table() -> dict:
    return _stored().get("latency_ms", {})


def attack_offset_s() -> float:
    """How much later real instruments are detected than :func:`test_notes` (stored)."""
    return float(_stored().get("attack_offset_ms", 0.0)) / 1000.0


def attack_dating_s() -> tuple[float, float]:
    """(offset, slow) in s, stored: the constant added to a flux onset dated by its own
    attack, and the latency added to one with no clear attack (0 when not stored)."""
    d = _stored().get("attack_dating_ms", {})
    return float(d.get("offset", 0.0)) / 1000.0, float(d.get("slow", 0.0)) / 1000.0


def test_notes(sr: int, seconds: float = 12.0, seed: int = 7):
    """Synthetic notes with exact onsets: (audio float32, onset times s).

    One note every 250-400 ms, cycling through a plucked tone (instant attack), a tone
    with a 10 ms attack ramp, and a decaying noise burst (a drum); pitches 80-900 Hz;
    peak levels -12 to -30 dBFS; a -80 dBFS noise floor.  The onset is the first sample
    of the note.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    x = rng.standard_normal(n) * 10 ** (-80 / 20)
    onsets = []
    t = 0.3
    k = 0
    while t < seconds - 0.5:
        i0 = int(round(t * sr))
        m = min(n - i0, int(0.35 * sr))
        tt = np.arange(m) / sr
        kind = k % 3
        level = 10 ** (-float(rng.uniform(12, 30)) / 20)
        if kind == 2:
            y = rng.standard_normal(m) * np.exp(-tt / 0.04)
        else:
            f0 = float(rng.uniform(80, 900))
            y = sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in range(1, 8) if f0 * h < sr / 2.5)
            y = y * np.exp(-tt / 0.25)
            if kind == 1:
                y = y * np.clip(tt / 0.01, 0.0, 1.0)
        x[i0:i0 + m] += level * y / (np.max(np.abs(y)) + 1e-12)
        onsets.append(i0 / sr)
        t += float(rng.uniform(0.25, 0.4))
        k += 1
    return x.astype(np.float32), np.asarray(onsets)


def measure(sr: int, hop: int, settings: dict) -> float:
    """Median delay (s) from true onset to detection of the default detector on
    :func:`test_notes`, at these settings (compensation off)."""
    from rolypoly.ears.listener import Listener, detect_onsets
    from rolypoly.metrics import onset_f_measure
    x, truth = test_notes(sr)
    s = {k: v for k, v in settings.items() if k not in ("latency_ms", "sr", "hop")}
    lis = Listener(sr, hop, latency_ms=0.0, **s)
    found = detect_onsets(x, sr, hop, listener=lis)
    delays = onset_f_measure(found, truth, 0.05)["delays"]
    return float(np.median(delays)) if len(delays) else 0.0


def latency_s(sr: int, hop: int, n_fft: int, lag: int, ref_frames: int, settings: dict | None = None) -> float:
    """The stored latency of this structure; measured (once per process) when not stored."""
    k = key(sr, hop, n_fft, lag, ref_frames)
    table = _table()
    if k in table:
        return float(table[k]) / 1000.0
    if k not in _MEASURED:
        from rolypoly.ears.listener import DEFAULTS
        s = dict(DEFAULTS)
        s.update(settings or {})
        s.update(buf=int(n_fft * 48000 / sr), lag=lag, ref_frames=ref_frames)
        _MEASURED[k] = measure(sr, hop, s) + attack_offset_s()
    return _MEASURED[k]


STRUCTURES = [(sr, hop, buf) for sr in (44100, 48000, 96000) for hop in (64, 128, 256, 512)
              for buf in (1024, 2048)]


def corpus_delay(items, sr: int = 48000, hop: int = 128, settings: dict | None = None) -> float:
    """Median over instrument families of the median raw delay (s) of the default detector
    on corpus items (:class:`rolypoly.ears.corpus.Item`, at or above -30 dBFS)."""
    import mir_eval

    from rolypoly.ears.listener import detect_onsets
    per: dict = {}
    for it in items:
        if it.level_db < -30:
            continue
        det = detect_onsets(it.audio, sr, hop, latency_ms=0.0, **(settings or {}))
        for i, j in mir_eval.util.match_events(it.truth, det, 0.05):
            per.setdefault(it.family, []).append(det[j] - it.truth[i])
    return float(np.median([np.median(v) for v in per.values()])) if per else 0.0


def virtual_items(sr: int = 48000, bars: int = 8, styles=None) -> list:
    """The virtual musician's takes as more families for :func:`attack_dating_fit`: each
    style (plucks, soft, hard, legato, bass, strum, palm mute, wind, tabla) in every feel
    at -12 and -24 dBFS, family ``"virtual_<style>"``.  Their own seeds: not the takes
    ``rolypoly bench onsets`` scores."""
    from rolypoly.ears.corpus import Item
    from rolypoly.sim.musician import FEELS, STYLES, play, rhythm
    out = []
    k = 0
    for style in styles or STYLES:
        for feel in FEELS:
            level = (-12.0, -24.0)[k % 2]
            t, ph, bar = rhythm(n_bars=bars, bpm=92 + 4 * (k % 8), seed=700 + k)
            audio, truth = play(t, ph, bar, feel, sr=sr, seed=900 + k, style=style, level_db=level)
            out.append(Item(f"virtual_{style}", style, f"virtual_{style}_{feel}", level, audio, np.asarray(truth)))
            k += 1
    return out


def attack_dating_fit(items, sr: int = 48000, hop: int = 128, min_onsets: int = 20) -> tuple[float, float]:
    """(offset, slow) in s for the attack dating, fitted on corpus items (at or above -30 dBFS).

    ``offset``: the median over families of the median error (reported - true) of flux
    onsets dated by their own attack, with no offset; ``slow``: the same for flux onsets
    with no clear attack (the fixed latency alone), over families with ``min_onsets`` or
    more of them.  Which onset was dated how is seen by nudging each constant by 0.05 ms.
    """
    import mir_eval

    from rolypoly.ears.listener import detect_onsets
    nudge = 0.05
    attack: dict = {}
    slow: dict = {}
    for it in items:
        if it.level_db < -30:
            continue
        base = detect_onsets(it.audio, sr, hop, attack_shift_ms=0.0, attack_slow_ms=0.0)
        by_attack = detect_onsets(it.audio, sr, hop, attack_shift_ms=nudge, attack_slow_ms=0.0)
        by_slow = detect_onsets(it.audio, sr, hop, attack_shift_ms=0.0, attack_slow_ms=nudge)
        for i, j in mir_eval.util.match_events(it.truth, base, 0.025):
            err = base[j] - it.truth[i]
            moved = [bool(other.size) and float(np.min(np.abs(other - base[j]))) > 0.2 * nudge / 1000.0
                     for other in (by_attack, by_slow)]
            if moved[0]:
                attack.setdefault(it.family, []).append(err)
            elif moved[1]:
                slow.setdefault(it.family, []).append(err)
    med = [np.median(v) for v in attack.values()]
    med_slow = [np.median(v) for v in slow.values() if len(v) >= min_onsets]
    return (float(np.median(med)) if med else 0.0), (float(np.median(med_slow)) if med_slow else 0.0)


def calibrate(path: Path = LATENCY_FILE, structures=STRUCTURES, corpus_items=None) -> dict:
    """Measure every structure in ``structures`` ((sr, hop, buf at 48 kHz)) with the
    default settings and write the table to ``path``; with ``corpus_items`` the attack
    offset and the attack dating's constants (:func:`attack_dating_fit`) are re-measured
    at the default structure (else the stored ones are kept)."""
    from rolypoly.ears.listener import DEFAULTS
    if corpus_items:
        offset = corpus_delay(corpus_items, settings=dict(attack_dating=False)) - measure(48000, 128, dict(DEFAULTS))
    else:
        offset = attack_offset_s()
    out = {}
    for sr, hop, buf in structures:
        if buf < hop:
            continue
        s = dict(DEFAULTS, buf=buf)
        n_fft = max(int(2 ** round(math.log2(max(hop, buf * sr / 48000.0)))), hop, 16)
        out[key(sr, hop, n_fft, s["lag"], s["ref_frames"])] = round((measure(sr, hop, s) + offset) * 1000.0, 3)
    if corpus_items:
        # fitted with the new fixed latency in force: the slow-rise constant is relative to it
        _MEASURED.clear()
        _MEASURED["_file"] = {"attack_offset_ms": offset * 1000.0, "latency_ms": out}
        dating = attack_dating_fit(list(corpus_items) + virtual_items(styles=("pluck",)))
    else:
        dating = attack_dating_s()
    _write(path, offset, out, dating)
    _MEASURED.clear()
    return out


def calibrate_attack_dating(corpus_items, path: Path = LATENCY_FILE) -> tuple[float, float]:
    """Refit only the attack dating's constants (:func:`attack_dating_fit` on the corpus
    items and the virtual plucks) and store them, keeping the stored latency table."""
    stored = _stored()
    dating = attack_dating_fit(list(corpus_items) + virtual_items(styles=("pluck",)))
    _write(path, attack_offset_s(), stored.get("latency_ms", {}), dating)
    _MEASURED.clear()
    return dating


def _write(path: Path, offset: float, table: dict, dating: tuple[float, float]) -> None:
    from rolypoly.io import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"note": "default detector latency (ms): median delay on "
                                           "rolypoly.ears.calibration.test_notes plus the attack offset measured "
                                           "on the onsets corpus; attack_dating_ms: the constants of dating a flux "
                                           "onset by its own attack (offset) or, with no clear attack, by the latency "
                                           "plus slow (rolypoly.ears.calibration.attack_dating_fit on the corpus); "
                                           "rolypoly.ears.calibration.calibrate() rewrites it",
                                   "attack_offset_ms": round(offset * 1000.0, 3), "latency_ms": table,
                                   "attack_dating_ms": {"offset": round(dating[0] * 1000.0, 3),
                                                        "slow": round(dating[1] * 1000.0, 3)}},
                                  indent=1, sort_keys=True))


# ---------------------------------------------------------------------------------
# the sound check

def soundcheck(audio, sr: int, instrument: str | None = "guitar", hop: int = 128, base: dict | None = None) -> dict:
    """Listen to a few seconds of the musician and choose listener settings.

    Starts from the ``instrument`` preset (or ``base``), then sets the input trim so
    quiet players reach a working level, raises the silence floor over a noisy room
    (never lowers it), and sets the flux threshold from the spread of the detection
    function on this player (never under the preset).  It only moves what the recording
    shows is needed, so it never makes the listener worse than its defaults (checked on
    the corpus and the real set by ``rolypoly bench onsets --corpus`` / ``--real``).

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
        ``threshold``, ``silence_db`` in a noisy room, the preset's keys and ``instrument``.

    """
    from rolypoly.ears.listener import DEFAULTS, PRESETS, Listener, detect_onsets
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
    # trim: bring a quiet player (QUIET_PLAYER_DB under the level the defaults expect,
    # player_db) up to TRIM_OVER_PLAYER_DB over it, never
    # more than +30 dB, never down (the detector's floor is absolute: a quiet player's soft
    # notes sink under it; trimming players who are already there cost notes)
    target_db = float(settings.get("player_db", DEFAULTS["player_db"]))
    quiet_player = play_db < target_db - QUIET_PLAYER_DB
    gain_db = float(np.clip(target_db + TRIM_OVER_PLAYER_DB - play_db, 0.0, 30.0)) if quiet_player else 0.0
    settings["gain_db"] = round(gain_db, 1)
    # silence floor: raised 6 dB over a noisy room (after the trim), never lowered under the
    # default (a floor following the player or digital silence cost notes on real players
    # and on the corpus), and at least 40 dB under the player (soft notes live there)
    floor = settings.get("silence_db", DEFAULTS["silence_db"])
    room_floor = min(room_db + 6.0, play_db - 40.0) + gain_db
    if room_floor > floor:
        settings["silence_db"] = round(float(room_floor), 1)
    # the player's level (player_db) stays the preset's: set from the sound check, the
    # relative gate and the hold started too high and dropped a real player's soft first notes
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
